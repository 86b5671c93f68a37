"""One-value types: TEXT, NUMBER, BOOLEAN, UUID, RAW_JSON, ARRAY, relations, read-only text."""

from __future__ import annotations

import json
from typing import ClassVar

import polars as pl

from pipeline.fields.base import (
    FieldCodec,
    JsonValue,
    ParseContext,
    Parsed,
    SpecOptions,
    invalid,
    no_error,
    split_or_json,
)

TRUE_TOKENS = ("yes", "y", "true", "t", "1", "x", "on", "oui", "ja", "si", "sí")
FALSE_TOKENS = ("no", "n", "false", "f", "0", "off", "non", "nein")
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def to_number(raw: pl.Series, decimal: str | None) -> Parsed:
    """Numbers with thousands separators; ``decimal: ","`` for 1.234,56."""
    cleaned = raw.str.replace_all(r"[\s\u00a0\u202f'_]", "")
    if decimal == ",":
        cleaned = cleaned.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True)
    else:
        cleaned = cleaned.str.replace_all(",", "", literal=True)
    value = cleaned.cast(pl.Float64, strict=False)
    value = pl.select(pl.when(value.is_finite()).then(value).otherwise(None)).to_series()
    return Parsed(value, invalid(raw, value, "a number"))


def to_boolean(raw: pl.Series) -> Parsed:
    """yes/no/true/false/1/0/y/n/x (and a few languages) -> bool."""
    table = dict.fromkeys(TRUE_TOKENS, True) | dict.fromkeys(FALSE_TOKENS, False)
    value = raw.str.to_lowercase().replace_strict(
        list(table), list(table.values()), default=None, return_dtype=pl.Boolean
    )
    return Parsed(value, invalid(raw, value, "a yes/no value"))


def to_uuid(raw: pl.Series) -> Parsed:
    """UUIDs, lower-cased."""
    ok = raw.str.contains(UUID_PATTERN).fill_null(False)
    value = pl.select(pl.when(ok).then(raw.str.to_lowercase()).otherwise(None)).to_series()
    return Parsed(value, invalid(raw, value, "a UUID"))


def to_json_text(raw: pl.Series) -> Parsed:
    """RAW_JSON: the text must parse as JSON; it is sent as the JSON string."""

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
    return Parsed(value, invalid(raw, value, "valid JSON"))


class TextCodec(FieldCodec):
    """TEXT: the text as it is (stripped, transformed by the mapping)."""

    types: ClassVar[tuple[str, ...]] = ("TEXT",)


class ReadOnlyCodec(FieldCodec):
    """Types Twenty refuses to write (twenty-api.md §6): exported as text, never sent."""

    types: ClassVar[tuple[str, ...]] = ("RICH_TEXT", "TS_VECTOR")
    writable: ClassVar[bool] = False

    def flatten(self, name: str, stored: JsonValue) -> dict[str, str | None]:
        # a search vector is Twenty's own index of the record, not data
        return {} if stored is None or isinstance(stored, dict) else super().flatten(name, stored)

    def reimport(self, name: str) -> dict[str, SpecOptions]:
        return {}


class NumberCodec(FieldCodec):
    """NUMBER, NUMERIC, POSITION: numbers written with separators, sent as floats."""

    types: ClassVar[tuple[str, ...]] = ("NUMBER", "NUMERIC", "POSITION")

    def parse(self, raw: pl.Series, sub: str | None, ctx: ParseContext) -> Parsed:
        return to_number(raw, ctx.spec.decimal)


class BooleanCodec(FieldCodec):
    """BOOLEAN: yes/no words of several languages."""

    types: ClassVar[tuple[str, ...]] = ("BOOLEAN",)

    def parse(self, raw: pl.Series, sub: str | None, ctx: ParseContext) -> Parsed:
        return to_boolean(raw)


class UuidCodec(FieldCodec):
    """UUID: lower-cased, checked."""

    types: ClassVar[tuple[str, ...]] = ("UUID",)

    def parse(self, raw: pl.Series, sub: str | None, ctx: ParseContext) -> Parsed:
        return to_uuid(raw)


class RelationCodec(UuidCodec):
    """RELATION, MORPH_RELATION: the target record's id, written into the join column.

    A ``lookup:`` on another unique field of the target is typed by that field's codec
    (normalize asks for it); this codec reads the ``lookup: id`` form.
    """

    types: ClassVar[tuple[str, ...]] = ("RELATION", "MORPH_RELATION")

    def flatten(self, name: str, stored: JsonValue) -> dict[str, str | None]:
        """The target's id, whether Twenty returned the join column or the record."""
        if isinstance(stored, dict):
            stored = stored.get("id")
        return super().flatten(name, stored)

    def reimport(self, name: str) -> dict[str, SpecOptions]:
        return {name: {"column": name, "lookup": "id"}}


class RawJsonCodec(FieldCodec):
    """RAW_JSON: JSON text, checked, sent as the string (Twenty parses it)."""

    types: ClassVar[tuple[str, ...]] = ("RAW_JSON",)

    def parse(self, raw: pl.Series, sub: str | None, ctx: ParseContext) -> Parsed:
        return to_json_text(raw)


class ArrayCodec(FieldCodec):
    """ARRAY: a list of texts, split by the mapping's ``split`` (else one item, or the
    items of a JSON list as an export writes them)."""

    types: ClassVar[tuple[str, ...]] = ("ARRAY",)
    holds_list: ClassVar[bool] = True

    def parse(self, raw: pl.Series, sub: str | None, ctx: ParseContext) -> Parsed:
        return Parsed(split_or_json(raw, ctx.spec.split, None), no_error(raw.len()))

    def flatten(self, name: str, stored: JsonValue) -> dict[str, str | None]:
        return {name: json.dumps(stored, ensure_ascii=False) if stored else None}
