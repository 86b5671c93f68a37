"""Metadata DTOs in the shape Twenty's metadata API answers them (twenty-api.md §8.1).

The standard seed and the metadata mutations (createOneObject, createOneField) both
build their DTOs here, so a standard field and a custom one look alike to a client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

EPOCH = "2024-01-01T00:00:00.000Z"


@dataclass(frozen=True)
class ObjectRef:
    """The object names a relation block carries for each side."""

    id: str | None
    name_singular: str
    name_plural: str

    def to_dto(self) -> dict[str, Any]:
        """``{"id", "nameSingular", "namePlural"}``."""
        return {"id": self.id, "nameSingular": self.name_singular, "namePlural": self.name_plural}


@dataclass(frozen=True)
class FieldRef:
    """A field's id and name, as a relation block names its two ends."""

    id: str
    name: str | None


def object_dto(
    singular: str,
    plural: str,
    label_s: str,
    label_p: str,
    *,
    is_custom: bool,
    is_system: bool,
    object_id: str,
) -> dict[str, Any]:
    """An object DTO as the metadata API returns it (without ``fields``)."""
    return {
        "id": object_id,
        "nameSingular": singular,
        "namePlural": plural,
        "labelSingular": label_s,
        "labelPlural": label_p,
        "description": None,
        "icon": None,
        "isCustom": is_custom,
        "isActive": True,
        "isSystem": is_system,
        "labelIdentifierFieldMetadataId": None,
        "imageIdentifierFieldMetadataId": None,
        "createdAt": EPOCH,
        "updatedAt": EPOCH,
    }


def option_dto(option_id: str, value: str, label: str, position: int, color: str) -> dict[str, Any]:
    """One SELECT / MULTI_SELECT / RATING option."""
    return {"id": option_id, "value": value, "label": label, "position": position, "color": color}


def relation_block(
    kind: str, source: ObjectRef, target: ObjectRef, source_field: FieldRef, target_field: FieldRef
) -> dict[str, Any]:
    """A field DTO's ``relation``: its kind and the objects and fields at both ends."""
    return {
        "type": kind,
        "sourceObjectMetadata": source.to_dto(),
        "targetObjectMetadata": target.to_dto(),
        "sourceFieldMetadata": {"id": source_field.id, "name": source_field.name},
        "targetFieldMetadata": {"id": target_field.id, "name": target_field.name},
    }


def relation_settings(kind: str, field_name: str) -> dict[str, Any]:
    """A RELATION field's ``settings``: the kind, and for MANY_TO_ONE its join column."""
    settings: dict[str, Any] = {"relationType": kind}
    if kind == "MANY_TO_ONE":
        settings.update({"joinColumnName": f"{field_name}Id", "onDelete": "SET_NULL"})
    return settings
