"""``schema apply``: create the custom fields and select options a job's mappings need.

A field spec with ``create:`` names a field the workspace may lack; a select's
``values:`` table may name options it lacks (HubSpot's ``closedlost`` ->
``CLOSED_LOST`` on the opportunity stage). The plan lists, per object, the fields to
create (a SELECT created takes the distinct values its column holds in the source, each
label as written, its value in Twenty's UPPER_SNAKE_CASE) and the options to add to
existing selects (their own options kept, with their ids). What cannot be done is listed
all at once before any write: an object the workspace lacks, a field of that name with
another type, or not unique when ``create:`` asks for a unique one.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.mapping import FieldSpec, Mapping
from pipeline.prepare import source_path
from pipeline.schema import Field, ObjectSchema, SelectOption, WorkspaceSchema
from pipeline.sources import SourceReader
from pipeline.twenty import TwentyClient

COLORS = ("green", "turquoise", "sky", "blue", "purple", "pink", "red", "orange", "yellow", "gray")
OPTION_TYPES = ("SELECT", "MULTI_SELECT")


def option_value(label: str) -> str:
    """A label as Twenty's option value: UPPER_SNAKE_CASE letters and digits, 63 at most."""
    value = re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_").upper()[:63].strip("_")
    return value or "OPTION"


@dataclass
class FieldChange:
    """One change: a field to create, or options to add to an existing select."""

    object: ObjectSchema
    name: str
    body: dict[str, Any]
    field_id: str | None = None
    """Set for an existing field whose options grow."""
    added: list[str] = field(default_factory=list)
    """The option values added (or created with the field)."""

    def line(self, *, done: bool = False) -> str:
        """The change as a person reads it (``done``: as made)."""
        where = f"{self.object.name_singular}.{self.name}"
        if self.field_id is not None:
            verb = "added to" if done else "add to"
            return f"{verb} {where} the options {', '.join(self.added)}"
        kind = self.body["type"] + (", unique" if self.body.get("isUnique") else "")
        options = f" with the options {', '.join(self.added)}" if self.added else ""
        verb = "created" if done else "create"
        return f"{verb} field {where} ({kind}, label {self.body['label']!r}){options}"


@dataclass
class SchemaPlan:
    """What ``schema apply`` would do, and what stops it."""

    changes: list[FieldChange] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


Source = Path | None
"""A job step's own source file (None: the mapping's ``source.path``)."""


def plan_schema(
    mappings: list[Mapping] | list[tuple[Mapping, Source]], schema: WorkspaceSchema
) -> SchemaPlan:
    """The fields and options ``mappings`` (each with its step's source) need that ``schema``
    lacks."""
    plan = SchemaPlan()
    planned: dict[tuple[str, str], FieldChange] = {}
    for item in mappings:
        mapping, source = item if isinstance(item, tuple) else (item, None)
        obj = schema.object(mapping.object)
        if obj is None:
            plan.problems.append(
                f"{mapping.path}: the workspace has no object {mapping.object!r} (schema apply "
                "creates fields, not objects)"
            )
            continue
        for spec in mapping.fields:
            name = spec.target.split(".")[0]
            existing = obj.field(name)
            where = f"{mapping.path}:{spec.line}: {obj.name_singular}.{name}"
            if spec.create is not None and existing is None:
                key = (obj.name_singular, name)
                labels = _labels(mapping, spec, source) if spec.create.type in OPTION_TYPES else []
                if key in planned:
                    _grow(planned[key], labels, spec)
                    continue
                change = _creation(obj, name, spec, labels)
                planned[key] = change
                plan.changes.append(change)
            elif spec.create is not None and existing is not None:
                wrong = _mismatch(where, existing, spec)
                plan.problems += wrong
                if not wrong and existing.type in OPTION_TYPES:
                    _add_options(plan, obj, existing, _wanted(spec, _labels(mapping, spec, source)))
            elif existing is not None and existing.options and spec.values:
                _add_options(plan, obj, existing, _wanted(spec, []))
    plan.problems += _label_problems(plan)
    return plan


def _label_problems(plan: SchemaPlan) -> list[str]:
    """Labels Twenty refuses (a comma, more than 63 characters): listed before any change."""
    problems = []
    for change in plan.changes:
        for option in change.body.get("options", []):
            if option["value"] not in change.added:
                continue
            label = str(option["label"])
            if "," in label or len(label) > 63:
                problems.append(
                    f"{change.object.name_singular}.{change.name}: the option label {label!r} "
                    "has a comma or more than 63 characters, which Twenty refuses: map that "
                    "text to an option with a values: table"
                )
    return problems


def _mismatch(where: str, existing: Field, spec: FieldSpec) -> list[str]:
    assert spec.create is not None
    if existing.type != spec.create.type:
        return [
            f"{where} exists as {existing.type}, and create: says {spec.create.type}: rename "
            "the field in the mapping, or make create: say what it is"
        ]
    if spec.create.unique and not existing.is_unique:
        return [
            f"{where} exists and is not unique, and create: asks for a unique field (a key "
            "must be unique): make it unique in Twenty's settings, or use another field"
        ]
    return []


