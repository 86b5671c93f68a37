"""DATE_TIME and DATE: dates written every way exports write them, sent as ISO text."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import polars as pl

from pipeline.fields.base import FieldCodec, JsonValue, ParseContext, Parsed, err, invalid, quoted

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


def _with_format(raw: pl.Series, date_format: str) -> tuple[pl.Series, pl.Series]:
    """Dates read with the mapping's ``date_format`` only."""
    has_tz = "%z" in date_format
    parsed = raw.str.to_datetime(
        date_format, strict=False, time_unit="ms", time_zone="UTC" if has_tz else None
    )
    if has_tz:
        parsed = parsed.dt.replace_time_zone(None)
    error = err(
        raw.is_not_null() & parsed.is_null(),
        pl.select(
            pl.format("{} does not match date_format '{}'", quoted(raw), pl.lit(date_format))
        ).to_series(),
    )
    return parsed, error


def to_datetime(
    raw: pl.Series, date_format: str | None, timezone: str | None = None
) -> tuple[pl.Series, pl.Series]:
    """Parse dates: an explicit format, else ISO and other unambiguous forms.

    ``03/04/2024`` could be March or April: without ``date_format`` it is refused.
    ``13/04/2024`` and ``04/13/2024`` are not ambiguous and are read as such.
    A value without an offset is UTC, or local time in ``timezone`` when given (see
    :func:`in_zone`). Returns (naive UTC datetime, error).
    """
    if date_format:
        value, error = _with_format(raw, date_format)
        if timezone and "%z" not in date_format:
            value, error = in_zone(raw, value, error, value.is_not_null(), timezone)
        return value, error
    value, error, naive = _unformatted(raw)
    if timezone:
        value, error = in_zone(raw, value, error, naive, timezone)
    return value, error


def in_zone(
    raw: pl.Series, value: pl.Series, error: pl.Series, naive: pl.Series, timezone: str
) -> tuple[pl.Series, pl.Series]:
    """Read the ``naive`` values as local time in ``timezone``, to UTC.

    When the clocks go back, an hour happens twice: the first (summer time) is taken.
    When they go forward, an hour does not exist: the value is refused with a reason.
    """
    local = value.dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null")
    utc = local.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    shifted = pl.select(pl.when(naive).then(utc).otherwise(value)).to_series()
    gap = naive & value.is_not_null() & shifted.is_null()
    error = pl.select(
        pl.when(gap)
        .then(
            pl.format(
                "{} does not exist in {} (the clocks went forward that night)",
                quoted(raw),
                pl.lit(timezone),
            )
        )
        .otherwise(error)
    ).to_series()
    return shifted.cast(pl.Datetime("ms")), error


def _unformatted(raw: pl.Series) -> tuple[pl.Series, pl.Series, pl.Series]:
    """Dates of any accepted form: value, error, and whether the text had no offset."""
    date_part = _parse_any(raw, DATE_FORMATS)
    rest = pl.select(pl.when(date_part.is_null()).then(raw)).to_series()
    dt_part = _parse_any(rest, DATETIME_FORMATS)
    rest = pl.select(pl.when(dt_part.is_null()).then(rest)).to_series()
    # ISO 8601's "Z" is UTC: what Twenty, Salesforce and most APIs write
    rest = rest.str.replace(r"(\d)[Zz]$", "${1}+00:00")
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
    error = invalid(raw, value, "a date")
    error = pl.select(
        pl.when(ambiguous)
        .then(
            pl.format(
                '{} is ambiguous (day/month or month/day?); set date_format, e.g. "%d/%m/%Y"',
                quoted(raw),
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
    return value, error, value.is_not_null() & tz_part.is_null()


class DateTimeCodec(FieldCodec):
    """DATE_TIME: any accepted date form -> ``YYYY-MM-DDTHH:MM:SS.000Z`` (UTC)."""

    types: ClassVar[tuple[str, ...]] = ("DATE_TIME",)
    wire_format: ClassVar[str] = "%Y-%m-%dT%H:%M:%S.000Z"
    sample_kind: ClassVar[str | None] = "date"

    def looks_like(self, values: pl.Series) -> pl.Series:
        return to_datetime(values, None)[0].is_not_null()

    def parse(self, raw: pl.Series, sub: str | None, ctx: ParseContext) -> Parsed:
        value, error = to_datetime(raw, ctx.spec.date_format, self._zone(ctx))
        return Parsed(value.dt.strftime(self.wire_format), error)

    def _zone(self, ctx: ParseContext) -> str | None:
        return ctx.spec.timezone

    def flatten(self, name: str, stored: JsonValue) -> dict[str, str | None]:
        """Twenty writes UTC as ``...Z``; the column says ``+00:00``, which reads back."""
        if isinstance(stored, str) and stored.endswith("Z"):
            return {name: stored[:-1] + "+00:00"}
        return super().flatten(name, stored)


class DateCodec(DateTimeCodec):
    """DATE: any accepted date form -> ``YYYY-MM-DD``."""

    types: ClassVar[tuple[str, ...]] = ("DATE",)
    wire_format: ClassVar[str] = "%Y-%m-%d"

    def _zone(self, ctx: ParseContext) -> str | None:
        return None  # a day is the same day in every zone
