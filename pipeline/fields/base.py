"""What every field codec is made of: the parse result, its context, the base class.

A codec knows one Twenty field type from the client's side (twenty-api.md §6): its
sub-fields, how a source column of text parses into it (vectorized, over a whole chunk),
what its value looks like in a record payload, and how a value Twenty stores flattens back
into text columns that the same codec parses into the same payload value again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import polars as pl

if TYPE_CHECKING:  # the codecs take the workspace's and the mapping's models as they are
    from pipeline.mapping import FieldSpec
    from pipeline.schema import Field

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]
"""A value as it travels in a record payload or comes back from Twenty."""

SpecOptions = dict[str, str]
"""A mapping spec as YAML would hold it (``{column: c, split: ";"}``)."""


@dataclass
class Parsed:
    """One spec's contribution: a value and, per row, why it failed (or null)."""

    value: pl.Series
    error: pl.Series


@dataclass(frozen=True)
class ParseContext:
    """What a codec reads a column with, beyond the text itself.

    Attributes:
        field: the workspace field the column goes into (its options, its name).
        spec: the mapping's options for the column (split, decimal, date_format, ...).
        keys_only: set on the duplicate pre-pass, where only the key is needed.
        countries: a phone spec's per-row country text (its ``country_column``).
    """

    field: Field
    spec: FieldSpec
    keys_only: bool = False
    countries: pl.Series | None = None


class FieldCodec:
    """One Twenty field type, read from text and flattened back into text.

    Subclasses set ``types`` and ``subfields`` and override :meth:`parse` (and, where a
    stored value is not a plain scalar, :meth:`flatten` and :meth:`reimport`).
    """

    types: ClassVar[tuple[str, ...]] = ()
    subfields: ClassVar[tuple[str, ...]] = ()
    list_subfields: ClassVar[frozenset[str]] = frozenset()
    """Sub-fields that hold lists; they flatten to JSON list text."""
    unique_subfield: ClassVar[str | None] = None
    """The sub-field an upsert matches a unique field of this type on (twenty-api.md §4.1)."""
    writable: ClassVar[bool] = True
    """Whether Twenty accepts the type in a write at all."""
    holds_list: ClassVar[bool] = False
    """Whether a whole value is a list, which a cell writes with a separator."""
    draft_paths: ClassVar[tuple[str | None, ...]] = (None,)
    """What a drafted mapping proposes a column for: the whole field (None) or sub-fields."""
    sample_kind: ClassVar[str | None] = None
    """What a column of this type's values looks like to a draft (email, phone, url, date)."""

    def looks_like(self, values: pl.Series) -> pl.Series:
        """Which sample ``values`` look like this type's (see ``sample_kind``)."""
        return pl.Series([False] * values.len())

    def parse(self, raw: pl.Series, sub: str | None, ctx: ParseContext) -> Parsed:
        """Type ``raw`` (a spec's text, one value a row) into the field or ``sub``."""
        return Parsed(raw, no_error(raw.len()))

    def wire(self, value: JsonValue) -> JsonValue:
        """The payload value of a parsed value: empty parts are left out, not sent.

        An empty cell therefore never erases what the workspace holds.
        """
        return clean(value)

    def flatten(self, name: str, stored: JsonValue) -> dict[str, str | None]:
        """A value Twenty returns -> text columns named ``name`` or ``name.sub``."""
        if not self.subfields:
            return {name: scalar_text(stored)}
        parts = stored if isinstance(stored, dict) else {}
        out: dict[str, str | None] = {}
        for sub in self.subfields:
            part = parts.get(sub)
            if sub in self.list_subfields:
                out[f"{name}.{sub}"] = json.dumps(part, ensure_ascii=False) if part else None
            else:
                out[f"{name}.{sub}"] = scalar_text(part)
        return out

    def reimport(self, name: str) -> dict[str, SpecOptions]:
        """The mapping fields that read :meth:`flatten`'s columns back into this field."""
        if not self.subfields:
            return {name: {"column": name}}
        return {f"{name}.{s}": {"column": f"{name}.{s}"} for s in self.subfields}


# --------------------------------------------------------------------------- text


