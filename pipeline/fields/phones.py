"""PHONES: text -> {number, country code, calling code}, or a reason.

Numbers the vectorized path of :mod:`pipeline.fields.phone_plans` does not accept go to
phonenumbers, once per distinct (value, country), which also says what is wrong.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import ClassVar

import phonenumbers
import polars as pl

from pipeline.fields.base import (
    FieldCodec,
    ParseContext,
    Parsed,
    SpecOptions,
    json_objects,
    no_error,
    split_or_json,
)
from pipeline.fields.phone_plans import fast_phones, region_info, row_countries

PHONE_PARTS = ("primaryPhoneCountryCode", "primaryPhoneCallingCode")
"""Sub-fields that come with ``primaryPhoneNumber`` when they are not mapped themselves."""
FIX_HINT = "set default_country or country_column, or write it with its +country code"
EXTRA_PARTS = ("number", "countryCode", "callingCode")
"""The parts of each of ``additionalPhones``."""


# --------------------------------------------------------------------------- slow path


def _span(lengths: tuple[int, ...]) -> str:
    if len(lengths) == 1:
        return str(lengths[0])
    if list(lengths) == list(range(lengths[0], lengths[-1] + 1)):
        return f"{lengths[0]} to {lengths[-1]}"
    return ", ".join(str(n) for n in lengths[:-1]) + f" or {lengths[-1]}"


def _why_invalid(national: str, region: str) -> str:
    """Why phonenumbers calls these national digits no number of ``region``, in words."""
    info = region_info(region)
    if info is None:
        return f"{region} has no phone numbering plan"
    if info.lengths and len(national) not in info.lengths:
        size = "too short" if len(national) < min(info.lengths) else "wrong length"
        size = "too long" if len(national) > max(info.lengths) else size
        return (
            f"{size}: {region} numbers have {_span(info.lengths)} digits after the country "
            f"code, this one has {len(national)}"
        )
    if national[:1] and national[:1] not in info.first_digits:
        return f"no {region} number starts with {national[0]}"
    return f"no {region} number begins {national[:4]}…"


@lru_cache(maxsize=200_000)
def parse_one(
    text: str,
    region: str | None,
    origin: str | None,
    unknown: str | None,
    column: str | None = None,
) -> tuple[str | None, str | None, str | None, str | None]:
    """phonenumbers on one value: (number, region, +code, None) or (None, .., reason).

    ``origin`` names where ``region`` came from when it is the row's country column;
    ``unknown`` is the row's country text when it named no country, and ``column`` the
    country column it came from.
    """
    where = f" (the row's {origin})" if origin else ""
    named = f"the row's {column or 'country'} {unknown!r}"
    if unknown is not None:
        if region:
            where = f" (default_country; {named} is not a country name)"
        else:
            where = f" ({named} is not a country name)"
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        kind = exc.error_type
        if kind == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            if text.lstrip().startswith("+"):
                return None, None, None, f"'{text}' starts with no known +country code"
            if region_info(region) is not None and region:
                # e.g. "01 19 99 81 16" for US: 011 is its international prefix
                digits = re.sub(r"[^0-9]", "", text)
                return (
                    None,
                    None,
                    None,
                    _national_reason(text, digits, region, where, origin, unknown),
                )
            if unknown is not None:
                return (
                    None,
                    None,
                    None,
                    f"'{text}' has no +country code and {named} is not "
                    "a country name; write the country as an ISO code (FR) or a name "
                    "(France), or the number with its +country code",
                )
            return (
                None,
                None,
                None,
                f"'{text}' has no +country code and no country to read it with; {FIX_HINT}",
            )
        if kind == phonenumbers.NumberParseException.NOT_A_NUMBER:
            return None, None, None, f"'{text}' is not a phone number"
        size = "too long" if kind == phonenumbers.NumberParseException.TOO_LONG else "too short"
        return None, None, None, f"'{text}' is not a valid phone number{where} ({size})"
    code = number.country_code or 0
    national = str(phonenumbers.national_significant_number(number))
    if phonenumbers.is_valid_number(number):
        country = phonenumbers.region_code_for_number(number) or (
            phonenumbers.region_code_for_country_code(code)
        )
        return national, country, f"+{code}", None
    home = region_info(region)
    as_national = (
        home is not None and home.calling == str(code) and not _international(text, region)
    )
    if as_national and region:
        return None, None, None, _national_reason(text, national, region, where, origin, unknown)
    target = phonenumbers.region_code_for_country_code(code)
    reason = f"'{text}' is not a valid phone number for {target}"
    return None, None, None, f"{reason} ({_why_invalid(national, target)})"


def _national_reason(
    text: str, national: str, region: str, where: str, origin: str | None, unknown: str | None
) -> str:
    """The reason for a number written without its country code that ``region`` refuses."""
    reason = f"'{text}' is not a valid phone number for {region}{where}"
    reason += f" ({_why_invalid(national, region)})"
    if unknown is not None:
        return reason + (
            "; write the row's country as an ISO code (FR) or a name (France), "
            "or the number with its +country code"
        )
    if origin:
        return (
            reason + "; check the number and the row's country, or write it with its +country code"
        )
    return f"{reason}; {FIX_HINT}"


def _international(text: str, region: str | None) -> bool:
    """Whether ``text`` is written with a +country code or ``region``'s international prefix."""
    cleaned = re.sub(r"[\s().\-/\u00a0]", "", text)
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region or "")
    idd = meta.international_prefix if meta is not None else None
    return cleaned.startswith("+") or bool(idd and re.match(idd, cleaned))


