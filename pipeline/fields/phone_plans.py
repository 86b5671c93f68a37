"""Phone numbering plans: countries by name, and the vectorized parse of everyday numbers.

The everyday shapes (``+33 6 12 34 56 78``, ``0033 ...``, ``06 12 34 56 78`` with a
known country) are parsed by polars expressions and accepted only when phonenumbers
would call them *valid* for their region: the region's national number patterns from
phonenumbers' metadata are run as anchored regexes, with the same national-prefix and
shared-calling-code rules the library applies. What this path does not accept goes to
phonenumbers itself (:mod:`pipeline.fields.phones`).

A row's country is its ``country_column`` value (ISO code or country name) when that
names a country, else the spec's ``default_country``.
"""

from __future__ import annotations

import importlib
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import phonenumbers
import polars as pl
from phonenumbers.geocoder import _region_display_name

# The metadata descriptions phonenumbers tries when it types a number (any match: valid).
TYPE_DESCS = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)
DIGITS = frozenset("0123456789")


# Names exports use that are not phonenumbers' English region names.
COUNTRY_ALIASES = {
    "uk": "GB",
    "u k": "GB",
    "great britain": "GB",
    "britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "united kingdom of great britain and northern ireland": "GB",
    "usa": "US",
    "u s": "US",
    "u s a": "US",
    "united states of america": "US",
    "america": "US",
    "holland": "NL",
    "the netherlands": "NL",
    "nederland": "NL",
    "czechia": "CZ",
    "turkiye": "TR",
    "russian federation": "RU",
    "korea": "KR",
    "republic of korea": "KR",
    "korea republic of": "KR",
    "viet nam": "VN",
    "ivory coast": "CI",
    "north macedonia": "MK",
    "eswatini": "SZ",
    "cabo verde": "CV",
    "brunei darussalam": "BN",
    "vatican city": "VA",
    "holy see": "VA",
    "macau": "MO",
    "hong kong sar": "HK",
    "uae": "AE",
    "dr congo": "CD",
    "democratic republic of the congo": "CD",
    "republic of the congo": "CG",
    "iran islamic republic of": "IR",
    "syrian arab republic": "SY",
    "lao people's democratic republic": "LA",
    "moldova republic of": "MD",
    "tanzania united republic of": "TZ",
    "bolivia plurinational state of": "BO",
    "venezuela bolivarian republic of": "VE",
    "taiwan province of china": "TW",
    "palestine state of": "PS",
    "deutschland": "DE",
    "espana": "ES",
    "italia": "IT",
    "schweiz": "CH",
    "suisse": "CH",
    "svizzera": "CH",
    "osterreich": "AT",
    "belgique": "BE",
    "belgie": "BE",
    "sverige": "SE",
    "norge": "NO",
    "danmark": "DK",
    "suomi": "FI",
    "polska": "PL",
    "eire": "IE",
}


# --------------------------------------------------------------------------- countries


def _name_key(text: str) -> str:
    """A country name folded for lookup: no accents, case, dots, commas or extra spaces."""
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch)).lower()
    folded = folded.replace("&", " and ")
    folded = re.sub(r"[.,()]", " ", folded)
    folded = re.sub(r"\s+", " ", folded).strip()
    return folded.removeprefix("the ")


NAME_LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pt")
"""Languages whose country names a country column may hold (phonenumbers' locale data),
English first: a name two languages give two countries keeps its English meaning."""


@lru_cache(maxsize=1)
def _country_table() -> dict[str, str]:
    """Folded country name (English, German, French, ...) or ISO code -> ISO region code."""
    table: dict[str, str] = {}
    for language in NAME_LANGUAGES:
        for region in phonenumbers.SUPPORTED_REGIONS:
            name = _region_display_name(region, language)
            if name:
                table.setdefault(_name_key(name), region)
    for alias, region in COUNTRY_ALIASES.items():
        table[_name_key(alias)] = region
    for region in phonenumbers.SUPPORTED_REGIONS:
        table[region.lower()] = region  # an ISO code is never read as a name
    return table


def country_code(text: str | None) -> str | None:
    """An ISO code or a country name (English, German, French, Spanish, Italian, Dutch,
    Portuguese) -> ISO region code, or None if unknown."""
    if text is None or not text.strip():
        return None
    return _country_table().get(_name_key(text))


