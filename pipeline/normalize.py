"""Normalize: (chunk, plan) -> (records, rejects). Pure: no I/O, no API calls.

Every rule is a polars expression over the whole chunk where polars can express it.
Two rules need a library per value (phone numbers with ``phonenumbers``, unusual
e-mail addresses with ``email-validator``); they run once per *distinct* value of the
chunk and are joined back, so a file of repeated values costs almost nothing.

Records come out as a frame: ``_row``, ``_key`` and one column per top-level target
field (structs for composite fields). A relation with ``lookup:`` yields the lookup
value in ``__lookup__<joinColumn>``; the loader resolves it to an id. Rejected rows come
out with ``_row``, ``_stage``, ``_column``, ``_value`` and ``_reason``, every reason of
the row joined by "; ".
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import polars as pl
from email_validator import EmailNotValidError, validate_email

from pipeline.mapping import (
    FieldSpec,
    Mapping,
    check_mapping,
    key_is_unique,
    key_paths,
)
from pipeline.phones import PHONE_PARTS, to_phone, to_phone_list
from pipeline.schema import Field, ObjectSchema, WorkspaceSchema
from pipeline.sources import ROW

KEY = "_key"
LOOKUP_PREFIX = "__lookup__"
REJECT_COLUMNS = ("_row", "_stage", "_column", "_value", "_reason")
ID_NAMESPACE = uuid.UUID("1b6d7c35-5a0e-4f4e-8d2a-2f7c0c9a6e11")
KEY_SEPARATOR = "\x1f"
WORKERS = 2

TRUE_TOKENS = ("yes", "y", "true", "t", "1", "x", "on", "oui", "ja", "si", "sí")
FALSE_TOKENS = ("no", "n", "false", "f", "0", "off", "non", "nein")
# A vectorized pre-check that accepts the everyday address shape; anything else is
# judged by email-validator, which also says precisely what is wrong.
EMAIL_FAST = (
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
URL_PARTS = r"^(?:([A-Za-z][A-Za-z0-9+.-]*)://)?([^/?#]*)(.*)$"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
NUMERIC_SUBFIELDS = ("addressLat", "addressLng")

# Date forms accepted without a date_format: unambiguous ones only.
DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%Y.%m.%d",
    "%d %b %Y",
    "%d %B %Y",
    "%b %d, %Y",
    "%B %d, %Y",
    "%b %d %Y",
    "%B %d %Y",
    "%Y%m%d",
)
DATETIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
)
DATETIME_TZ_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%d %H:%M:%S%z",
    "%Y-%m-%dT%H:%M%z",
)


@dataclass(frozen=True)
class Plan:
    """A mapping compiled against the workspace: what to produce, and the key."""

    mapping: Mapping
    object: ObjectSchema
    schema: WorkspaceSchema
    key: tuple[str, ...]
    key_unique: bool
    derive_id: bool
    nulls: tuple[str, ...]
    columns: tuple[str, ...] = field(default=())
    keys_only: bool = False
    """Set on the duplicate pre-pass: keys are computed, values are not judged."""

    def key_only(self) -> Plan:
        """The same plan reduced to the fields the key is made of (duplicate pre-pass)."""
        heads = {p.split(".")[0] for p in self.key}
        specs = tuple(s for s in self.mapping.fields if s.target.split(".")[0] in heads)
        mapping = replace(self.mapping, fields=specs)
        return replace(self, mapping=mapping, derive_id=False, keys_only=True)

    @property
    def lookups(self) -> list[tuple[FieldSpec, Field]]:
        """Relation specs resolved by lookup, with their field."""
        out = []
        for spec in self.mapping.fields:
            resolved = self.object.resolve_path(spec.target)
            if resolved and resolved[0].relation is not None and spec.lookup not in (None, "id"):
                out.append((spec, resolved[0]))
        return out


def make_plan(mapping: Mapping, schema: WorkspaceSchema, columns: list[str] | None = None) -> Plan:
    """Check ``mapping`` against the workspace and source columns; compile it."""
    obj = check_mapping(mapping, schema, columns)
    paths = key_paths(mapping, obj)
    unique = key_is_unique(paths, obj)
    mapped_id = any(s.target == "id" for s in mapping.fields)
    nulls = tuple(dict.fromkeys(("", *mapping.source.null_values)))
    return Plan(
        mapping,
        obj,
        schema,
        paths,
        unique,
        derive_id=not unique and not mapped_id,
        nulls=nulls,
        columns=tuple(columns or ()),
    )


# --------------------------------------------------------------------------- results


@dataclass
class Normalized:
    """The outcome of one chunk."""

    records: pl.DataFrame
    rejects: pl.DataFrame


@dataclass
class _Out:
    """One spec's contribution: a value and, per row, why it failed (or null)."""

    value: pl.Series
    error: pl.Series