# --------------------------------------------------------------------------- columns


def to_phone(
    raw: pl.Series,
    country: str | None,
    countries: pl.Series | None = None,
    origin: str | None = None,
) -> tuple[pl.Series, pl.Series]:
    """Phone numbers -> (struct of number / country / calling code, error).

    ``countries`` (a per-row country text, ISO code or country name) is read before
    ``country``; ``origin`` names that column in reasons.
    """
    n = raw.len()
    home, unknown = row_countries(countries, country, n)
    fast = fast_phones(raw, home)
    from_column = (
        pl.select(pl.when(countries.is_not_null() & unknown.is_null()).then(countries))
        .to_series()
        .cast(pl.String)
        if countries is not None
        else pl.Series([None] * n, dtype=pl.String)
    )
    frame = pl.DataFrame(
        {"raw": raw, "home": home, "unknown": unknown, "from": from_column, "ok": fast["ok"]}
    )
    slow = (
        frame.filter(pl.col("raw").is_not_null() & ~pl.col("ok"))
        .select("raw", "home", "unknown", "from")
        .unique()
    )
    parsed = [
        parse_one(r, h, f"{origin} {f!r}" if origin and f else None, u, origin)
        for r, h, u, f in slow.iter_rows()
    ]
    table = slow.with_columns(
        pl.Series("n", [p[0] for p in parsed], dtype=pl.String),
        pl.Series("c", [p[1] for p in parsed], dtype=pl.String),
        pl.Series("k", [p[2] for p in parsed], dtype=pl.String),
        pl.Series("e", [p[3] for p in parsed], dtype=pl.String),
    )
    joined = frame.join(
        table,
        on=["raw", "home", "unknown", "from"],
        how="left",
        nulls_equal=True,
        maintain_order="left",
    )
    ok = fast["ok"]
    number = pl.select(pl.when(ok).then(fast["n"]).otherwise(joined["n"])).to_series()
    region = pl.select(pl.when(ok).then(fast["c"]).otherwise(joined["c"])).to_series()
    calling = pl.select(pl.when(ok).then(fast["k"]).otherwise(joined["k"])).to_series()
    value = pl.select(
        pl.when(number.is_not_null()).then(
            pl.struct(
                number.alias("primaryPhoneNumber"),
                region.alias("primaryPhoneCountryCode"),
                calling.alias("primaryPhoneCallingCode"),
            )
        )
    ).to_series()
    error = pl.select(pl.when(~ok).then(joined["e"])).to_series()
    return value, error