def row_countries(
    countries: pl.Series | None, default: str | None, n: int
) -> tuple[pl.Series, pl.Series]:
    """Per row: (region to read the number with, the row's unknown country name or null)."""
    fallback = pl.lit(default, dtype=pl.String)
    if countries is None:
        return pl.Series("home", [default] * n, dtype=pl.String), pl.Series(
            "unknown", [None] * n, dtype=pl.String
        )
    text = countries.cast(pl.String).str.strip_chars()
    text = pl.select(pl.when(text != "").then(text)).to_series()
    distinct = text.drop_nulls().unique().to_list()
    codes = [country_code(t) for t in distinct]
    iso = text.replace_strict(distinct, codes, default=None, return_dtype=pl.String)
    # A country the column names wins; a blank cell falls back to default_country; a
    # name that is no country leaves the row without one (never the default: the number
    # may be of that unknown country), so only a number with its +country code loads.
    home = pl.select(
        pl.when(iso.is_not_null()).then(iso).when(text.is_null()).then(fallback)
    ).to_series()
    unknown = pl.select(pl.when(text.is_not_null() & iso.is_null()).then(text)).to_series()
    return home.alias("home"), unknown.alias("unknown")


# --------------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class Region:
    """What the vectorized path needs of one region's phonenumbers metadata."""

    code: str
    calling: str
    fast: bool
    """False when a pattern does not compile in polars or the national prefix needs the
    library (capturing groups, transform rules): such numbers go to phonenumbers."""
    idd: str | None
    prefix: str | None
    lengths: tuple[int, ...]
    general: str
    types: tuple[tuple[str, tuple[int, ...]], ...]
    leading: str | None
    first_digits: frozenset[str]


def _anchored(pattern: str) -> str:
    return f"^(?:{pattern})$"


def _compiles(pattern: str) -> bool:
    try:
        pl.Series(["0"], dtype=pl.String).str.contains(pattern)
    except Exception:  # polars raises ComputeError on a regex its engine rejects
        return False
    return True


def _lengths(desc: Any) -> tuple[int, ...]:
    return tuple(n for n in (desc.possible_length or ()) if n > 0)


@lru_cache(maxsize=512)
def region_info(code: str | None) -> Region | None:
    """The metadata of a region (ISO code), or None if phonenumbers does not know it."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(code or "")
    if code is None or meta is None or meta.general_desc is None:
        return None
    general = meta.general_desc.national_number_pattern or ""
    grouped: dict[tuple[int, ...], list[str]] = {}
    for name in TYPE_DESCS:
        desc = getattr(meta, name, None)
        if desc is None or not desc.national_number_pattern:
            continue
        group = grouped.setdefault(_lengths(desc), [])
        if desc.national_number_pattern not in group:
            group.append(desc.national_number_pattern)
    types = tuple((_anchored("|".join(p)), lengths) for lengths, p in grouped.items())
    prefix = meta.national_prefix_for_parsing or None
    simple_prefix = prefix is None or (
        not meta.national_prefix_transform_rule and re.compile(prefix).groups == 0
    )
    idd = meta.international_prefix
    leading = f"^(?:{meta.leading_digits})" if meta.leading_digits else None
    patterns = [_anchored(general), *(t for t, _ in types)]
    if prefix:
        patterns.append(f"^(?:{prefix})")
    if leading:
        patterns.append(leading)
    lengths = _lengths(meta.general_desc)
    fast = bool(general and types and lengths and simple_prefix) and all(
        _compiles(p) for p in patterns
    )
    return Region(
        code=code,
        calling=str(meta.country_code),
        fast=fast,
        idd=idd if idd and idd.isdigit() else None,
        prefix=prefix,
        lengths=lengths,
        general=_anchored(general),
        types=types,
        leading=leading,
        first_digits=_first_digits(general),
    )


@lru_cache(maxsize=1)
def _calling_codes() -> dict[str, str]:
    """Calling code -> its main region, from phonenumbers' metadata."""
    return {
        str(code): regions[0]
        for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()
        if regions and regions[0] != "001"
    }


def _first_digits(pattern: str) -> frozenset[str]:
    """The digits a number matching ``pattern`` can start with (all ten if unsure)."""
    try:
        parser: Any = importlib.import_module("re._parser")
        tree = parser.parse(pattern)
    except Exception:  # an unusual pattern: claim nothing about it
        return DIGITS
    found, _ = _first_of(list(tree))
    return frozenset(found) & DIGITS if found is not None else DIGITS


def _first_of(items: list[Any]) -> tuple[set[str] | None, bool]:
    """(first characters, can be empty) of a parsed regex sequence; None: unknown."""
    out: set[str] = set()
    for op, arg in items:
        first, nullable = _first_item(str(op), arg)
        if first is None:
            return None, False
        out |= first
        if not nullable:
            return out, False
    return out, True