def _err(mask: pl.Series, message: pl.Series | str) -> pl.Series:
    if isinstance(message, str):
        return pl.select(pl.when(mask).then(pl.lit(message)).otherwise(None)).to_series()
    return pl.select(pl.when(mask).then(message).otherwise(None)).to_series()


def _quoted(raw: pl.Series) -> pl.Series:
    return pl.select(pl.format("'{}'", raw)).to_series()


def _invalid(raw: pl.Series, value: pl.Series, what: str) -> pl.Series:
    mask = raw.is_not_null() & value.is_null()
    return _err(mask, pl.select(pl.format("{} is not {}", _quoted(raw), pl.lit(what))).to_series())


def _no_error(n: int) -> pl.Series:
    return pl.Series("e", [None] * n, dtype=pl.String)


# --------------------------------------------------------------------------- raw text


def raw_expr(spec: FieldSpec, nulls: tuple[str, ...]) -> pl.Expr:
    """The spec's text as an expression: column / constant / template, null tokens,
    transforms, default. Empty after stripping means null."""
    if spec.column is not None:
        expr = pl.col(spec.column)
    elif spec.template is not None:
        parts = re.split(r"\{([^{}]+)\}", spec.template)
        pieces: list[pl.Expr] = []
        for i, part in enumerate(parts):
            if i % 2:
                pieces.append(pl.col(part).fill_null(""))
            elif part:
                pieces.append(pl.lit(part))
        expr = pl.concat_str(pieces).str.replace_all(r"\s+", " ")
    else:
        value = spec.value
        text = (
            None
            if value is None
            else (str(value).lower() if isinstance(value, bool) else str(value))
        )
        expr = pl.lit(text, dtype=pl.String)
    expr = expr.cast(pl.String).str.strip_chars()
    tokens = list(dict.fromkeys(("", *nulls)))
    expr = pl.when(expr.is_in(tokens)).then(None).otherwise(expr)
    if spec.transforms:
        for t in spec.transforms:
            if t.name == "strip":
                expr = expr.str.strip_chars()
            elif t.name == "lower":
                expr = expr.str.to_lowercase()
            elif t.name == "upper":
                expr = expr.str.to_uppercase()
            elif t.name == "title":
                expr = expr.str.to_titlecase()
            elif t.name == "replace":
                expr = expr.str.replace_all(t.pattern or "", t.replacement, literal=True)
            elif t.name == "regex":
                expr = expr.str.replace_all(t.pattern or "", t.replacement.replace("\\", "$"))
        # a transform may leave nothing but blanks
        expr = pl.when(expr.str.strip_chars() == "").then(None).otherwise(expr)
    if spec.default is not None:
        expr = expr.fill_null(pl.lit(str(spec.default)))
    return expr


def raw_texts(
    frame: pl.DataFrame, specs: Iterable[FieldSpec], nulls: tuple[str, ...]
) -> list[pl.Series]:
    """Every spec's text, in one select (polars runs the columns side by side)."""
    specs = list(specs)
    n = frame.height
    if not specs:
        return []
    out = frame.select([raw_expr(s, nulls).alias(f"r{i}") for i, s in enumerate(specs)])
    series = []
    for i in range(len(specs)):
        column = out[f"r{i}"].alias("raw")
        if column.len() != n:  # a lone constant
            column = pl.Series("raw", [column[0] if column.len() else None] * n, dtype=pl.String)
        series.append(column)
    return series


def raw_text(frame: pl.DataFrame, spec: FieldSpec, nulls: tuple[str, ...]) -> pl.Series:
    """One spec's text for every row (see :func:`raw_expr`)."""
    return raw_texts(frame, [spec], nulls)[0]


# --------------------------------------------------------------------------- scalar types