def scalar_text(value: JsonValue) -> str | None:
    """A stored scalar as the text a column holds: JSON for structures, ``true``/``false``,
    whole numbers without a decimal point."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))  # 70, as a JavaScript server writes the number 70.0
    if isinstance(value, int | float | str):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def clean(value: JsonValue) -> JsonValue:
    """Nulls out of objects, and an object of nothing but nulls is itself null."""
    if isinstance(value, dict):
        cleaned = {k: clean(v) for k, v in value.items() if v is not None}
        return cleaned or None
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


# --------------------------------------------------------------------------- series helpers


def err(mask: pl.Series, message: pl.Series | str) -> pl.Series:
    """``message`` where ``mask`` holds, else null."""
    if isinstance(message, str):
        return pl.select(pl.when(mask).then(pl.lit(message)).otherwise(None)).to_series()
    return pl.select(pl.when(mask).then(message).otherwise(None)).to_series()


def quoted(raw: pl.Series) -> pl.Series:
    """Each value in single quotes, as reasons show it."""
    return pl.select(pl.format("'{}'", raw)).to_series()


def invalid(raw: pl.Series, value: pl.Series, what: str) -> pl.Series:
    """``'x' is not <what>`` where there was text but no value came of it."""
    mask = raw.is_not_null() & value.is_null()
    return err(mask, pl.select(pl.format("{} is not {}", quoted(raw), pl.lit(what))).to_series())


def no_error(n: int) -> pl.Series:
    """No reason on any of ``n`` rows."""
    return pl.Series("e", [None] * n, dtype=pl.String)


def struct_of(series: dict[str, pl.Series], n: int) -> pl.Series:
    """Sub-field series -> one struct series; a row whose parts are all null is null."""
    frame = pl.DataFrame(series) if series else pl.DataFrame({"_": [None] * n})
    all_null = pl.all_horizontal([pl.col(c).is_null() for c in frame.columns])
    return frame.select(
        pl.when(all_null).then(None).otherwise(pl.struct(frame.columns))
    ).to_series()


# --------------------------------------------------------------------------- lists


def json_lists(raw: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Cells written as a JSON list (an export's list columns) -> (is JSON, its items).

    Items are JSON text per element except strings, which are kept as they are; other
    rows have no items. Only cells that look like ``[...]`` are decoded, each distinct
    one once.
    """
    looks = (raw.str.starts_with("[") & raw.str.ends_with("]")).fill_null(False)
    candidates = raw.filter(looks).unique().to_list()
    decoded: dict[str, list[str]] = {}
    for text in candidates:
        try:
            items = json.loads(text)
        except ValueError:
            continue
        if isinstance(items, list):
            decoded[text] = [i if isinstance(i, str) else json.dumps(i) for i in items]
    keys = list(decoded)
    is_json = raw.is_in(keys).fill_null(False) if keys else pl.Series([False] * raw.len())
    items = raw.replace_strict(
        keys, list(decoded.values()), default=None, return_dtype=pl.List(pl.String)
    )
    return is_json, items


def split_items(raw: pl.Series, sep: str | None) -> pl.Series:
    """A cell's items split by ``sep`` (the whole cell when None): stripped, blanks
    dropped, no items is null."""
    lists = (
        raw.str.split(sep)
        if sep
        else raw.map_elements(lambda v: [v], return_dtype=pl.List(pl.String))
    )
    return _tidy(lists)


def split_or_json(raw: pl.Series, sep: str | None, default_sep: str | None) -> pl.Series:
    """Items of a list cell: a JSON list when the mapping names no ``split`` (what an
    export writes), else split by the mapping's separator or ``default_sep``."""
    if sep is None:
        is_json, decoded = json_lists(raw)
        if is_json.any():
            split = split_items(raw, default_sep)
            return pl.select(pl.when(is_json).then(_tidy(decoded)).otherwise(split)).to_series()
    return split_items(raw, sep or default_sep)


def _tidy(lists: pl.Series) -> pl.Series:
    cleaned = lists.list.eval(pl.element().str.strip_chars()).list.eval(
        pl.element().filter(pl.element() != "")
    )
    return pl.select(pl.when(cleaned.list.len() > 0).then(cleaned).otherwise(None)).to_series()


def list_of(items: pl.Series, each: Callable[[pl.Series], Parsed]) -> Parsed:
    """Normalize every item of a list series; any bad item fails its cell."""
    n = items.len()
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
    return Parsed(value, grouped["e"])


def json_objects(items: pl.Series, keys: tuple[str, ...]) -> dict[str, pl.Series]:
    """Items written as JSON objects -> one text series per key, and ``_object``: which
    items were objects. Each distinct object is decoded once."""
    looks = items.str.starts_with("{").fill_null(False)
    decoded: dict[str, dict[str, JsonValue]] = {}
    for text in items.filter(looks).unique().to_list():
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict):
            decoded[text] = value
    texts = list(decoded)
    out = {"_object": items.is_in(texts).fill_null(False) if texts else looks & False}
    for key in keys:
        parts = [scalar_text(decoded[t].get(key)) for t in texts]
        out[key] = items.replace_strict(
            texts, pl.Series(parts, dtype=pl.String), default=None, return_dtype=pl.String
        )
    return out
