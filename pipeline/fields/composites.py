"""Composite types: EMAILS, LINKS, FULL_NAME, ADDRESS, CURRENCY, RICH_TEXT_V2, ACTOR.

Sub-field names are those of twenty-shared composite-types (twenty-api.md §6). A whole
composite mapped from one column fills its main sub-field (an e-mail's primary address,
a link's URL, a name's first and last name, an amount's micros).
"""

from __future__ import annotations

from functools import lru_cache
from typing import ClassVar

import polars as pl
from email_validator import EmailNotValidError, validate_email

from pipeline.fields.base import (
    FieldCodec,
    ParseContext,
    Parsed,
    invalid,
    json_objects,
    list_of,
    no_error,
    quoted,
    split_or_json,
    struct_of,
)
from pipeline.fields.scalars import to_number

# A vectorized pre-check that accepts the everyday address shape; anything else is
# judged by email-validator, which also says precisely what is wrong.
EMAIL_FAST = (
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
NUMERIC_SUBFIELDS = ("addressLat", "addressLng")
CURRENCY_CODE = r"^[A-Z]{3}$"


# --------------------------------------------------------------------------- e-mails


@lru_cache(maxsize=200_000)
def _email_verdict(address: str) -> tuple[str | None, str | None]:
    try:
        result = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return None, str(exc)
    return result.normalized.lower(), None


def normalize_email(raw: pl.Series) -> Parsed:
    """Lower-cased addresses; the usual shape checked vectorized, the rest by email-validator."""
    lowered = raw.str.to_lowercase()
    fast = lowered.str.contains(EMAIL_FAST).fill_null(False)
    others = lowered.filter(lowered.is_not_null() & ~fast).unique()
    value, error = lowered, no_error(raw.len())
    if others.len():
        verdicts = [_email_verdict(a) for a in others.to_list()]
        keys = others.to_list()
        fixed = pl.Series([v[0] for v in verdicts], dtype=pl.String)
        reasons = pl.Series([v[1] for v in verdicts], dtype=pl.String)
        slow_value = lowered.replace_strict(keys, fixed, default=None, return_dtype=pl.String)
        slow_error = lowered.replace_strict(keys, reasons, default=None, return_dtype=pl.String)
        value = pl.select(pl.when(fast).then(lowered).otherwise(slow_value)).to_series()
        error = pl.select(
            pl.when(fast | lowered.is_null())
            .then(None)
            .otherwise(pl.format("{} is not a valid email address: {}", quoted(raw), slow_error))
        ).to_series()
    return Parsed(value, error)


class EmailsCodec(FieldCodec):
    """EMAILS: a primary address and a list of additional ones, lower-cased and checked."""

    types: ClassVar[tuple[str, ...]] = ("EMAILS",)
    subfields: ClassVar[tuple[str, ...]] = ("primaryEmail", "additionalEmails")
    list_subfields: ClassVar[frozenset[str]] = frozenset({"additionalEmails"})
    unique_subfield: ClassVar[str | None] = "primaryEmail"
    draft_paths: ClassVar[tuple[str | None, ...]] = ("primaryEmail", "additionalEmails")
    sample_kind: ClassVar[str | None] = "email"

    def looks_like(self, values: pl.Series) -> pl.Series:
        return values.str.contains(EMAIL_FAST)

    def parse(self, raw: pl.Series, sub: str | None, ctx: ParseContext) -> Parsed:
        n = raw.len()
        if sub == "additionalEmails":
            return list_of(split_or_json(raw, ctx.spec.split, ","), normalize_email)
        # The pre-pass only needs the key: a lower-cased address is the key of every
        # valid one, and an invalid one is rejected by the main pass anyway.
        email = (
            Parsed(raw.str.to_lowercase(), no_error(n)) if ctx.keys_only else normalize_email(raw)
        )
        if sub is None:  # the whole field from one column: its primary address
            return Parsed(struct_of({"primaryEmail": email.value}, n), email.error)
        return email


# --------------------------------------------------------------------------- links


def normalize_url(raw: pl.Series) -> pl.Series:
    """Add https:// when there is no scheme, lower-case the origin, drop trailing slashes.

    ``ACME.com/``, ``https://acme.com`` and ``HTTPS://Acme.COM/`` all become
    ``https://acme.com``; applying it twice changes nothing. (Literal finds and
    slices rather than regex captures: this runs on every URL of a file.)
    """
    has_scheme = raw.str.contains(r"^[A-Za-z][A-Za-z0-9+.-]*://")
    full = pl.select(
        pl.when(has_scheme).then(raw).otherwise(pl.concat_str([pl.lit("https://"), raw]))
    ).to_series()
    after = full.str.find("://", literal=True) + 3
    tail = full.str.slice(after)
    cut = tail.str.find("/", literal=True).fill_null(tail.str.len_bytes())
    host = tail.str.slice(0, cut).str.to_lowercase()
    url = (
        pl.select(
            pl.concat_str([full.str.slice(0, after).str.to_lowercase(), host, tail.str.slice(cut)])
        )
        .to_series()
        .str.strip_chars_end("/")
    )
    valid = (
        host.str.contains(".", literal=True)
        & ~host.str.contains(r"[\s@]")
        & ~host.str.starts_with(".")
        & ~host.str.ends_with(".")
    ) | host.str.contains(r"^localhost(:\d+)?$")
    return pl.select(pl.when(valid.fill_null(False)).then(url).otherwise(None)).to_series()


def to_url(raw: pl.Series) -> Parsed:
    """LINKS URLs (see :func:`normalize_url`)."""
    value = normalize_url(raw)
    return Parsed(value, invalid(raw, value, "a web address"))


def _secondary_link(items: pl.Series) -> Parsed:
    """One secondary link: a URL, or an exported ``{"url", "label"}`` object."""
    parts = json_objects(items, ("url", "label"))
    text = pl.select(pl.coalesce(parts["url"], pl.when(~parts["_object"]).then(items)))
    link = to_url(text.to_series())
    label = pl.select(pl.coalesce(parts["label"], pl.lit(""))).to_series()
    value = pl.select(
        pl.when(link.value.is_not_null()).then(
            pl.struct(link.value.alias("url"), label.alias("label"))
        )
    ).to_series()
    return Parsed(value, link.error)


class LinksCodec(FieldCodec):
    """LINKS: a primary URL with its label, and secondary links."""

    types: ClassVar[tuple[str, ...]] = ("LINKS",)
    subfields: ClassVar[tuple[str, ...]] = ("primaryLinkUrl", "primaryLinkLabel", "secondaryLinks")
    list_subfields: ClassVar[frozenset[str]] = frozenset({"secondaryLinks"})
    unique_subfield: ClassVar[str | None] = "primaryLinkUrl"
    draft_paths: ClassVar[tuple[str | None, ...]] = ("primaryLinkUrl",)
    sample_kind: ClassVar[str | None] = "url"

    def looks_like(self, values: pl.Series) -> pl.Series:
        return values.str.contains(r"^(https?://)?[\w-]+(\.[\w-]+)+(/\S*)?$")

    def parse(self, raw: pl.Series, sub: str | None, ctx: ParseContext) -> Parsed:
        if sub == "primaryLinkLabel":
            return Parsed(raw, no_error(raw.len()))
        if sub == "secondaryLinks":
            return list_of(split_or_json(raw, ctx.spec.split, ","), _secondary_link)
        link = to_url(raw)
        if sub is None:
            return Parsed(struct_of({"primaryLinkUrl": link.value}, raw.len()), link.error)
        return link


# --------------------------------------------------------------------------- names


def name_parts(raw: pl.Series) -> pl.Series:
    """One whole-name column -> {firstName, lastName}: "Last, First" or "First Rest"."""
    comma = raw.str.contains(",").fill_null(False)
    before, after = (
        raw.str.split_exact(",", 1).struct.field("field_0"),
        raw.str.split_exact(",", 1).struct.field("field_1"),
    )
    words = raw.str.splitn(" ", 2)
    first = pl.select(
        pl.when(comma).then(after.str.strip_chars()).otherwise(words.struct.field("field_0"))
    ).to_series()
    last = pl.select(
        pl.when(comma)
        .then(before.str.strip_chars())
        .otherwise(words.struct.field("field_1").fill_null(""))
    ).to_series()
    return pl.select(
        pl.when(raw.is_not_null()).then(pl.struct(first.alias("firstName"), last.alias("lastName")))
    ).to_series()


class FullNameCodec(FieldCodec):
    """FULL_NAME: first and last name, or one whole-name column split into them."""

    types: ClassVar[tuple[str, ...]] = ("FULL_NAME",)
    subfields: ClassVar[tuple[str, ...]] = ("firstName", "lastName")
    draft_paths: ClassVar[tuple[str | None, ...]] = (None, "firstName", "lastName")

    def parse(self, raw: pl.Series, sub: str | None, ctx: ParseContext) -> Parsed:
        value = name_parts(raw) if sub is None else raw
        return Parsed(value, no_error(raw.len()))


class AddressCodec(FieldCodec):
    """ADDRESS: text parts, and latitude / longitude as numbers."""

    types: ClassVar[tuple[str, ...]] = ("ADDRESS",)
    subfields: ClassVar[tuple[str, ...]] = (
        "addressStreet1",
        "addressStreet2",
        "addressCity",
        "addressPostcode",
        "addressState",
        "addressCountry",
        "addressLat",
        "addressLng",
    )
    draft_paths: ClassVar[tuple[str | None, ...]] = (
        "addressStreet1",
        "addressCity",
        "addressPostcode",
        "addressState",
        "addressCountry",
    )

    def parse(self, raw: pl.Series, sub: str | None, ctx: ParseContext) -> Parsed:
        if sub in NUMERIC_SUBFIELDS:
            return to_number(raw, ctx.spec.decimal)
        return Parsed(raw, no_error(raw.len()))


# --------------------------------------------------------------------------- money


def to_micros(raw: pl.Series, decimal: str | None) -> Parsed:
    """Money in units -> integer micros, through Decimal: no float drift."""
    # Currency symbols and a leading or trailing ISO code go; any other letter ("1.2M",
    # "12k") makes the amount invalid rather than silently a thousand times smaller.
    cleaned = raw.str.replace_all(r"^[A-Za-z]{3}\s+|\s+[A-Za-z]{3}$", "").str.replace_all(
        r"[\s\u00a0\u202f'_$€£¥₹¢]", ""
    )
    if decimal == ",":
        cleaned = cleaned.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True)
    else:
        cleaned = cleaned.str.replace_all(",", "", literal=True)
    shape_ok = cleaned.str.contains(r"^[+-]?\d+(\.\d{0,6})?$|^[+-]?\.\d{1,6}$")
    # micros are a 64-bit integer in Twenty: at most 9,223,372,036,854 units
    too_large = shape_ok & cleaned.str.contains(r"^[+-]?0*[1-9]\d{13,}")
    decimal_value = pl.select(
        pl.when(shape_ok & ~too_large).then(cleaned).otherwise(None)
    ).to_series()
    micros = (decimal_value.cast(pl.Decimal(38, 6), strict=False) * 1_000_000).cast(
        pl.Int64, strict=False
    )
    too_precise = raw.is_not_null() & cleaned.str.contains(r"\.\d{7,}$")
    error = invalid(raw, micros, "an amount")
    error = pl.select(
        pl.when(too_precise)
        .then(pl.format("{} has more than 6 decimals", quoted(raw)))
        .when(too_large | (micros.is_null() & shape_ok & raw.is_not_null()))
        .then(pl.format("{} is too large for an amount (at most 9,223,372,036,854)", quoted(raw)))
        .otherwise(error)
    ).to_series()
    return Parsed(micros, error)