def to_number(raw: pl.Series, decimal: str | None) -> _Out:
    """Numbers with thousands separators; ``decimal: ","`` for 1.234,56."""
    cleaned = raw.str.replace_all(r"[\s\u00a0\u202f'_]", "")
    if decimal == ",":
        cleaned = cleaned.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True)
    else:
        cleaned = cleaned.str.replace_all(",", "", literal=True)
    value = cleaned.cast(pl.Float64, strict=False)
    value = pl.select(pl.when(value.is_finite()).then(value).otherwise(None)).to_series()
    return _Out(value, _invalid(raw, value, "a number"))


def to_micros(raw: pl.Series, decimal: str | None) -> _Out:
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
    decimal_value = pl.select(pl.when(shape_ok).then(cleaned).otherwise(None)).to_series()
    micros = (decimal_value.cast(pl.Decimal(38, 6), strict=False) * 1_000_000).cast(
        pl.Int64, strict=False
    )
    too_precise = raw.is_not_null() & cleaned.str.contains(r"\.\d{7,}$")
    error = _invalid(raw, micros, "an amount")
    error = pl.select(
        pl.when(too_precise)
        .then(pl.format("{} has more than 6 decimals", _quoted(raw)))
        .otherwise(error)
    ).to_series()
    return _Out(micros, error)


def to_boolean(raw: pl.Series) -> _Out:
    """yes/no/true/false/1/0/y/n/x (and a few languages) -> bool."""
    table = dict.fromkeys(TRUE_TOKENS, True) | dict.fromkeys(FALSE_TOKENS, False)
    value = raw.str.to_lowercase().replace_strict(
        list(table), list(table.values()), default=None, return_dtype=pl.Boolean
    )
    return _Out(value, _invalid(raw, value, "a yes/no value"))


def _parse_any(raw: pl.Series, formats: Iterable[str], *, tz: bool = False) -> pl.Series:
    """Try ``formats`` in turn, each only on the values still unparsed."""
    out = pl.Series(raw.name, [None] * raw.len(), dtype=pl.Datetime("ms"))
    todo = raw.is_not_null()
    for fmt in formats:
        if not todo.any():
            break
        index = todo.arg_true()
        parsed = raw.gather(index).str.to_datetime(
            fmt, strict=False, time_unit="ms", time_zone="UTC" if tz else None
        )
        if tz:
            parsed = parsed.dt.replace_time_zone(None)
        out = out.scatter(index, parsed).cast(pl.Datetime("ms"))
        todo = todo & out.is_null()
    return out


def to_datetime(raw: pl.Series, date_format: str | None) -> tuple[pl.Series, pl.Series]:
    """Parse dates: an explicit format, else ISO and other unambiguous forms.

    ``03/04/2024`` could be March or April: without ``date_format`` it is refused.
    ``13/04/2024`` and ``04/13/2024`` are not ambiguous and are read as such.
    Returns (naive UTC datetime, error).
    """
    if date_format:
        has_tz = "%z" in date_format
        parsed = raw.str.to_datetime(
            date_format, strict=False, time_unit="ms", time_zone="UTC" if has_tz else None
        )
        if has_tz:
            parsed = parsed.dt.replace_time_zone(None)
        error = _err(
            raw.is_not_null() & parsed.is_null(),
            pl.select(
                pl.format("{} does not match date_format '{}'", _quoted(raw), pl.lit(date_format))
            ).to_series(),
        )
        return parsed, error
    date_part = _parse_any(raw, DATE_FORMATS)
    rest = pl.select(pl.when(date_part.is_null()).then(raw)).to_series()
    dt_part = _parse_any(rest, DATETIME_FORMATS)
    rest = pl.select(pl.when(dt_part.is_null()).then(rest)).to_series()
    tz_part = _parse_any(rest, DATETIME_TZ_FORMATS, tz=True)
    parts = raw.str.extract_groups(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})$")
    first = parts.struct.field("1").cast(pl.Int32, strict=False)
    second = parts.struct.field("2").cast(pl.Int32, strict=False)
    year = parts.struct.field("3")
    day_first = pl.select(pl.format("{}-{}-{}", year, second, first)).to_series()
    month_first = pl.select(pl.format("{}-{}-{}", year, first, second)).to_series()
    slash = (
        pl.select(
            pl.when(first > 12).then(day_first).when(second > 12).then(month_first).otherwise(None)
        )
        .to_series()
        .str.to_datetime("%Y-%m-%d", strict=False, time_unit="ms")
    )
    value = pl.select(pl.coalesce([tz_part, dt_part, date_part, slash])).to_series()
    ambiguous = (
        raw.is_not_null() & first.is_not_null() & (first <= 12) & (second <= 12) & (first != second)
    )
    error = _invalid(raw, value, "a date")
    error = pl.select(
        pl.when(ambiguous)
        .then(
            pl.format(
                '{} is ambiguous (day/month or month/day?); set date_format, e.g. "%d/%m/%Y"',
                _quoted(raw),
            )
        )
        .otherwise(error)
    ).to_series()
    same = ambiguous.not_() & first.is_not_null() & (first == second)
    value = pl.select(
        pl.when(same)
        .then(day_first.str.to_datetime("%Y-%m-%d", strict=False, time_unit="ms"))
        .otherwise(value)
    ).to_series()
    error = pl.select(pl.when(value.is_not_null()).then(None).otherwise(error)).to_series()
    return value, error