def _first_item(op: str, arg: Any) -> tuple[set[str] | None, bool]:
    if op == "LITERAL":
        return {chr(arg)}, False
    if op == "IN":
        chars: set[str] = set()
        for kind, value in arg:
            if str(kind) == "LITERAL":
                chars.add(chr(value))
            elif str(kind) == "RANGE":
                chars |= {chr(c) for c in range(value[0], value[1] + 1)}
            elif str(kind) == "CATEGORY" and str(value) == "CATEGORY_DIGIT":
                chars |= set(DIGITS)
            else:
                return None, False
        return chars, False
    if op == "BRANCH":
        union: set[str] = set()
        any_empty = False
        for branch in arg[1]:
            first, nullable = _first_of(list(branch))
            if first is None:
                return None, False
            union |= first
            any_empty = any_empty or nullable
        return union, any_empty
    if op == "SUBPATTERN":
        return _first_of(list(arg[-1]))
    if op in ("MAX_REPEAT", "MIN_REPEAT"):
        low, _, sub = arg
        first, nullable = _first_of(list(sub))
        return first, nullable or low == 0
    return None, False


# --------------------------------------------------------------------------- fast path


def _valid(info: Region, col: pl.Expr) -> pl.Expr:
    """phonenumbers' is-valid-for-region test as an expression on national digits."""
    length = col.str.len_chars()
    general = length.is_in(list(info.lengths)) & col.str.contains(info.general)
    kinds = [
        (length.is_in(list(lengths)) if lengths else pl.lit(True)) & col.str.contains(pattern)
        for pattern, lengths in info.types
    ]
    return general & pl.any_horizontal(kinds)


def _claims(info: Region, col: pl.Expr) -> pl.Expr:
    """Whether phonenumbers would give a number of this calling code to this region."""
    if info.leading:
        return col.str.contains(info.leading)
    return _valid(info, col)


def _region_exprs(code: str) -> tuple[pl.Expr, pl.Expr]:
    """For numbers read as ``code``: (the national number phonenumbers keeps, valid?).

    Both are expressions over ``n0``, the digits after the country code.
    """
    info = region_info(code)
    n0 = pl.col("n0")
    if info is None or not info.fast:
        return n0, pl.lit(False)
    number = n0
    if info.prefix:
        # phonenumbers strips the national prefix unless the number was viable with it
        # and is not without it, or what is left has no possible length.
        matched = n0.str.extract(f"^({info.prefix})", 1).str.len_chars()
        n1 = pl.when(matched > 0).then(n0.str.slice(matched))
        keep = n0.str.contains(info.general) & ~n1.str.contains(info.general)
        strip = (n1.is_not_null() & ~keep & n1.str.len_chars().is_in(list(info.lengths))).fill_null(
            False
        )
        number = pl.when(strip).then(n1).otherwise(n0)
    ok = _valid(info, number)
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(info.calling), ())
    if len(regions) > 1:
        ok = ok & _claims(info, number)
        for earlier in regions[: regions.index(code)] if code in regions else regions:
            other = region_info(earlier)
            if other is None:
                continue
            if not other.fast:
                ok = pl.lit(False)
                break
            ok = ok & ~_claims(other, number)
    return number, ok.fill_null(False)


def _check_region(part: pl.DataFrame, code: str) -> pl.DataFrame:
    """Rows read as ``code`` (``i``, ``n0``) -> ``i``, ``ok``, ``n``."""
    number, ok = _region_exprs(code)
    return part.lazy().select("i", ok.alias("ok"), number.alias("n")).collect()


# Up to this many regions in a chunk are checked in one pass over it; more, by groups.
ONE_PASS_REGIONS = 4


def fast_phones(raw: pl.Series, home: pl.Series) -> pl.DataFrame:
    """Vectorized parse: ``ok`` (accepted), ``n`` national number, ``c`` region, ``k`` +code.

    International numbers take their calling code from the E.164 prefix table; national
    ones their row country's, losing its national prefix. Where a calling code is shared
    (+1, +44, +7) the row country is tried when it shares it, else the code's main
    region, and the number is kept here only if phonenumbers would give it that region.
    """
    frame = _with_home_facts(pl.DataFrame({"raw": raw, "home": home}).lazy(), home)
    table = _calling_code_split(frame).collect()
    return _check_regions(table)