def to_phone_list(
    raw: pl.Series,
    sep: str | None,
    country: str | None,
    countries: pl.Series | None = None,
    origin: str | None = None,
) -> tuple[pl.Series, pl.Series]:
    """A cell of several numbers -> (list of {number, countryCode, callingCode}, error).

    The cell is split by ``sep`` (default ``,``) or, without ``sep``, may be a JSON list
    as an export writes it, whose objects carry their own country. Any bad item fails the
    cell, with that item's reason.
    """
    n = raw.len()
    items = split_or_json(raw, sep, ",")
    counts = items.list.len().fill_null(0)
    flat = items.explode()
    repeat = pl.int_range(n, eager=True).repeat_by(counts.clip(1)).explode()
    per_item = (
        countries.gather(repeat)
        if countries is not None
        else pl.Series([None] * flat.len(), dtype=pl.String)
    )
    flat, per_item = _exported_items(flat, per_item)
    value, error = to_phone(
        flat, country, per_item if per_item.null_count() < flat.len() else None, origin
    )
    extra = value.struct.rename_fields(list(EXTRA_PARTS))
    grouped = (
        pl.DataFrame({"i": repeat, "v": extra, "e": error})
        .group_by("i", maintain_order=True)
        .agg(pl.col("v").drop_nulls(), pl.col("e").drop_nulls().first())
    )
    lists = pl.select(pl.when(grouped["v"].list.len() > 0).then(grouped["v"])).to_series()
    return lists, grouped["e"]


def _exported_items(flat: pl.Series, countries: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Items written as ``{"number", "countryCode", "callingCode"}`` -> (text, country).

    The number is read with its own country; with only a calling code, as ``+code number``.
    """
    parts = json_objects(flat, EXTRA_PARTS)
    is_object = parts["_object"]
    if not is_object.any():
        return flat, countries
    number, code, calling = parts["number"], parts["countryCode"], parts["callingCode"]
    international = pl.concat_str([calling, number])
    text = pl.select(
        pl.when(~is_object)
        .then(flat)
        .when(code.is_null() & calling.is_not_null())
        .then(international)
        .otherwise(number)
    ).to_series()
    country = pl.select(pl.when(is_object).then(code).otherwise(countries)).to_series()
    return text, country


class PhonesCodec(FieldCodec):
    """PHONES: a primary number with its country and calling code, and more numbers."""

    types: ClassVar[tuple[str, ...]] = ("PHONES",)
    subfields: ClassVar[tuple[str, ...]] = (
        "primaryPhoneNumber",
        "primaryPhoneCountryCode",
        "primaryPhoneCallingCode",
        "additionalPhones",
    )
    list_subfields: ClassVar[frozenset[str]] = frozenset({"additionalPhones"})
    unique_subfield: ClassVar[str | None] = "primaryPhoneNumber"
    sample_kind: ClassVar[str | None] = "phone"

    def looks_like(self, values: pl.Series) -> pl.Series:
        digits = values.str.count_matches(r"\d") >= 7
        return values.str.contains(r"^\+?[\d\s().-]{7,20}$") & digits

    def parse(self, raw: pl.Series, sub: str | None, ctx: ParseContext) -> Parsed:
        """A number (the whole struct, which normalize spreads: PHONE_PARTS), the list
        of additional ones, or a country or calling code as it is written."""
        if sub in PHONE_PARTS:
            return Parsed(raw, no_error(raw.len()))
        spec = ctx.spec
        where = spec.country_column
        if sub == "additionalPhones":
            items = to_phone_list(raw, spec.split, spec.default_country, ctx.countries, where)
            return Parsed(*items)
        return Parsed(*to_phone(raw, spec.default_country, ctx.countries, where))

    def reimport(self, name: str) -> dict[str, SpecOptions]:
        """The national number is read with the country stored beside it."""
        return {
            f"{name}.primaryPhoneNumber": {
                "column": f"{name}.primaryPhoneNumber",
                "country_column": f"{name}.primaryPhoneCountryCode",
            },
            f"{name}.additionalPhones": {"column": f"{name}.additionalPhones"},
        }
