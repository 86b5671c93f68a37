"""Migrate's data model step: create in the target what the copied records need.

Before any record is copied, the source's custom objects and custom fields that the
target lacks are created there through the metadata API (twenty-api.md §8.1): objects
first, then their fields, then relations (a MANY_TO_ONE field created with its inverse).
Select fields take the source's options, and a select the target has gains the
source's options it lacks (its own kept, with their ids). What cannot be created this
way is listed and the migration stops before any write: a standard field the target's
Twenty release does not have, a field of the same name with another type.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pipeline.schema import SERVER_FILLED, Field, ObjectSchema, SelectOption, WorkspaceSchema
from pipeline.twenty import TwentyClient

SYSTEM_NAMES = frozenset({"id", "createdAt", "name", "position", *SERVER_FILLED})
"""Fields a new custom object comes with."""


@dataclass
class SchemaChanges:
    """What to create in the target, and what cannot be."""

    objects: list[ObjectSchema] = field(default_factory=list)
    fields: list[tuple[str, Field]] = field(default_factory=list)
    """(object name, source field) to create, relations last."""
    options: list[tuple[str, Field, list[SelectOption]]] = field(default_factory=list)
    """(object name, the target's select, the source's options it lacks) to add."""
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The changes as a person reads them."""
        out = [f"create object {o.name_singular}" for o in self.objects]
        for obj, item in self.fields:
            kind = f"relation to {item.relation.target_object}" if item.relation else item.type
            out.append(f"create field {obj}.{item.name} ({kind})")
        for obj, there, missing in self.options:
            values = ", ".join(o.value for o in missing)
            out.append(f"add to {obj}.{there.name} the options {values}")
        return out


def schema_changes(
    source: WorkspaceSchema, target: WorkspaceSchema, names: Iterable[str]
) -> SchemaChanges:
    """What the target lacks of the objects ``names`` and their fields."""
    changes = SchemaChanges()
    relations: list[tuple[str, Field]] = []
    chosen = {n for n in names}
    for name in names:
        obj = source.object(name)
        if obj is None:
            continue
        there = target.object(obj.name_singular)
        if there is None:
            if not obj.is_custom:
                changes.problems.append(f"the target workspace has no object {name!r}")
                continue
            changes.objects.append(obj)
        for item in obj.fields.values():
            if not item.is_active or item.is_system or item.name in SYSTEM_NAMES:
                continue
            other = there.field(item.name) if there is not None else None
            if other is not None:
                changes.problems += _mismatch(obj, item, other)
                missing = _missing_options(item, other)
                if missing and other.type == item.type:
                    changes.options.append((obj.name_singular, other, missing))
                continue
            if item.relation is not None:
                if item.relation.type == "MANY_TO_ONE" and item.relation.target_object in chosen:
                    relations.append((obj.name_singular, item))
                continue  # the inverse side comes with its MANY_TO_ONE
            if not item.is_custom:
                changes.problems.append(
                    f"the target's {obj.name_singular} has no field {item.name!r} (a standard "
                    "field of another Twenty release: upgrade the target, or leave it out "
                    "with --objects)"
                )
                continue
            changes.fields.append((obj.name_singular, item))
    changes.fields += relations
    return changes


def _mismatch(obj: ObjectSchema, item: Field, other: Field) -> list[str]:
    if other.type != item.type:
        return [
            f"the target's {obj.name_singular}.{item.name} is {other.type}, the source's "
            f"{item.type}"
        ]
    return []


def _missing_options(item: Field, other: Field) -> list[SelectOption]:
    """The source select's options the target's select lacks (added before the copy)."""
    have = {o.value for o in other.options}
    return [o for o in item.options if o.value not in have]


def field_body(item: Field, object_id: str, target: WorkspaceSchema) -> dict[str, Any]:
    """The CreateFieldInput of a source field, for the target object ``object_id``."""
    body: dict[str, Any] = {
        "objectMetadataId": object_id,
        "type": item.type,
        "name": item.name,
        "label": item.label,
        "isNullable": item.is_nullable,
    }
    if item.is_unique:
        body["isUnique"] = True
    if item.options:
        body["options"] = [
            {
                "value": o.value,
                "label": o.label,
                "position": o.position if o.position is not None else i,
                "color": o.color or "gray",
            }
            for i, o in enumerate(item.options)
        ]
    if item.relation is not None:
        other = target.object(item.relation.target_object)
        body["type"] = "RELATION"
        body["relationCreationPayload"] = {
            "type": "MANY_TO_ONE",
            "targetObjectMetadataId": other.id if other is not None else None,
            "targetFieldLabel": item.relation.target_field or item.label,
            "targetFieldIcon": "IconLink",
        }
    return body


async def apply_changes(
    client: TwentyClient, changes: SchemaChanges, target: WorkspaceSchema
) -> WorkspaceSchema:
    """Create the objects, then the fields; the target's data model afterwards."""
    from pipeline.schema import load_schema

    for obj in changes.objects:
        await client.metadata.create_object(
            {
                "nameSingular": obj.name_singular,
                "namePlural": obj.name_plural,
                "labelSingular": obj.label_singular,
                "labelPlural": obj.label_plural,
            }
        )
    if changes.objects:
        target = await load_schema(client)
    for obj_name, item in changes.fields:
        there = target.object(obj_name)
        if there is None or there.id is None:
            continue
        await client.metadata.create_field(field_body(item, there.id, target))
    for _, select, missing in changes.options:
        if select.id is None:
            continue
        kept = [_option_body(o, i) for i, o in enumerate(select.options)]
        # the source's options are new in the target: ids of their own
        added = [
            {**_option_body(o, len(kept) + i), "id": str(uuid.uuid4())}
            for i, o in enumerate(missing)
        ]
        await client.metadata.update_field(select.id, {"options": kept + added})
    changed = changes.fields or changes.options
    return await load_schema(client) if changed else target


def _option_body(option: SelectOption, index: int) -> dict[str, Any]:
    """An option as the metadata API takes it (an existing one keeps its id)."""
    body: dict[str, Any] = {
        "value": option.value,
        "label": option.label,
        "position": index,
        "color": option.color or "gray",
    }
    if option.id is not None:
        body["id"] = option.id
    return body