def options_table(f: Field, spec: FieldSpec) -> dict[str, str]:
    """Lower-cased label or value -> option value; the mapping's ``values`` first."""
    table: dict[str, str] = {}
    for option in f.options:
        table.setdefault(option.value.casefold(), option.value)
        table.setdefault(option.label.casefold(), option.value)
    if f.type == "RATING":
        for i, option in enumerate(f.options, start=1):
            table.setdefault(str(i), option.value)
    for label, value in spec.values:
        chosen = f.option(value)
        table[label.casefold()] = chosen.value if chosen is not None else value
    return table


def to_option(raw: pl.Series, f: Field, spec: FieldSpec) -> _Out:
    """SELECT / RATING: a label or value, case-insensitive, through the values table."""
    table = options_table(f, spec)
    value = raw.str.to_lowercase().replace_strict(
        list(table), list(table.values()), default=None, return_dtype=pl.String
    )
    names = ", ".join(o.value for o in f.options)
    error = _err(
        raw.is_not_null() & value.is_null(),
        pl.select(
            pl.format(
                "{} is not an option of {} ({}); map it with values:",
                _quoted(raw),
                pl.lit(f.name),
                pl.lit(names),
            )
        ).to_series(),
    )
    return _Out(value, error)


def _split(raw: pl.Series, sep: str | None) -> pl.Series:
    lists = (
        raw.str.split(sep)
        if sep
        else raw.map_elements(lambda v: [v], return_dtype=pl.List(pl.String))
    )
    cleaned = lists.list.eval(pl.element().str.strip_chars()).list.eval(
        pl.element().filter(pl.element() != "")
    )
    return pl.select(pl.when(cleaned.list.len() > 0).then(cleaned).otherwise(None)).to_series()


def to_multi_option(raw: pl.Series, f: Field, spec: FieldSpec) -> _Out:
    """MULTI_SELECT: split, each item through the options table."""
    table = options_table(f, spec)
    items = _split(raw, spec.split or ",")
    mapped = items.list.eval(
        pl.element()
        .str.to_lowercase()
        .replace_strict(list(table), list(table.values()), default=None, return_dtype=pl.String)
    )
    bad = mapped.list.eval(pl.element().is_null()).list.any().fill_null(False)
    value = pl.select(pl.when(bad).then(None).otherwise(mapped)).to_series()
    names = ", ".join(o.value for o in f.options)
    error = _err(
        bad,
        pl.select(
            pl.format(
                "{} has a value that is not an option of {} ({})",
                _quoted(raw),
                pl.lit(f.name),
                pl.lit(names),
            )
        ).to_series(),
    )
    return _Out(value, error)


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


def to_url(raw: pl.Series) -> _Out:
    """LINKS URLs (see :func:`normalize_url`)."""
    value = normalize_url(raw)
    return _Out(value, _invalid(raw, value, "a web address"))


@lru_cache(maxsize=200_000)
def _email_verdict(address: str) -> tuple[str | None, str | None]:
    try:
        result = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return None, str(exc)
    return result.normalized.lower(), None


def normalize_email(raw: pl.Series) -> _Out:
    """Lower-cased addresses; the usual shape checked vectorized, the rest by email-validator."""
    lowered = raw.str.to_lowercase()
    fast = lowered.str.contains(EMAIL_FAST).fill_null(False)
    others = lowered.filter(lowered.is_not_null() & ~fast).unique()
    value, error = lowered, _no_error(raw.len())
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
            .otherwise(pl.format("{} is not a valid email address: {}", _quoted(raw), slow_error))
        ).to_series()
    return _Out(value, error)