def currency_codes(raw: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Upper-cased 3-letter codes, and per row whether the text was one."""
    code = raw.str.strip_chars().str.to_uppercase()
    ok = code.str.contains(CURRENCY_CODE).fill_null(False)
    return code, ok


def with_currency(micros: pl.Series, code: pl.Series) -> pl.Series:
    """A whole CURRENCY value: the micros with their code, null where there is no amount."""
    return pl.select(
        pl.when(micros.is_not_null()).then(
            pl.struct(micros.alias("amountMicros"), code.alias("currencyCode"))
        )
    ).to_series()


class CurrencyCodec(FieldCodec):
    """CURRENCY: an amount in units (sent as micros) and its ISO code.

    A whole CURRENCY spec yields the micros here; normalize pairs them with the spec's
    ``currency`` or ``currency_column`` (:func:`with_currency`).
    """

    types: ClassVar[tuple[str, ...]] = ("CURRENCY",)
    subfields: ClassVar[tuple[str, ...]] = ("amountMicros", "currencyCode")

    def parse(self, raw: pl.Series, sub: str | None, ctx: ParseContext) -> Parsed:
        if sub == "currencyCode":
            code = raw.str.to_uppercase()
            ok = code.str.contains(CURRENCY_CODE).fill_null(False)
            value = pl.select(pl.when(ok).then(code)).to_series()
            return Parsed(value, invalid(raw, value, "a 3-letter currency code"))
        if sub == "amountMicros":
            micros = to_number(raw, ctx.spec.decimal)
            return Parsed(micros.value.cast(pl.Int64, strict=False), micros.error)
        return to_micros(raw, ctx.spec.decimal)


# --------------------------------------------------------------------------- others


class RichTextCodec(FieldCodec):
    """RICH_TEXT_V2: markdown text (Twenty converts it); blocknote JSON as it is."""

    types: ClassVar[tuple[str, ...]] = ("RICH_TEXT_V2",)
    subfields: ClassVar[tuple[str, ...]] = ("blocknote", "markdown")
    draft_paths: ClassVar[tuple[str | None, ...]] = ()  # long texts: mapped by hand

    def parse(self, raw: pl.Series, sub: str | None, ctx: ParseContext) -> Parsed:
        n = raw.len()
        if sub is None:
            return Parsed(struct_of({"markdown": raw}, n), no_error(n))
        return Parsed(raw, no_error(n))


class ActorCodec(FieldCodec):
    """ACTOR: who created or updated a record; Twenty fills it, an export keeps it."""

    types: ClassVar[tuple[str, ...]] = ("ACTOR",)
    subfields: ClassVar[tuple[str, ...]] = ("source", "workspaceMemberId", "name", "context")
    draft_paths: ClassVar[tuple[str | None, ...]] = ()
