"""``export --mapping M``: the columns of an import mapping, written back.

Each field of the mapping that reads a column gets that column, holding the stored
value in the form the mapping reads, so that ``import M`` on the file gives the same
records:

- a sub-field (``name.firstName: First Name``) or a scalar: its value;
- a whole composite field in one column: a phone as ``+<calling code><number>``, a full
  name as ``first last``, e-mails, links and addresses by their primary part, an amount
  in units (``decimal:`` as written; ``currency_column:`` gets the currency code);
- a ``lookup:``: the related record's value at the looked-up path (its domain, its
  e-mail), read like ``--with-labels``;
- a ``values:`` table: the label the table maps to the stored option; ``split:``: the
  list joined with the separator; ``date_format:``: the date in that format;
  ``decimal: ","``: a decimal comma.

Fields the mapping fills without a column (``value:``, ``template:``) are left out, and
``transform:`` steps cannot be undone: the stored value is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from pipeline.errors import ConfigError
from pipeline.export_labels import LabelColumn
from pipeline.fields import codec_for
from pipeline.mapping import FieldSpec, Mapping
from pipeline.schema import Field, ObjectSchema, WorkspaceSchema

Render = Callable[[dict[str, Any]], "str | None"]


@dataclass(frozen=True)
class MappedColumn:
    """One column of the mapping's source, and how a record fills it."""

    name: str
    render: Render


def mapped_columns(
    mapping: Mapping, schema: WorkspaceSchema, obj: ObjectSchema
) -> tuple[list[MappedColumn], list[LabelColumn]]:
    """The columns to write, and the labels (lookups) they need read."""
    if schema.object(mapping.object) is not obj:
        raise ConfigError(
            f"--mapping {mapping.path}: it imports into {mapping.object!r}, "
            f"not {obj.name_singular!r}"
        )
    columns: list[MappedColumn] = []
    labels: list[LabelColumn] = []
    seen: set[str] = set()
    for spec in mapping.fields:
        if spec.column is None or spec.column in seen:
            continue
        resolved = obj.resolve_path(spec.target)
        if resolved is None:
            continue  # mapping_check reports it on import; nothing to write here
        item, sub = resolved
        seen.add(spec.column)
        if spec.lookup is not None and item.relation is not None:
            target = schema.object(item.relation.target_object)
            join = item.relation.join_column
            if target is not None and join:
                labels.append(LabelColumn(join, target, spec.lookup, spec.column))
                columns.append(MappedColumn(spec.column, _labelled(spec.column)))
            continue
        columns.append(MappedColumn(spec.column, _renderer(item, sub, spec)))
        if spec.currency_column and spec.currency_column not in seen:
            seen.add(spec.currency_column)
            columns.append(MappedColumn(spec.currency_column, _part(item.name, "currencyCode")))
    return columns, labels


def _labelled(name: str) -> Render:
    return lambda record: record.get(f"_label:{name}")


def _part(name: str, sub: str) -> Render:
    def render(record: dict[str, Any]) -> str | None:
        value = record.get(name)
        part = value.get(sub) if isinstance(value, dict) else None
        return str(part) if part not in (None, "") else None

    return render


def _renderer(item: Field, sub: str | None, spec: FieldSpec) -> Render:
    def render(record: dict[str, Any]) -> str | None:
        stored = record.get(item.name)
        if sub is not None:
            flat = codec_for(item.type).flatten(item.name, stored)
            return _shaped(flat.get(f"{item.name}.{sub}"), item, spec)
        return _shaped(_whole(item, stored, spec), item, spec)

    return render


def _whole(item: Field, stored: Any, spec: FieldSpec) -> str | None:
    """A composite field read from one column: the form that column is parsed from."""
    parts = stored if isinstance(stored, dict) else {}
    if item.type == "PHONES":
        number = parts.get("primaryPhoneNumber") or ""
        calling = parts.get("primaryPhoneCallingCode") or ""
        return f"{calling}{number}" if number else None
    if item.type == "FULL_NAME":
        text = " ".join(p for p in (parts.get("firstName"), parts.get("lastName")) if p)
        return text or None
    if item.type == "CURRENCY":
        micros = parts.get("amountMicros")
        if micros in (None, ""):
            return None
        units = format((Decimal(str(micros)) / Decimal(1_000_000)).normalize(), "f")
        return units.replace(".", spec.decimal) if spec.decimal else units
    primary = {"EMAILS": "primaryEmail", "LINKS": "primaryLinkUrl", "ADDRESS": "addressStreet1"}
    if item.type in primary:
        value = parts.get(primary[item.type])
        return str(value) if value else None
    flat = codec_for(item.type).flatten(item.name, stored)
    if len(flat) == 1:
        return next(iter(flat.values()))
    kept = {k: v for k, v in flat.items() if v is not None}
    return json.dumps(kept, ensure_ascii=False) if kept else None


def _shaped(text: str | None, item: Field, spec: FieldSpec) -> str | None:
    """The stored text in the form the mapping's options read back."""
    if text is None:
        return None
    if spec.split is not None and text.startswith("["):
        items = json.loads(text)
        if isinstance(items, list):
            text = spec.split.join(str(_label(spec, str(i))) for i in items)
            return text or None
    if spec.values:
        text = _label(spec, text)
    if spec.date_format and item.type in ("DATE", "DATE_TIME"):
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return text
        return moment.strftime(spec.date_format)
    if spec.decimal and item.type == "NUMBER":
        return text.replace(".", spec.decimal)
    return text


def _label(spec: FieldSpec, value: str) -> str:
    """The first label of a ``values:`` table that maps to ``value``."""
    for label, option in spec.values:
        if option == value:
            return label
    return value