def _creation(obj: ObjectSchema, name: str, spec: FieldSpec, labels: list[str]) -> FieldChange:
    assert spec.create is not None
    label = spec.create.label or re.sub(r"(?<!^)(?=[A-Z])", " ", name).capitalize()
    body: dict[str, Any] = {
        "objectMetadataId": obj.id,
        "type": spec.create.type,
        "name": name,
        "label": label,
        "isNullable": True,
    }
    if spec.create.unique:
        body["isUnique"] = True
    change = FieldChange(obj, name, body)
    if spec.create.type in OPTION_TYPES:
        body["options"] = []
        _grow(change, labels, spec)
    return change


def _grow(change: FieldChange, labels: list[str], spec: FieldSpec) -> None:
    """Add to a field being created the options of ``labels`` it does not have yet."""
    options = change.body.setdefault("options", [])
    have = {o["value"] for o in options}
    for value, label in _wanted(spec, labels):
        if value in have:
            continue
        have.add(value)
        position = len(options)
        options.append(_option(value, label, position))
        change.added.append(value)


def _option(value: str, label: str, position: int) -> dict[str, Any]:
    """A new option as Twenty's options input wants it: its own UUID, value, label, place."""
    return {
        "id": str(uuid.uuid4()),
        "value": value,
        "label": label,
        "position": position,
        "color": _color(position),
    }


def _add_options(
    plan: SchemaPlan, obj: ObjectSchema, existing: Field, wanted: list[tuple[str, str]]
) -> None:
    """Options an existing select lacks: one change per field, its own options kept."""
    change = next((c for c in plan.changes if c.field_id == existing.id), None)
    have = {o.value for o in existing.options} | set(change.added if change else [])
    missing = [(v, label) for v, label in wanted if v not in have and not _is_label(existing, v)]
    if not missing:
        return
    if change is None:
        kept = [_as_body(o, i) for i, o in enumerate(existing.options)]
        change = FieldChange(obj, existing.name, {"options": kept}, field_id=existing.id)
        plan.changes.append(change)
    options = change.body["options"]
    for value, label in missing:
        options.append(_option(value, label, len(options)))
        change.added.append(value)


def _is_label(existing: Field, value: str) -> bool:
    """A table value that is an option's label (matched, as import matches, by label too)."""
    return any(o.label.lower() == value.lower() for o in existing.options)


def _as_body(option: SelectOption, index: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "value": option.value,
        "label": option.label,
        "position": option.position if option.position is not None else index,
        "color": option.color or _color(index),
    }
    if option.id is not None:
        body["id"] = option.id
    return body


def _wanted(spec: FieldSpec, labels: list[str]) -> list[tuple[str, str]]:
    """(value, label) of every option the spec can send: its table's, then the file's."""
    out: dict[str, str] = {}
    for value in dict.fromkeys(v for _, v in spec.values):
        sources = [source for source, v in spec.values if v == value]
        out[value] = next(
            (t for t in sources if t != t.lower() or " " in t),
            value.replace("_", " ").title(),
        )
    table = {source for source, _ in spec.values}
    for label in labels:
        if label not in table:
            out.setdefault(option_value(label), label)
    return list(out.items())


def _labels(mapping: Mapping, spec: FieldSpec, source: Source = None) -> list[str]:
    """The distinct texts of the spec's column in the mapping's source, first seen first."""
    if spec.column is None:
        return []
    nulls = set(mapping.source.null_values) | {""}
    seen: dict[str, None] = {}
    with SourceReader(source_path(mapping, source), mapping.source) as reader:
        if spec.column not in reader.columns:
            return []
        for chunk in reader.chunks([spec.column]):
            texts = chunk[spec.column].drop_nulls().str.strip_chars()
            if spec.split:
                texts = texts.str.split(spec.split).explode().str.strip_chars()
            for text in texts.unique(maintain_order=True).to_list():
                for item in (
                    _items(str(text))
                    if spec.create and "MULTI" in spec.create.type
                    else [str(text)]
                ):
                    if item not in nulls:
                        seen.setdefault(item, None)
    return list(seen)


def _items(text: str) -> list[str]:
    """A multi-select cell written as a JSON list (``["a","b"]``, as exports write it) is
    its items, as the import reads it; any other text is one value."""
    if text.startswith("[") and text.endswith("]"):
        try:
            loaded = json.loads(text)
        except ValueError:
            return [text]
        if isinstance(loaded, list):
            return [str(v).strip() for v in loaded if v is not None and str(v).strip()]
    return [text]


def _color(position: int) -> str:
    return COLORS[position % len(COLORS)]


async def apply_plan(client: TwentyClient, plan: SchemaPlan) -> list[str]:
    """Make the changes, field by field; what was done, in words."""
    done = []
    for change in plan.changes:
        if change.field_id is not None:
            await client.metadata.update_field(change.field_id, {"options": change.body["options"]})
        else:
            await client.metadata.create_field(change.body)
        done.append(change.line(done=True))
    return done
