"""One input record checked against the object's fields, before anything is written.

Twenty validates every value of a batch before its first write (twenty-api.md §4.8,
§6): unknown fields, one-to-many writes, server-managed fields, types and
non-nullable fields without default are refused here.
"""

from __future__ import annotations

from typing import Any

from pipeline.sandbox.errors import InvalidArgs
from pipeline.sandbox.model import FieldModel, ObjectModel
from pipeline.sandbox.values import check_uuid, coerce, composite_default

# System fields an import may write: a migration keeps ids, dates, order and creators.
SYSTEM_WRITABLE = ("id", "createdAt", "updatedAt", "position", "createdBy")
SERVER_FILLED = ("updatedAt", "deletedAt", "updatedBy", "searchVector")


def default_value(field: FieldModel) -> Any:
    """A field's stored default: SQL-quoted strings unquoted, booleans kept."""
    raw = field.default_value
    if field.subfields:
        return composite_default(field.type)
    if isinstance(raw, str) and raw.startswith("'") and raw.endswith("'"):
        return raw[1:-1]
    if isinstance(raw, bool | int | float):
        return raw
    return None


def _join_column_value(field: FieldModel, key: str, value: Any) -> str | None:
    """A MANY_TO_ONE relation is written through its join column, as a UUID or null."""
    assert field.relation is not None
    if field.relation.kind == "ONE_TO_MANY":
        raise InvalidArgs(
            f"One-to-many relation {field.name} field does not support write operations."
        )
    if key == field.name:
        raise InvalidArgs(
            f"Relation field {field.name} is written through its join column "
            f"{field.relation.join_column}"
        )
    return None if value is None else check_uuid(value)


def _server_managed(field: FieldModel) -> bool:
    """Whether the server fills ``field`` itself; a value sent for it is ignored."""
    if field.name in SERVER_FILLED or (field.is_system and field.name not in SYSTEM_WRITABLE):
        if field.type in ("TS_VECTOR", "RICH_TEXT"):
            raise InvalidArgs(f"Field {field.name} does not support write operations.")
        return True
    return False


def prepare(obj: ObjectModel, data: Any, *, for_create: bool) -> dict[str, Any]:
    """Validate one input record; return its normalized values by field or join column."""
    if not isinstance(data, dict):
        raise InvalidArgs("Each record must be a JSON object")
    out: dict[str, Any] = {}
    for key, value in data.items():
        field = obj.field(key)
        if field is None or not field.is_active:
            raise InvalidArgs(f'Object {obj.name_singular} doesn\'t have any "{key}" field.')
        if field.relation is not None:
            out[key] = _join_column_value(field, key, value)
            continue
        if _server_managed(field):
            continue
        if field.name == "id":
            if for_create:
                out["id"] = check_uuid(value)
            continue
        stored = coerce(field, value)
        if stored is None and not field.is_nullable:
            if default_value(field) is None:
                raise InvalidArgs(f"Field {field.name} is not nullable and has no default value.")
            stored = default_value(field)
        out[key] = stored
    return out
