"""The sandbox's own model of a workspace's data model: objects, fields, sub-fields, relations.

The sandbox stands in for a Twenty server, so it keeps its own reading of Twenty's rules
(twenty-api.md §4, §6, §8 and the composite types of ``twenty-shared``) instead of
borrowing the client's: a misreading in the client then fails against the sandbox
rather than passing on both sides. The model is built from the metadata DTOs the
sandbox stores, in the shape its own metadata API serves them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

# What a composite sub-field holds. "text" parts are stored as "" when unset; the
# others (lists and objects as "json", "bigfloat" and "float" numbers, "uuid") as null.
SubFieldKind = Literal["text", "json", "bigfloat", "float", "uuid"]


@dataclass(frozen=True)
class SubField:
    """One property of a composite type (twenty-shared ``*.composite-type.ts``).

    ``upsert_key`` marks the property upserts match a unique field of this type on
    (twenty-api.md §4.1).
    """

    name: str
    kind: SubFieldKind
    upsert_key: bool = False


@dataclass(frozen=True)
class CompositeType:
    """A composite field type: its GraphQL type stem and its properties, in Twenty's order."""

    graphql_name: str
    subfields: tuple[SubField, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The property names."""
        return tuple(sub.name for sub in self.subfields)

    @property
    def upsert_key(self) -> str | None:
        """The property a unique field of this type is matched on by upserts, if any."""
        return next((sub.name for sub in self.subfields if sub.upsert_key), None)


def _text(*names: str) -> tuple[SubField, ...]:
    return tuple(SubField(name, "text") for name in names)


COMPOSITE_TYPES: Mapping[str, CompositeType] = MappingProxyType(
    {
        "FULL_NAME": CompositeType("FullName", _text("firstName", "lastName")),
        "EMAILS": CompositeType(
            "Emails",
            (
                SubField("primaryEmail", "text", upsert_key=True),
                SubField("additionalEmails", "json"),
            ),
        ),
        "PHONES": CompositeType(
            "Phones",
            (
                SubField("primaryPhoneNumber", "text", upsert_key=True),
                *_text("primaryPhoneCountryCode", "primaryPhoneCallingCode"),
                SubField("additionalPhones", "json"),
            ),
        ),
        "LINKS": CompositeType(
            "Links",
            (
                SubField("primaryLinkUrl", "text", upsert_key=True),
                SubField("primaryLinkLabel", "text"),
                SubField("secondaryLinks", "json"),
            ),
        ),
        "CURRENCY": CompositeType(
            "Currency", (SubField("amountMicros", "bigfloat"), SubField("currencyCode", "text"))
        ),
        "ADDRESS": CompositeType(
            "Address",
            (
                *_text(
                    "addressStreet1",
                    "addressStreet2",
                    "addressCity",
                    "addressPostcode",
                    "addressState",
                    "addressCountry",
                ),
                SubField("addressLat", "float"),
                SubField("addressLng", "float"),
            ),
        ),
        "ACTOR": CompositeType(
            "Actor",
            (
                SubField("source", "text"),
                SubField("workspaceMemberId", "uuid"),
                SubField("name", "text"),
                SubField("context", "json"),
            ),
        ),
        "RICH_TEXT_V2": CompositeType("RichTextV2", _text("blocknote", "markdown")),
    }
)

# Types Twenty refuses to write (twenty-api.md §6) and fields the server fills itself.
UNWRITABLE_TYPES = frozenset({"TS_VECTOR", "RICH_TEXT"})
SERVER_MANAGED = frozenset({"updatedAt", "deletedAt", "createdBy", "updatedBy", "searchVector"})
RELATION_FIELD_TYPES = frozenset({"RELATION", "MORPH_RELATION"})

RelationKind = Literal["MANY_TO_ONE", "ONE_TO_MANY"]


@dataclass(frozen=True)
class SelectOption:
    """One option of a SELECT / MULTI_SELECT / RATING field; only its value is checked."""

    value: str
    label: str
    position: int | None = None


@dataclass(frozen=True)
class RelationSide:
    """The side of a relation one RELATION field describes (``relation`` + ``settings``).

    ``join_column`` is the column a MANY_TO_ONE side is written through (``companyId``);
    a ONE_TO_MANY side has none and is read through the other side's join column.
    """

    kind: str
    target_object: str
    target_field: str | None
    join_column: str | None


@dataclass(frozen=True)
class FieldModel:
    """One field of an object, as the sandbox's metadata holds it."""

    name: str
    type: str
    id: str | None = None
    is_nullable: bool = True
    is_unique: bool = False
    is_system: bool = False
    is_active: bool = True
    default_value: Any = None
    options: tuple[SelectOption, ...] = ()
    relation: RelationSide | None = None

    @property
    def composite(self) -> CompositeType | None:
        """The composite type of this field, None for a scalar or a relation."""
        return COMPOSITE_TYPES.get(self.type)

    @property
    def subfields(self) -> tuple[str, ...]:
        """Property names of a composite field; empty for scalars."""
        composite = self.composite
        return composite.names if composite is not None else ()

    @property
    def unique_path(self) -> str | None:
        """The path an upsert matches this field on (``emails.primaryEmail``), if unique."""
        if not self.is_unique and self.name != "id":
            return None
        key = self.composite.upsert_key if self.composite is not None else None
        return f"{self.name}.{key}" if key else self.name

    @property
    def writable(self) -> bool:
        """Whether a create or update input may carry this field (GraphQL input types)."""
        if not self.is_active or self.type in UNWRITABLE_TYPES or self.name in SERVER_MANAGED:
            return False
        if self.relation is not None:
            return self.relation.kind == "MANY_TO_ONE"
        return True

    def has_option(self, value: Any) -> bool:
        """Whether ``value`` is one of this field's option values (exact, as Twenty checks)."""
        return any(option.value == value for option in self.options)


@dataclass(frozen=True)
class ObjectModel:
    """One object (standard or custom) with its fields, keyed by name."""

    name_singular: str
    name_plural: str
    id: str | None = None
    is_active: bool = True
    fields: Mapping[str, FieldModel] = field(default_factory=dict)

    @property
    def singular_type(self) -> str:
        """GraphQL type stem (``Person``): the singular name with its first letter upper."""
        return _capitalised(self.name_singular)

    @property
    def plural_type(self) -> str:
        """Plural stem of resolver names (``People`` in ``createPeople``)."""
        return _capitalised(self.name_plural)

    def field(self, key: str) -> FieldModel | None:
        """The field named ``key`` or written through join column ``key`` (twenty-api.md §6)."""
        found = self.fields.get(key)
        if found is not None:
            return found
        for candidate in self.fields.values():
            if candidate.relation is not None and candidate.relation.join_column == key:
                return candidate
        return None

    def resolve_path(self, path: str) -> tuple[FieldModel, str | None] | None:
        """``emails.primaryEmail`` as (field, sub-field); None when no such path exists."""
        head, _, sub = path.partition(".")
        found = self.field(head)
        if found is None:
            return None
        if not sub:
            return found, None
        return (found, sub) if sub in found.subfields else None


@dataclass(frozen=True)
class WorkspaceModel:
    """Every object of the workspace, ordered by nameSingular."""

    objects: tuple[ObjectModel, ...]

    def object(self, name: str) -> ObjectModel | None:
        """The object whose nameSingular or namePlural is ``name`` (case-insensitive)."""
        wanted = name.strip().casefold()
        for obj in self.objects:
            if wanted in (obj.name_singular.casefold(), obj.name_plural.casefold()):
                return obj
        return None

    def object_by_id(self, object_id: Any) -> ObjectModel | None:
        """The object whose metadata id is ``object_id``."""
        return next((obj for obj in self.objects if obj.id == object_id), None)


def _capitalised(name: str) -> str:
    return name[:1].upper() + name[1:]


# --------------------------------------------------------------------------- reading DTOs


def _options(raw: Any) -> tuple[SelectOption, ...]:
    if not isinstance(raw, list):
        return ()
    options = [
        SelectOption(
            value=item["value"],
            label=str(item.get("label") or item["value"]),
            position=item.get("position") if isinstance(item.get("position"), int) else None,
        )
        for item in raw
        if isinstance(item, dict) and isinstance(item.get("value"), str)
    ]
    return tuple(sorted(options, key=lambda o: (o.position is None, o.position or 0)))


def _relation_side(dto: Mapping[str, Any]) -> RelationSide | None:
    """The relation side of a RELATION field DTO (the ``relation`` block and ``settings``)."""
    if dto.get("type") not in RELATION_FIELD_TYPES:
        return None
    relation = dto.get("relation") or {}
    settings = dto.get("settings") or {}
    kind = str(relation.get("type") or settings.get("relationType") or "MANY_TO_ONE")
    target = (relation.get("targetObjectMetadata") or {}).get("nameSingular")
    if not target:
        return None
    join_column = None
    if kind == "MANY_TO_ONE":
        join_column = str(settings.get("joinColumnName") or f"{dto['name']}Id")
    return RelationSide(
        kind=kind,
        target_object=str(target),
        target_field=(relation.get("targetFieldMetadata") or {}).get("name"),
        join_column=join_column,
    )


def field_from_dto(dto: Mapping[str, Any]) -> FieldModel:
    """One field DTO (twenty-api.md §8.1) as the sandbox's field model."""
    name = str(dto["name"])
    return FieldModel(
        name=name,
        type=str(dto.get("type", "TEXT")),
        id=dto.get("id"),
        is_nullable=dto.get("isNullable") is not False,
        is_unique=bool(dto.get("isUnique")) or name == "id",
        is_system=bool(dto.get("isSystem")),
        is_active=dto.get("isActive") is not False,
        default_value=dto.get("defaultValue"),
        options=_options(dto.get("options")),
        relation=_relation_side(dto),
    )


def model_from_dtos(objects: Iterable[Mapping[str, Any]]) -> WorkspaceModel:
    """The workspace model of object DTOs that embed their ``fields`` list."""
    built = []
    for dto in objects:
        fields = {str(f["name"]): field_from_dto(f) for f in dto.get("fields") or ()}
        built.append(
            ObjectModel(
                name_singular=str(dto["nameSingular"]),
                name_plural=str(dto["namePlural"]),
                id=dto.get("id"),
                is_active=dto.get("isActive") is not False,
                fields=MappingProxyType(fields),
            )
        )
    return WorkspaceModel(tuple(sorted(built, key=lambda o: o.name_singular)))
