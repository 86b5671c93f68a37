"""SELECT, RATING, MULTI_SELECT: labels or values of the field's options."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, ClassVar

import polars as pl
from rapidfuzz import fuzz

from pipeline.fields.base import (
    FieldCodec,
    JsonValue,
    ParseContext,
    Parsed,
    SpecOptions,
    err,
    quoted,
    split_or_json,
)

OPTION_THRESHOLD = 90  # a draft maps a label to an option it matches this well ...
OPTION_MARGIN = 10  # ... and this much better than to any other option

if TYPE_CHECKING:
    from pipeline.mapping import FieldSpec
    from pipeline.schema import Field


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


def to_option(raw: pl.Series, f: Field, spec: FieldSpec) -> Parsed:
    """SELECT / RATING: a label or value, case-insensitive, through the values table."""
    table = options_table(f, spec)
    value = raw.str.to_lowercase().replace_strict(
        list(table), list(table.values()), default=None, return_dtype=pl.String
    )
    names = ", ".join(o.value for o in f.options)
    error = err(
        raw.is_not_null() & value.is_null(),
        pl.select(
            pl.format(
                "{} is not an option of {} ({}); map it with values:",
                quoted(raw),
                pl.lit(f.name),
                pl.lit(names),
            )
        ).to_series(),
    )
    return Parsed(value, error)


def to_multi_option(raw: pl.Series, f: Field, spec: FieldSpec) -> Parsed:
    """MULTI_SELECT: split, each item through the options table."""
    table = options_table(f, spec)
    items = split_or_json(raw, spec.split, ",")
    mapped = items.list.eval(
        pl.element()
        .str.to_lowercase()
        .replace_strict(list(table), list(table.values()), default=None, return_dtype=pl.String)
    )
    bad = mapped.list.eval(pl.element().is_null()).list.any().fill_null(False)
    value = pl.select(pl.when(bad).then(None).otherwise(mapped)).to_series()
    names = ", ".join(o.value for o in f.options)
    error = err(
        bad,
        pl.select(
            pl.format(
                "{} has a value that is not an option of {} ({})",
                quoted(raw),
                pl.lit(f.name),
                pl.lit(names),
            )
        ).to_series(),
    )
    return Parsed(value, error)


class SelectCodec(FieldCodec):
    """SELECT and RATING: one option (RATING also by its rank, 1 to n)."""

    types: ClassVar[tuple[str, ...]] = ("SELECT", "RATING")

    def parse(self, raw: pl.Series, sub: str | None, ctx: ParseContext) -> Parsed:
        return to_option(raw, ctx.field, ctx.spec)


class MultiSelectCodec(FieldCodec):
    """MULTI_SELECT: several options in a cell, split by ``split`` (default ``,``) or
    written as a JSON list."""

    types: ClassVar[tuple[str, ...]] = ("MULTI_SELECT",)
    holds_list: ClassVar[bool] = True

    def __init__(self, separator: str | None = None) -> None:
        self.separator = separator
        """How :meth:`flatten` joins the options; None writes a JSON list."""

    def parse(self, raw: pl.Series, sub: str | None, ctx: ParseContext) -> Parsed:
        return to_multi_option(raw, ctx.field, ctx.spec)

    def flatten(self, name: str, stored: JsonValue) -> dict[str, str | None]:
        if not isinstance(stored, list) or not stored:
            return {name: None}
        values = [str(v) for v in stored]
        if self.separator is None:
            return {name: json.dumps(values, ensure_ascii=False)}
        return {name: self.separator.join(values)}

    def reimport(self, name: str) -> dict[str, SpecOptions]:
        spec = {"column": name}
        if self.separator is not None:
            spec["split"] = self.separator
        return {name: spec}


def option_table(labels: list[str], f: Field) -> list[tuple[str, str | None, str]]:
    """Each label -> (label, option value or None, why), matching by label and value.

    A label equal to an option's value or label (case-insensitive) maps to it. Otherwise it
    maps to the option it is close to only when that is unambiguous: at least
    OPTION_THRESHOLD, and OPTION_MARGIN above the next option. Any other label is left
    for the user (None): a guessed table would load wrong data.
    """
    names = ", ".join(o.value for o in f.options)

    def compact(text: str) -> str:
        return re.sub(r"[\W_]+", "", text.casefold())

    out: list[tuple[str, str | None, str]] = []
    for label in labels:
        exact = f.option(label)
        if exact is None and f.type == "RATING" and label.isdigit():
            # normalize reads 1..n as the n-th rating option
            index = int(label)
            exact = f.options[index - 1] if 1 <= index <= len(f.options) else None
        if exact is not None:
            out.append((label, exact.value, "same as the option"))
            continue
        scores = sorted(
            (
                (
                    max(
                        fuzz.ratio(compact(label), compact(o.value)),
                        fuzz.ratio(compact(label), compact(o.label)),
                    ),
                    o.value,
                )
                for o in f.options
            ),
            reverse=True,
        )
        best, runner = scores[0], scores[1] if len(scores) > 1 else (0.0, "")
        if best[0] >= OPTION_THRESHOLD and best[0] - runner[0] >= OPTION_MARGIN:
            out.append(
                (label, best[1], f"close to {best[1]} ({best[0]:.0f}; next {runner[0]:.0f})")
            )
        else:
            out.append((label, None, f"options: {names}"))
    return out