def to_uuid(raw: pl.Series) -> _Out:
    """UUIDs, lower-cased."""
    ok = raw.str.contains(UUID_PATTERN).fill_null(False)
    value = pl.select(pl.when(ok).then(raw.str.to_lowercase()).otherwise(None)).to_series()
    return _Out(value, _invalid(raw, value, "a UUID"))


def to_json_text(raw: pl.Series) -> _Out:
    """RAW_JSON: the text must parse as JSON; it is sent as the JSON string."""
    import json

    def check(text: str) -> bool:
        try:
            json.loads(text)
        except ValueError:
            return False
        return True

    unique = raw.drop_nulls().unique()
    good = [v for v in unique.to_list() if check(v)]
    ok = raw.is_in(good)
    value = pl.select(pl.when(ok).then(raw).otherwise(None)).to_series()
    return _Out(value, _invalid(raw, value, "valid JSON"))


# --------------------------------------------------------------------------- fields


def _name_parts(raw: pl.Series) -> pl.Series:
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


def _struct(series: dict[str, pl.Series], n: int) -> pl.Series:
    frame = pl.DataFrame(series) if series else pl.DataFrame({"_": [None] * n})
    all_null = pl.all_horizontal([pl.col(c).is_null() for c in frame.columns])
    return frame.select(
        pl.when(all_null).then(None).otherwise(pl.struct(frame.columns))
    ).to_series()


