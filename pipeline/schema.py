"""Workspace metadata: objects, fields, types, unique keys, select options, relations.

Built from Twenty's metadata API (twenty-api.md §8) whichever envelope the server
uses; the rest of the product asks this model, never the raw JSON, what a field is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from rapidfuzz import fuzz, process

from pipeline.errors import FatalApiError
from pipeline.fields import CODECS
from pipeline.twenty import ObjectNames, TwentyClient

# What the client knows of each field type comes from its codec (pipeline.fields): the
# types, their sub-fields (twenty-shared composite-types/*.composite-type.ts), the
# sub-field a unique composite is matched on by upserts (twenty-api.md §4.1) and the
# types Twenty refuses to write (§6). The sandbox keeps its own reading.
FIELD_TYPES: frozenset[str] = frozenset(CODECS)
COMPOSITE_SUBFIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {kind: codec.subfields for kind, codec in CODECS.items() if codec.subfields}
)
UNIQUE_SUBFIELD: Mapping[str, str] = MappingProxyType(
    {kind: c.unique_subfield for kind, c in CODECS.items() if c.unique_subfield is not None}
)
NOT_WRITABLE_TYPES = frozenset(kind for kind, codec in CODECS.items() if not codec.writable)

# Fields Twenty manages itself. createdAt and position stay writable: a migration keeps
# when a record was created and where it sat.
SERVER_FILLED = frozenset({"updatedAt", "deletedAt", "createdBy", "updatedBy", "searchVector"})
RELATION_TYPES = frozenset({"RELATION", "MORPH_RELATION"})


@dataclass(frozen=True)
class SelectOption:
    """One option of a SELECT / MULTI_SELECT / RATING field."""

    value: str
    label: str
    position: int | None = None
    color: str | None = None
    id: str | None = None


@dataclass(frozen=True)
class Relation:
    """The relation side a RELATION field describes.

    Attributes:
        type: ``MANY_TO_ONE`` (this record points at one target) or ``ONE_TO_MANY``.
        target_object: nameSingular of the target object.
        target_field: name of the field on the other side, when known.
        join_column: the column written to link a record (``companyId``), MANY_TO_ONE only.
    """

    type: str
    target_object: str
    target_field: str | None
    join_column: str | None


@dataclass(frozen=True)
class Field:
    """One field of an object, as the workspace metadata describes it."""

    name: str
    type: str
    label: str
    id: str | None = None
    is_nullable: bool = True
    is_unique: bool = False
    is_system: bool = False
    is_custom: bool = False
    is_active: bool = True
    default_value: Any = None
    options: tuple[SelectOption, ...] = ()
    relation: Relation | None = None

    @property
    def subfields(self) -> tuple[str, ...]:
        """Sub-field names of a composite field; empty for scalars."""
        return COMPOSITE_SUBFIELDS.get(self.type, ())

    @property
    def unique_path(self) -> str | None:
        """The path upserts match this field on (``emails.primaryEmail``), if it is unique."""
        if not self.is_unique and self.name != "id":
            return None
        sub = UNIQUE_SUBFIELD.get(self.type)
        return f"{self.name}.{sub}" if sub else self.name

    @property
    def writable(self) -> bool:
        """Whether an import may send this field."""
        if not self.is_active or self.type in NOT_WRITABLE_TYPES or self.name in SERVER_FILLED:
            return False
        if self.relation is not None:
            return self.relation.type == "MANY_TO_ONE"
        return True

    def option(self, value_or_label: str) -> SelectOption | None:
        """The option whose value or label equals ``value_or_label`` (case-insensitive)."""
        wanted = value_or_label.strip().casefold()
        for opt in self.options:
            if opt.value.casefold() == wanted or opt.label.casefold() == wanted:
                return opt
        return None


@dataclass(frozen=True)
class ObjectSchema:
    """One object (standard or custom) with its fields."""

    name_singular: str
    name_plural: str
    label_singular: str
    label_plural: str
    id: str | None = None
    is_custom: bool = False
    is_system: bool = False
    is_active: bool = True
    fields: Mapping[str, Field] = field(default_factory=dict)

    @property
    def names(self) -> ObjectNames:
        """Routing names for the client."""
        return ObjectNames(self.name_singular, self.name_plural)

    def field(self, name: str) -> Field | None:
        """The field called ``name``, or whose join column is ``name`` (``companyId``)."""
        found = self.fields.get(name)
        if found is not None:
            return found
        for candidate in self.fields.values():
            if candidate.relation is not None and candidate.relation.join_column == name:
                return candidate
        return None

    def resolve_path(self, path: str) -> tuple[Field, str | None] | None:
        """Split ``emails.primaryEmail`` into (field, sub-field); None when it does not exist."""
        head, _, sub = path.partition(".")
        found = self.field(head)
        if found is None:
            return None
        if not sub:
            return found, None
        return (found, sub) if sub in found.subfields else None

    @property
    def unique_paths(self) -> list[str]:
        """Every path an upsert can match on: ``id`` first, then unique fields."""
        paths = [f.unique_path for f in self.fields.values() if f.is_active]
        unique = [p for p in paths if p is not None and p != "id"]
        return ["id", *sorted(unique)]

    @property
    def lookup_paths(self) -> list[str]:
        """Every path a relation may be looked up by: the unique ones, and a workspace
        member's ``userEmail`` (one member per user, and a user's e-mail is unique in
        Twenty, though the field is not declared unique): owners matched by e-mail."""
        extra = ["userEmail"] if self.name_singular == "workspaceMember" else []
        return [*self.unique_paths, *(p for p in extra if self.field(p) is not None)]

    def suggest_field(self, name: str, limit: int = 3) -> list[str]:
        """Field names (and ``field.subfield`` paths) close to ``name``."""
        choices = [f.name for f in self.fields.values() if f.is_active]
        choices += [f"{f.name}.{s}" for f in self.fields.values() for s in f.subfields]
        return _close(name, choices, limit)


@dataclass(frozen=True)
class WorkspaceSchema:
    """All objects of a workspace."""

    objects: tuple[ObjectSchema, ...]

    def object(self, name: str) -> ObjectSchema | None:
        """The object whose nameSingular or namePlural is ``name`` (case-insensitive)."""
        wanted = name.strip().casefold()
        for obj in self.objects:
            if wanted in (obj.name_singular.casefold(), obj.name_plural.casefold()):
                return obj
        return None

    def suggest_object(self, name: str, limit: int = 3) -> list[str]:
        """Object names close to ``name``, for "did you mean" messages."""
        return _close(name, [o.name_singular for o in self.objects if o.is_active], limit)


def _close(name: str, choices: list[str], limit: int) -> list[str]:
    matches = process.extract(name, choices, scorer=fuzz.WRatio, limit=limit, score_cutoff=70)
    return [m[0] for m in matches]


# --------------------------------------------------------------------------- parsing


def _options(raw: Any) -> tuple[SelectOption, ...]:
    if not isinstance(raw, list):
        return ()
    out = []
    for item in raw:
        if isinstance(item, dict) and isinstance(item.get("value"), str):
            position = item.get("position")
            out.append(
                SelectOption(
                    value=item["value"],
                    label=str(item.get("label") or item["value"]),
                    position=position if isinstance(position, int) else None,
                    color=item.get("color") if isinstance(item.get("color"), str) else None,
                    id=item.get("id") if isinstance(item.get("id"), str) else None,
                )
            )
    return tuple(sorted(out, key=lambda o: (o.position is None, o.position or 0)))


def _relation(
    raw: Mapping[str, Any], name: str, object_names: Mapping[str, str]
) -> Relation | None:
    if raw.get("type") not in RELATION_TYPES:
        return None
    rel = raw.get("relation") or raw.get("relationDefinition") or {}
    settings = raw.get("settings") or {}
    rel_type = (
        rel.get("type") or rel.get("direction") or settings.get("relationType") or "MANY_TO_ONE"
    )
    target = rel.get("targetObjectMetadata") or {}
    target_name = target.get("nameSingular") or object_names.get(
        str(target.get("id") or rel.get("targetObjectMetadataId") or "")
    )
    if not target_name:
        return None
    target_field = (rel.get("targetFieldMetadata") or {}).get("name")
    join = settings.get("joinColumnName")
    if rel_type == "MANY_TO_ONE" and not join:
        join = f"{name}Id"
    return Relation(
        type=str(rel_type),
        target_object=str(target_name),
        target_field=target_field,
        join_column=join if rel_type == "MANY_TO_ONE" else None,
    )


def _field(raw: Mapping[str, Any], object_names: Mapping[str, str]) -> Field:
    name = str(raw["name"])
    return Field(
        name=name,
        type=str(raw.get("type", "TEXT")),
        label=str(raw.get("label") or name),
        id=raw.get("id"),
        is_nullable=raw.get("isNullable") is not False,
        is_unique=bool(raw.get("isUnique")) or name == "id",
        is_system=bool(raw.get("isSystem")),
        is_custom=bool(raw.get("isCustom")),
        is_active=raw.get("isActive") is not False,
        default_value=raw.get("defaultValue"),
        options=_options(raw.get("options")),
        relation=_relation(raw, name, object_names),
    )


def parse_schema(
    objects: Iterable[Mapping[str, Any]], fields: Iterable[Mapping[str, Any]] | None = None
) -> WorkspaceSchema:
    """Build the model from metadata JSON.

    ``objects`` may embed their ``fields`` (newest servers); otherwise pass the
    workspace's field list and it is joined on ``objectMetadataId``.
    """
    objects = list(objects)
    names_by_id = {str(o.get("id")): str(o.get("nameSingular")) for o in objects}
    by_object: dict[str, list[Mapping[str, Any]]] = {}
    for raw_field in fields or ():
        by_object.setdefault(str(raw_field.get("objectMetadataId")), []).append(raw_field)
    parsed = []
    for raw in objects:
        try:
            singular, plural = str(raw["nameSingular"]), str(raw["namePlural"])
        except KeyError as exc:
            raise FatalApiError(f"object metadata without {exc.args[0]}") from exc
        raw_fields = raw.get("fields")
        if isinstance(raw_fields, dict):  # a GraphQL-style connection
            raw_fields = [e["node"] for e in raw_fields.get("edges", [])]
        if not isinstance(raw_fields, list):
            raw_fields = by_object.get(str(raw.get("id")), [])
        parsed_fields = {}
        for raw_field in raw_fields:
            parsed_field = _field(raw_field, names_by_id)
            parsed_fields[parsed_field.name] = parsed_field
        parsed.append(
            ObjectSchema(
                name_singular=singular,
                name_plural=plural,
                label_singular=str(raw.get("labelSingular") or singular),
                label_plural=str(raw.get("labelPlural") or plural),
                id=raw.get("id"),
                is_custom=bool(raw.get("isCustom")),
                is_system=bool(raw.get("isSystem")),
                is_active=raw.get("isActive") is not False,
                fields=MappingProxyType(parsed_fields),
            )
        )
    return WorkspaceSchema(tuple(sorted(parsed, key=lambda o: o.name_singular)))


async def load_schema(client: TwentyClient) -> WorkspaceSchema:
    """Read the workspace metadata through ``client`` (metadata calls are not rate counted).

    The client also learns which rate-limit bucket the workspace has (its feature
    flags), so its pacer knows the rule before the first counted call.
    """
    await client.learn_bucket()
    objects = await client.metadata_objects()
    fields = None
    if any(not isinstance(o.get("fields"), list | dict) for o in objects):
        fields = await client.metadata_fields()
    return parse_schema(objects, fields)


# --------------------------------------------------------------------------- output


def field_to_json(f: Field) -> dict[str, Any]:
    """One field as plain JSON (``schema --json``)."""
    out: dict[str, Any] = {
        "name": f.name,
        "type": f.type,
        "label": f.label,
        "nullable": f.is_nullable,
        "unique": f.is_unique,
        "system": f.is_system,
        "custom": f.is_custom,
        "writable": f.writable,
    }
    if f.subfields:
        out["subfields"] = list(f.subfields)
    if f.options:
        out["options"] = [{"value": o.value, "label": o.label} for o in f.options]
    if f.relation is not None:
        out["relation"] = {
            "type": f.relation.type,
            "target": f.relation.target_object,
            "joinColumn": f.relation.join_column,
        }
    if f.default_value is not None:
        out["default"] = f.default_value
    return out


def object_to_json(obj: ObjectSchema) -> dict[str, Any]:
    """One object as plain JSON (``schema --json``)."""
    return {
        "nameSingular": obj.name_singular,
        "namePlural": obj.name_plural,
        "labelSingular": obj.label_singular,
        "labelPlural": obj.label_plural,
        "custom": obj.is_custom,
        "system": obj.is_system,
        "uniqueKeys": obj.unique_paths,
        "fields": [field_to_json(f) for f in obj.fields.values() if f.is_active],
    }


def describe_field(f: Field) -> str:
    """A short human description of what a field takes (options, target, sub-fields)."""
    if f.relation is not None:
        arrow = "->" if f.relation.type == "MANY_TO_ONE" else "<-"
        join = f" via {f.relation.join_column}" if f.relation.join_column else ""
        return f"{arrow} {f.relation.target_object}{join}"
    if f.options:
        shown = ", ".join(o.value for o in f.options[:8])
        return shown + (", ..." if len(f.options) > 8 else "")
    if f.subfields:
        return ", ".join(f.subfields)
    return ""