def _with_home_facts(frame: pl.LazyFrame, home: pl.Series) -> pl.LazyFrame:
    """Each row's home calling code (``h_calling``) and international prefix (``h_idd``)."""
    homes = home.drop_nulls().unique().to_list()
    infos = [region_info(h) for h in homes]
    if len(homes) == 1 and home.null_count() == 0:  # one country for the chunk
        only = infos[0]
        return frame.with_columns(
            pl.lit(only.calling if only else None, dtype=pl.String).alias("h_calling"),
            pl.lit(only.idd if only else None, dtype=pl.String).alias("h_idd"),
        )
    facts = pl.DataFrame(
        {
            "home": homes,
            "h_calling": [i.calling if i else None for i in infos],
            "h_idd": [(i.idd if i else None) for i in infos],
        },
        schema={"home": pl.String, "h_calling": pl.String, "h_idd": pl.String},
    ).lazy()
    return frame.join(facts, on="home", how="left", maintain_order="left").with_columns(
        # no home country: "00" is read as the international prefix
        pl.when(pl.col("home").is_null())
        .then(pl.lit("00"))
        .otherwise(pl.col("h_idd"))
        .alias("h_idd"),
    )


def _calling_code_split(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Digits -> ``n0`` (after the calling code), ``c`` region to check, ``k`` +code."""
    codes = _calling_codes()
    keys, mains = list(codes), list(codes.values())
    clean = pl.col("raw").str.replace_all(r"[\s().\-/\u00a0]", "")
    frame = frame.with_columns(clean.alias("clean"))
    clean = pl.col("clean")
    simple = clean.str.contains(r"^\+?[0-9]{5,20}$").fill_null(False) & ~pl.col("raw").str.contains(
        r"\(0\)"
    ).fill_null(False)
    plus = clean.str.starts_with("+")
    by_idd = (pl.col("h_idd").is_not_null() & clean.str.starts_with(pl.col("h_idd"))).fill_null(
        False
    )
    frame = frame.with_columns(
        simple.alias("simple"),
        (plus | by_idd).alias("intl"),
        pl.when(plus)
        .then(clean.str.slice(1))
        .when(by_idd)
        .then(clean.str.slice(pl.col("h_idd").str.len_chars()))
        .otherwise(clean)
        .alias("digits"),
    )
    d = pl.col("digits")
    lookup = (
        pl.when(d.str.slice(0, 1).is_in(keys))
        .then(d.str.slice(0, 1))
        .when(d.str.slice(0, 2).is_in(keys))
        .then(d.str.slice(0, 2))
        .when(d.str.slice(0, 3).is_in(keys))
        .then(d.str.slice(0, 3))
    )
    frame = frame.with_columns(
        pl.when(pl.col("intl")).then(lookup).otherwise(pl.col("h_calling")).alias("cc")
    )
    cc = pl.col("cc")
    region = (
        pl.when(cc == pl.col("h_calling"))
        .then(pl.col("home"))
        .otherwise(cc.replace_strict(keys, mains, default=None, return_dtype=pl.String))
    )
    todo = pl.col("simple") & cc.is_not_null()
    return frame.select(
        pl.when(pl.col("intl")).then(d.str.slice(cc.str.len_chars())).otherwise(d).alias("n0"),
        pl.when(todo).then(region).alias("c"),
        pl.format("+{}", cc).alias("k"),
    )


def _check_regions(table: pl.DataFrame) -> pl.DataFrame:
    """Each row's national number checked against its region: ``ok``, ``n``, ``c``, ``k``."""
    regions = table["c"].drop_nulls().unique().to_list()
    if len(regions) <= ONE_PASS_REGIONS:
        number: pl.Expr = pl.col("n0")
        ok: pl.Expr = pl.lit(False)
        for code in regions:
            n_r, ok_r = _region_exprs(str(code))
            mine = pl.col("c") == code
            number = pl.when(mine).then(n_r).otherwise(number)
            ok = pl.when(mine).then(ok_r).otherwise(ok)
        return (
            table.lazy()
            .select(ok.fill_null(False).alias("ok"), number.alias("n"), "c", "k")
            .collect()
        )
    indexed = table.with_row_index("i")
    checked = [
        _check_region(part.select("i", "n0"), str(code))
        for (code,), part in indexed.filter(pl.col("c").is_not_null()).group_by("c")
    ]
    verdict = pl.concat(checked)
    out = indexed.join(verdict, on="i", how="left", maintain_order="left")
    return out.select(pl.col("ok").fill_null(False), pl.col("n").fill_null(pl.col("n0")), "c", "k")
