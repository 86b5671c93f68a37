"""Mapping options beyond one column -> one field, that migrations need.

- ``timezone:`` (on a field, or the mapping's default): date-times written without an
  offset are local time there (HubSpot exports its account's time, without saying so).
- ``where:`` at mapping level: rows that do not meet every condition are skipped
  (counted ``skipped``, with the condition as reason), not rejected.
- ``on_invalid: drop_value`` (on a field, or the mapping's default; ``reject_row`` by
  default): a value its codec refuses is left out of the record, which still loads; the
  value, its column and the reason go to rejects.csv and the summary counts them.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

OnInvalid = Literal["reject_row", "drop_value"]
ON_INVALID: tuple[OnInvalid, ...] = ("reject_row", "drop_value")
OPERATORS = ("in", "not_in", "not_empty", "empty")


def parse_timezone(raw: Any, where: str, problems: list[str]) -> str | None:
    """An IANA time zone name (``Europe/Paris``, ``UTC``), checked against tzdata."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.strip():
        problems.append(f"{where}: timezone is a time zone name, e.g. timezone: Europe/Paris")
        return None
    try:
        zoneinfo.ZoneInfo(raw.strip())
        # polars converts with its own zone table: "localtime" and "Factory" are files of
        # tzdata that it does not know, and would fail the run in normalize
        pl.Series([None], dtype=pl.Datetime("ms")).dt.replace_time_zone(raw.strip())
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, pl.exceptions.PolarsError):
        problems.append(
            f"{where}: timezone {raw!r} is not a known time zone (write it like "
            "Europe/Paris, America/New_York or UTC)"
        )
        return None
    return raw.strip()


def parse_on_invalid(raw: Any, where: str, problems: list[str]) -> OnInvalid | None:
    """``reject_row`` or ``drop_value`` (None: not given)."""
    if raw is None:
        return None
    if raw not in ON_INVALID:
        problems.append(
            f"{where}: on_invalid {raw!r} must be reject_row (the row is rejected) or "
            "drop_value (the value is left out and listed, the row loads)"
        )
        return None
    return raw  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Condition:
    """One ``where:`` condition on a source column."""

    column: str
    operator: str
    values: tuple[str, ...] = ()

    def describe(self) -> str:
        """The condition in words, for the reason of a skipped row."""
        if self.operator in ("in", "not_in"):
            listed = ", ".join(repr(v) for v in self.values)
            word = "one of" if self.operator == "in" else "none of"
            return f"{self.column} is {word} {listed}"
        return f"{self.column} is {'not ' if self.operator == 'not_empty' else ''}empty"


def parse_where(raw: Any, where: str, problems: list[str]) -> tuple[Condition, ...]:
    """``where: {column: C, not_in: [a, b]}`` or a list of such conditions (all must hold)."""
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    out = []
    example = 'e.g. where: {column: "Lifecycle Stage", not_in: [other]}'
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("column"), str):
            problems.append(f"{where}: each where condition names a column, {example}")
            continue
        operators = [k for k in item if k != "column"]
        if len(operators) != 1 or operators[0] not in OPERATORS:
            problems.append(
                f"{where}: where on {item['column']!r} takes one of "
                f"{', '.join(OPERATORS)}, {example}"
            )
            continue
        operator = operators[0]
        value = item[operator]
        if operator in ("in", "not_in"):
            listed = value if isinstance(value, list) else [value]
            if not listed or not all(isinstance(v, str | int | float | bool) for v in listed):
                problems.append(f"{where}: where {operator} lists values, {example}")
                continue
            out.append(Condition(item["column"], operator, tuple(_text(v) for v in listed)))
        elif value is not True:
            problems.append(f"{where}: write {operator}: true")
        else:
            out.append(Condition(item["column"], operator))
    return tuple(out)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


CREATE_TYPES = (
    "TEXT",
    "NUMBER",
    "BOOLEAN",
    "DATE_TIME",
    "DATE",
    "SELECT",
    "MULTI_SELECT",
    "LINKS",
    "EMAILS",
    "PHONES",
    "CURRENCY",
)
CREATE_KEYS = ("type", "unique", "label")


@dataclass(frozen=True)
class CreateSpec:
    """``create:`` on a field: the custom field ``schema apply`` creates when it is missing."""

    type: str
    unique: bool = False
    label: str | None = None


def parse_create(raw: Any, where: str, problems: list[str]) -> CreateSpec | None:
    """``create: {type: TEXT, unique: true, label: "HubSpot ID"}``; every problem at once."""
    if raw is None:
        return None
    example = 'e.g. create: {type: TEXT, unique: true, label: "HubSpot ID"}'
    if not isinstance(raw, dict):
        problems.append(f"{where}: create describes the field to create, {example}")
        return None
    unknown = [k for k in raw if k not in CREATE_KEYS]
    for key in unknown:
        problems.append(
            f"{where}: create: unknown key {key!r} (expected one of: {', '.join(CREATE_KEYS)})"
        )
    kind = raw.get("type")
    if kind not in CREATE_TYPES:
        problems.append(
            f"{where}: create: type {kind!r} is not one schema apply creates "
            f"({', '.join(CREATE_TYPES)})"
        )
    unique = raw.get("unique", False)
    if not isinstance(unique, bool):
        problems.append(f"{where}: create: unique is true or false")
    label = raw.get("label")
    if label is not None and (not isinstance(label, str) or not label.strip()):
        problems.append(f"{where}: create: label is the field's name as people read it")
    if unknown or kind not in CREATE_TYPES or not isinstance(unique, bool):
        return None
    return CreateSpec(str(kind), bool(unique), label.strip() if isinstance(label, str) else None)