def evaluate(
    raw: pl.Series,
    spec: FieldSpec,
    f: Field,
    sub: str | None,
    plan: Plan,
    country: pl.Series | None = None,
) -> _Out:
    """One spec's text (see :func:`raw_text`) typed: its value and its per-row error.

    Columns that repeat their values (cities, companies, stages, dates) are typed once
    per distinct value and mapped back. ``country`` is a phone spec's per-row country.
    """
    n = raw.len()
    if country is not None:
        return _typed(raw, spec, f, sub, plan, country)
    # A sample spread over the chunk (not its head: exports are often sorted) says
    # whether hashing the whole column can pay.
    sample = raw.gather_every(max(n // 500, 1)) if n >= 1000 else None
    if sample is not None and sample.n_unique() * 2 < sample.len():
        distinct = raw.unique(maintain_order=True)
        if distinct.len() * 4 < n:
            out = _evaluate(distinct, spec, f, sub, plan)
            index = pl.DataFrame({"raw": raw}).join(
                pl.DataFrame({"raw": distinct}).with_row_index("i"),
                on="raw",
                how="left",
                nulls_equal=True,
                maintain_order="left",
            )["i"]
            return _Out(out.value.gather(index), out.error.gather(index))
    return _evaluate(raw, spec, f, sub, plan)


def _evaluate(raw: pl.Series, spec: FieldSpec, f: Field, sub: str | None, plan: Plan) -> _Out:
    n = raw.len()
    if f.relation is not None:
        if spec.lookup in (None, "id"):
            return to_uuid(raw)
        target = plan.schema.object(f.relation.target_object)
        resolved = target.resolve_path(spec.lookup) if target else None
        if resolved is None:
            return _Out(raw, _no_error(n))
        lookup_field, lookup_sub = resolved
        return _typed(raw, spec, lookup_field, lookup_sub, plan)
    return _typed(raw, spec, f, sub, plan)


def _typed(
    raw: pl.Series,
    spec: FieldSpec,
    f: Field,
    sub: str | None,
    plan: Plan,
    country: pl.Series | None = None,
) -> _Out:
    n = raw.len()
    t = f.type
    if t == "EMAILS":
        if sub == "additionalEmails":
            return _list_of(raw, spec.split or ",", normalize_email)
        # The pre-pass only needs the key: a lower-cased address is the key of every
        # valid one, and an invalid one is rejected by the main pass anyway.
        email = (
            _Out(raw.str.to_lowercase(), _no_error(n)) if plan.keys_only else normalize_email(raw)
        )
        if sub is None:  # the whole field from one column: its primary address
            return _Out(_struct({"primaryEmail": email.value}, n), email.error)
        return email
    if t == "LINKS":
        if sub == "primaryLinkLabel":
            return _Out(raw, _no_error(n))
        if sub == "secondaryLinks":
            inner = _list_of(raw, spec.split or ",", to_url)
            links = inner.value.list.eval(
                pl.struct(pl.element().alias("url"), pl.lit("").alias("label"))
            )
            return _Out(links, inner.error)
        link = to_url(raw)
        if sub is None:
            return _Out(_struct({"primaryLinkUrl": link.value}, n), link.error)
        return link
    if t == "PHONES":
        if sub in PHONE_PARTS:
            return _Out(raw, _no_error(n))
        where = spec.country_column
        if sub == "additionalPhones":
            items = to_phone_list(raw, spec.split or ",", spec.default_country, country, where)
            return _Out(*items)
        # primaryPhoneNumber too: the whole struct, spread by normalize() (PHONE_PARTS)
        return _Out(*to_phone(raw, spec.default_country, country, where))
    if t == "CURRENCY":
        if sub == "currencyCode":
            code = raw.str.to_uppercase()
            ok = code.str.contains(r"^[A-Z]{3}$").fill_null(False)
            value = pl.select(pl.when(ok).then(code)).to_series()
            return _Out(value, _invalid(raw, value, "a 3-letter currency code"))
        if sub == "amountMicros":
            micros = to_number(raw, spec.decimal)
            return _Out(micros.value.cast(pl.Int64, strict=False), micros.error)
        return to_micros(raw, spec.decimal)
    if t == "FULL_NAME" and sub is None:
        return _Out(_name_parts(raw), _no_error(n))
    if t == "ADDRESS" and sub in NUMERIC_SUBFIELDS:
        return to_number(raw, spec.decimal)
    if t == "RICH_TEXT_V2":
        if sub is None:
            return _Out(_struct({"markdown": raw}, n), _no_error(n))
        return _Out(raw, _no_error(n))
    if sub is not None or t in ("TEXT", "ACTOR"):
        return _Out(raw, _no_error(n))
    if t in ("NUMBER", "NUMERIC", "POSITION"):
        return to_number(raw, spec.decimal)
    if t == "BOOLEAN":
        return to_boolean(raw)
    if t in ("DATE_TIME", "DATE"):
        value, error = to_datetime(raw, spec.date_format)
        fmt = "%Y-%m-%dT%H:%M:%S.000Z" if t == "DATE_TIME" else "%Y-%m-%d"
        return _Out(value.dt.strftime(fmt), error)
    if t in ("SELECT", "RATING"):
        return to_option(raw, f, spec)
    if t == "MULTI_SELECT":
        return to_multi_option(raw, f, spec)
    if t == "ARRAY":
        return _Out(_split(raw, spec.split), _no_error(n))
    if t == "UUID":
        return to_uuid(raw)
    if t == "RAW_JSON":
        return to_json_text(raw)
    return _Out(raw, _no_error(n))


def _list_of(raw: pl.Series, sep: str, each: Callable[[pl.Series], _Out]) -> _Out:
    """Split a cell into items and normalize each; any bad item fails the cell."""
    n = raw.len()
    items = _split(raw, sep)
    counts = items.list.len().fill_null(0)
    flat = items.explode()
    inner = each(flat)
    frame = pl.DataFrame(
        {
            "i": pl.int_range(n, eager=True).repeat_by(counts.clip(1)).explode(),
            "v": inner.value,
            "e": inner.error,
        }
    )
    grouped = frame.group_by("i", maintain_order=True).agg(
        pl.col("v").drop_nulls(), pl.col("e").drop_nulls().first()
    )
    value = pl.select(pl.when(grouped["v"].list.len() > 0).then(grouped["v"])).to_series()
    return _Out(value, grouped["e"])


# --------------------------------------------------------------------------- chunk


def normalize(chunk: pl.DataFrame, plan: Plan) -> Normalized:
    """Normalize one chunk of text rows into records and rejects."""
    n = chunk.height
    obj = plan.object
    errors: list[tuple[str, pl.Series, pl.Series]] = []  # (column label, raw, error)
    top: dict[str, pl.Series] = {}
    subs: dict[str, dict[str, pl.Series]] = {}
    lookups: dict[str, pl.Series] = {}
    implied: dict[str, pl.Series] = {}

    raws = raw_texts(chunk, plan.mapping.fields, plan.nulls)

    def run(item: tuple[FieldSpec, pl.Series]) -> tuple[pl.Series, _Out]:
        spec, raw = item
        resolved = obj.resolve_path(spec.target)
        assert resolved is not None  # checked by make_plan
        country = (
            raw_text(
                chunk, FieldSpec(spec.target, spec.line, column=spec.country_column), plan.nulls
            )
            if spec.country_column
            else None
        )
        return raw, evaluate(raw, spec, resolved[0], resolved[1], plan, country)

    # Specs are independent and polars releases the GIL while it computes, so two
    # threads keep both cores busy.
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = list(pool.map(run, zip(plan.mapping.fields, raws, strict=True)))
    for spec, (raw, out) in zip(plan.mapping.fields, results, strict=True):
        f, sub = obj.resolve_path(spec.target) or (None, None)
        assert f is not None
        label = spec.column or spec.target
        if spec.required:
            missing = out.value.is_null() & out.error.is_null()
            out = _Out(
                out.value,
                pl.select(
                    pl.when(missing).then(pl.lit("required, but empty")).otherwise(out.error)
                ).to_series(),
            )
        errors.append((label, raw, out.error))
        if f.relation is not None:
            join = f.relation.join_column or f"{f.name}Id"
            if spec.lookup in (None, "id"):
                top[join] = out.value
            else:
                lookups[join] = out.value
        elif sub is None:
            top[f.name] = out.value
        elif f.type == "PHONES" and sub == "primaryPhoneNumber":
            implied[f.name] = out.value  # the number with its country and calling code
        else:
            subs.setdefault(f.name, {})[sub] = out.value
    for name, whole in implied.items():
        parts = subs.setdefault(name, {})
        for part in ("primaryPhoneNumber", *PHONE_PARTS):  # a mapped sub-field wins
            parts.setdefault(part, whole.struct.field(part))
    for name, parts in subs.items():
        if name in top:  # the whole field and more sub-fields: phones + additionalPhones
            for part in top[name].struct.fields:
                parts.setdefault(part, top[name].struct.field(part))
        top[name] = _struct(parts, n)
    _apply_currency(chunk, plan, top, errors)
    records = pl.DataFrame(
        {ROW: chunk[ROW], **top, **{LOOKUP_PREFIX + k: v for k, v in lookups.items()}}
    )
    # the key: every key path must have a value
    key_exprs = []
    for path in plan.key:
        head, _, sub = path.partition(".")
        column = head
        if head not in records.columns:
            key_field = obj.field(head)
            if key_field is not None and key_field.relation is not None:
                column = key_field.relation.join_column or head
                if column not in records.columns:
                    # a relation looked up by a unique field of its target: the key is
                    # the looked-up value, normalized like the target's field
                    column = LOOKUP_PREFIX + column
        expr = pl.col(column)
        if sub and isinstance(records.schema.get(column), pl.Struct):
            expr = expr.struct.field(sub)
        key_exprs.append(expr.cast(pl.String))
    if key_exprs:
        key = records.select(pl.concat_str(key_exprs, separator=KEY_SEPARATOR).alias(KEY))
        records = records.with_columns(key[KEY])
        if plan.keys_only:  # the duplicate pre-pass wants nothing else
            return Normalized(records.select(ROW, KEY), chunk.head(0))
        earlier = pl.any_horizontal([e.is_not_null() for _, _, e in errors]) if errors else None
        missing_key = records[KEY].is_null()
        if earlier is not None:
            missing_key = missing_key & ~pl.select(earlier).to_series()
        key_columns = [c for s in plan.key_only().mapping.fields for c in s.columns]
        message = (
            f"empty, and it is the key ({', '.join(plan.key)}): without it the record "
            "could not be matched on re-runs"
        )
        errors.append(
            (
                ", ".join(dict.fromkeys(key_columns)) or "key",
                pl.Series([None] * n, dtype=pl.String),
                _err(missing_key, message),
            )
        )
    else:
        records = records.with_columns(pl.lit(None, dtype=pl.String).alias(KEY))
    # collect the reasons of each row
    reason_cols = {f"e{i}": e for i, (_, _, e) in enumerate(errors)}
    labels = [label for label, _, _ in errors]
    raws = [raw for _, raw, _ in errors]
    table = (
        pl.DataFrame(reason_cols)
        if reason_cols
        else pl.DataFrame({"e0": [None] * n}, schema={"e0": pl.String})
    )
    reason = (
        table.select(
            pl.concat_str(
                [
                    pl.when(pl.col(f"e{i}").is_not_null()).then(
                        pl.format("{}: {}", pl.lit(labels[i]), pl.col(f"e{i}"))
                    )
                    for i in range(len(errors))
                ],
                separator="; ",
                ignore_nulls=True,
            ).alias("r")
        )["r"]
        if errors
        else pl.Series([None] * n, dtype=pl.String)
    )
    reason = pl.select(pl.when(reason == "").then(None).otherwise(reason)).to_series()
    first_col = (
        table.select(
            pl.coalesce(
                [
                    pl.when(pl.col(f"e{i}").is_not_null()).then(pl.lit(labels[i]))
                    for i in range(len(errors))
                ]
            ).alias("c")
        )["c"]
        if errors
        else reason
    )
    first_val = (
        pl.DataFrame({f"r{i}": raws[i] for i in range(len(raws))})
        .with_columns(table)
        .select(
            pl.coalesce(
                [
                    pl.when(pl.col(f"e{i}").is_not_null()).then(pl.col(f"r{i}"))
                    for i in range(len(errors))
                ]
            ).alias("v")
        )["v"]
        if errors
        else reason
    )
    bad = reason.is_not_null()
    rejects = chunk.filter(bad).with_columns(
        pl.lit("normalize").alias("_stage"),
        first_col.filter(bad).alias("_column"),
        first_val.filter(bad).alias("_value"),
        reason.filter(bad).alias("_reason"),
    )
    records = records.filter(~bad)
    if plan.derive_id and records.height:
        keys = records[KEY]
        unique = keys.unique().to_list()
        ids = [
            str(uuid.uuid5(ID_NAMESPACE, f"{obj.name_singular}{KEY_SEPARATOR}{k}")) for k in unique
        ]
        records = records.with_columns(
            keys.replace_strict(unique, ids, return_dtype=pl.String).alias("id")
        )
    return Normalized(records, rejects)


def _apply_currency(
    chunk: pl.DataFrame,
    plan: Plan,
    top: dict[str, pl.Series],
    errors: list[tuple[str, pl.Series, pl.Series]],
) -> None:
    """Whole CURRENCY specs: pair the micros with the constant or column currency code."""
    n = chunk.height
    for spec in plan.mapping.fields:
        resolved = plan.object.resolve_path(spec.target)
        if resolved is None or resolved[0].type != "CURRENCY" or resolved[1] is not None:
            continue
        f = resolved[0]
        micros = top[f.name]
        if spec.currency_column:
            code = chunk[spec.currency_column].str.strip_chars().str.to_uppercase()
            ok = code.str.contains(r"^[A-Z]{3}$").fill_null(False)
            bad = micros.is_not_null() & ~ok
            errors.append(
                (
                    spec.currency_column,
                    chunk[spec.currency_column],
                    _err(bad, "the currency is not a 3-letter code like EUR"),
                )
            )
        else:
            code = pl.Series([spec.currency] * n, dtype=pl.String)
        top[f.name] = pl.select(
            pl.when(micros.is_not_null()).then(
                pl.struct(micros.alias("amountMicros"), code.alias("currencyCode"))
            )
        ).to_series()


# --------------------------------------------------------------------------- records -> JSON


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        cleaned = {k: _clean(v) for k, v in value.items() if v is not None}
        return cleaned or None
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def to_payloads(records: pl.DataFrame) -> list[dict[str, Any]]:
    """Record rows -> the JSON bodies Twenty takes; nulls are left out, not sent.

    An empty cell therefore never erases what the workspace holds.
    """
    body_columns = [
        c for c in records.columns if c not in (ROW, KEY) and not c.startswith(LOOKUP_PREFIX)
    ]
    out = []
    for row in records.select(body_columns).to_dicts():
        out.append({k: v for k, v in ((k, _clean(v)) for k, v in row.items()) if v is not None})
    return out


def empty_rejects(columns: Iterable[str]) -> pl.DataFrame:
    """A rejects frame with no rows and the usual columns."""
    schema: dict[str, Any] = {ROW: pl.Int64}
    schema.update(dict.fromkeys((c for c in columns if c != ROW), pl.String))
    schema.update(
        {"_stage": pl.String, "_column": pl.String, "_value": pl.String, "_reason": pl.String}
    )
    return pl.DataFrame(schema=schema)
