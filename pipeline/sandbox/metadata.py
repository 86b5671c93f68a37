"""The workspace's metadata: object and field DTOs, their model, and the mutations (§8).

DTOs are stored as the metadata API answers them; the sandbox's own model
(:mod:`pipeline.sandbox.model`) is rebuilt from them after every change, and the
record store reads fields, types and relations only from that model.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from pipeline.sandbox.database import Database
from pipeline.sandbox.dtos import (
    FieldRef,
    ObjectRef,
    object_dto,
    option_dto,
    relation_block,
    relation_settings,
)
from pipeline.sandbox.errors import InvalidArgs, NotFound
from pipeline.sandbox.model import ObjectModel, WorkspaceModel, model_from_dtos
from pipeline.sandbox.standard import SYSTEM_FIELDS, F, standard_field_dto, standard_metadata

NAME_RE = re.compile(r"^[a-z][a-zA-Z0-9]*$")
OPTION_VALUE_RE = re.compile(r"^[A-Z0-9]+(_[A-Z0-9]+)*$")
FIELD_TYPES = frozenset(
    {
        "TEXT",
        "NUMBER",
        "NUMERIC",
        "BOOLEAN",
        "DATE",
        "DATE_TIME",
        "SELECT",
        "MULTI_SELECT",
        "RATING",
        "UUID",
        "RAW_JSON",
        "ARRAY",
        "FULL_NAME",
        "EMAILS",
        "PHONES",
        "LINKS",
        "CURRENCY",
        "ADDRESS",
        "RICH_TEXT_V2",
        "RELATION",
    }
)
OPTION_TYPES = ("SELECT", "MULTI_SELECT", "RATING")
UPDATABLE = frozenset({"label", "description", "icon", "isActive", "options"})
"""What UpdateOneField changes here (the type and name never)."""
RELATION_KINDS = ("MANY_TO_ONE", "ONE_TO_MANY")


class MetadataStore:
    """Objects and fields of one workspace file, seeded with the standard objects."""

    def __init__(self, database: Database) -> None:
        self.database = database
        if database.db.execute("SELECT COUNT(*) FROM objects").fetchone()[0] == 0:
            self._seed()
        self.model = self.load_model()

    def _seed(self) -> None:
        objects, fields = standard_metadata()
        with self.database.transaction():
            self.database.db.execute("INSERT INTO workspace VALUES ('id', ?)", (str(uuid.uuid4()),))
            for o in objects:
                self._insert_object(o)
            for f in fields:
                self._insert_field(f)

    def _insert_object(self, dto: dict[str, Any]) -> None:
        self.database.db.execute(
            "INSERT INTO objects VALUES (?, ?, ?, ?)",
            (dto["id"], dto["nameSingular"], dto["namePlural"], json.dumps(dto)),
        )

    def _insert_field(self, dto: dict[str, Any]) -> None:
        self.database.db.execute(
            "INSERT INTO fields VALUES (?, ?, ?, ?)",
            (dto["id"], dto["objectMetadataId"], dto["name"], json.dumps(dto)),
        )

    def load_model(self) -> WorkspaceModel:
        """The model of the DTOs stored now (the caller decides when it becomes current)."""
        return model_from_dtos(self.object_dtos(with_fields=True))

    # ------------------------------------------------------------------ reads

    def object(self, name: str) -> ObjectModel:
        """The object named ``name`` (singular or plural); 400 for an unknown one."""
        found = self.model.object(name)
        if found is None:
            raise InvalidArgs(f"object '{name}' not found")
        return found

    def object_by_plural(self, plural: str) -> ObjectModel | None:
        """The object whose namePlural is exactly ``plural`` (REST routing)."""
        return next((o for o in self.model.objects if o.name_plural == plural), None)

    def object_dtos(self, *, with_fields: bool) -> list[dict[str, Any]]:
        """Every object DTO ordered by id, optionally with its ``fields`` embedded."""
        db = self.database.db
        objects = [json.loads(r[0]) for r in db.execute("SELECT dto FROM objects ORDER BY id")]
        if with_fields:
            by_object: dict[str, list[dict[str, Any]]] = {}
            for (dto,) in db.execute("SELECT dto FROM fields ORDER BY rowid"):
                field = json.loads(dto)
                by_object.setdefault(field["objectMetadataId"], []).append(field)
            for o in objects:
                o["fields"] = by_object.get(o["id"], [])
        return objects

    def field_dtos(self) -> list[dict[str, Any]]:
        """Every field DTO of the workspace, ordered by id (the metadata pagination key)."""
        rows = self.database.db.execute("SELECT dto FROM fields ORDER BY id")
        return [json.loads(r[0]) for r in rows]

    def object_dto_by_id(self, object_id: str) -> dict[str, Any]:
        """One object DTO with its fields; 404 when absent."""
        for o in self.object_dtos(with_fields=True):
            if o["id"] == object_id:
                return o
        raise NotFound("Object not found")

    def field_dto_by_id(self, field_id: str) -> dict[str, Any]:
        """One field DTO; 404 when absent."""
        row = self.database.db.execute(
            "SELECT dto FROM fields WHERE id = ?", (field_id,)
        ).fetchone()
        if row is None:
            raise NotFound("Field not found")
        return dict(json.loads(row[0]))

    # ------------------------------------------------------------------ createOneObject

    def create_object(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create a custom object (with the system fields and a ``name`` text field)."""
        singular, plural = self._check_object_names(data)
        object_id = str(uuid.uuid4())
        dto = object_dto(
            singular,
            plural,
            str(data["labelSingular"]),
            str(data["labelPlural"]),
            is_custom=True,
            is_system=False,
            object_id=object_id,
        )
        dto["description"] = data.get("description")
        dto["icon"] = data.get("icon")
        plurals = {o.name_singular: o.name_plural for o in self.model.objects}
        plurals[singular] = plural
        with self.database.transaction():
            self._insert_object(dto)
            for f in (*SYSTEM_FIELDS, F("name", "TEXT", "Name")):
                self._insert_field(standard_field_dto(singular, f, plurals, object_id=object_id))
        self.model = self.load_model()
        return self.object_dto_by_id(object_id)

    def _check_object_names(self, data: dict[str, Any]) -> tuple[str, str]:
        problems = [
            f"{k} is required"
            for k in ("nameSingular", "namePlural", "labelSingular", "labelPlural")
            if not data.get(k)
        ]
        if problems:
            raise InvalidArgs("; ".join(problems))
        singular, plural = str(data["nameSingular"]), str(data["namePlural"])
        for name in (singular, plural):
            if not NAME_RE.match(name):
                raise InvalidArgs(f'Name "{name}" is not valid: use camelCase letters and digits')
        if singular == plural:
            raise InvalidArgs("The singular and plural names cannot be the same for an object")
        for obj in self.model.objects:
            if {singular, plural} & {obj.name_singular, obj.name_plural}:
                raise InvalidArgs(f"Object already exists: {obj.name_singular}")
        return singular, plural

    # ------------------------------------------------------------------ createOneField

    def create_field(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create a custom field (twenty-api.md §8.1 CreateFieldInput); every problem at once."""
        obj = self.model.object_by_id(str(data.get("objectMetadataId") or ""))
        target = self._relation_target(data)
        problems = [
            *self._field_problems(obj, data),
            *_option_problems(data),
            *_relation_problems(data, target),
        ]
        if problems:
            raise InvalidArgs("; ".join(problems))
        assert obj is not None and obj.id is not None
        dto = self._custom_field_dto(obj.id, data)
        dtos = [dto]
        if target is not None:
            dtos.append(_pair_relation(dto, obj, target, data["relationCreationPayload"]))
        with self.database.transaction():
            for d in dtos:
                self._insert_field(d)
        self.model = self.load_model()
        return dto

    def update_field(self, field_id: str, update: dict[str, Any]) -> dict[str, Any]:
        """UpdateOneField: a field's label, description, icon, active flag or options.

        Options are given whole: the ones kept carry their ids; new ones get one. Every
        problem at once; the type and name never change.
        """
        dto = self.field_dto_by_id(field_id)
        problems = [
            f"{key} cannot be updated" for key in update if key not in UPDATABLE and key != "id"
        ]
        options = update.get("options")
        if "options" in update:
            if dto["type"] not in OPTION_TYPES:
                problems.append(f"a {dto['type']} field has no options")
            else:
                problems += _option_problems({"type": dto["type"], "options": options})
                values = [o.get("value") for o in options or [] if isinstance(o, dict)]
                if len(values) != len(set(values)):
                    problems.append("Options must have unique values")
        if problems:
            raise InvalidArgs("; ".join(problems))
        changed = {k: v for k, v in update.items() if k in UPDATABLE}
        if options is not None:
            changed["options"] = [
                {**o, "id": o.get("id") or str(uuid.uuid4()), "position": o.get("position", i)}
                for i, o in enumerate(options)
            ]
        new = {**dto, **changed}
        with self.database.transaction():
            self.database.db.execute(
                "UPDATE fields SET dto = ? WHERE id = ?", (json.dumps(new), field_id)
            )
        self.model = self.load_model()
        return new

    def _relation_target(self, data: dict[str, Any]) -> ObjectModel | None:
        payload = data.get("relationCreationPayload")
        if data.get("type") != "RELATION" or not isinstance(payload, dict):
            return None
        return self.model.object_by_id(payload.get("targetObjectMetadataId"))

    def _field_problems(self, obj: ObjectModel | None, data: dict[str, Any]) -> list[str]:
        problems: list[str] = []
        if obj is None:
            object_id = str(data.get("objectMetadataId") or "")
            problems.append(f"Object metadata {object_id or '(none)'} not found")
        name = data.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            problems.append(f'Name "{name}" is not valid: use camelCase letters and digits')
        elif obj is not None and obj.field(name) is not None:
            problems.append(f'Name "{name}" is not available, a field already uses it')
        if data.get("type") not in FIELD_TYPES:
            problems.append(f"Invalid field type {data.get('type')}")
        if not data.get("label"):
            problems.append("label is required")
        return problems

    def _custom_field_dto(self, object_id: str, data: dict[str, Any]) -> dict[str, Any]:
        now = self.database.clock()
        return {
            "id": str(uuid.uuid4()),
            "objectMetadataId": object_id,
            "type": data["type"],
            "name": data["name"],
            "label": data["label"],
            "description": data.get("description"),
            "icon": data.get("icon"),
            "isCustom": True,
            "isActive": True,
            "isSystem": False,
            "isNullable": data.get("isNullable", True) is not False,
            "isUnique": bool(data.get("isUnique")),
            "defaultValue": data.get("defaultValue"),
            "options": [
                option_dto(
                    str(uuid.uuid4()),
                    o["value"],
                    o["label"],
                    o.get("position", i),
                    o.get("color", "gray"),
                )
                for i, o in enumerate(data.get("options") or [])
            ]
            or None,
            "settings": data.get("settings"),
            "isLabelSyncedWithName": bool(data.get("isLabelSyncedWithName")),
            "createdAt": now,
            "updatedAt": now,
            "relation": None,
        }


def _option_problems(data: dict[str, Any]) -> list[str]:
    """What is wrong with the options of a SELECT / MULTI_SELECT / RATING field."""
    ftype, options = data.get("type"), data.get("options")
    if ftype not in OPTION_TYPES:
        return []
    if not isinstance(options, list) or not options:
        return [f"options are required for a {ftype} field"]
    problems = []
    for i, opt in enumerate(options):
        value = opt.get("value") if isinstance(opt, dict) else None
        if not isinstance(value, str) or not OPTION_VALUE_RE.match(value) or len(value) > 63:
            problems.append(f'Value must be in UPPER_CASE and follow snake_case "{value}"')
        elif not opt.get("label"):
            problems.append(f"option {i} needs a label")
    return problems


def _relation_problems(data: dict[str, Any], target: ObjectModel | None) -> list[str]:
    """What is wrong with the relationCreationPayload of a RELATION field."""
    if data.get("type") != "RELATION":
        return []
    payload = data.get("relationCreationPayload")
    if not isinstance(payload, dict):
        return ["relationCreationPayload is required for a RELATION field"]
    problems = []
    if target is None:
        problems.append("relationCreationPayload.targetObjectMetadataId not found")
    if payload.get("type") not in RELATION_KINDS:
        problems.append("relationCreationPayload.type must be MANY_TO_ONE or ONE_TO_MANY")
    return problems


def _back_field_name(payload: dict[str, Any], obj: ObjectModel) -> str:
    """The other side's name: its label (or the source's plural) as camelCase letters."""
    name = str(payload.get("targetFieldLabel") or obj.name_plural)
    name = re.sub(r"[^a-zA-Z0-9]", "", name)
    return name[:1].lower() + name[1:]


def _pair_relation(
    dto: dict[str, Any], obj: ObjectModel, target: ObjectModel, payload: dict[str, Any]
) -> dict[str, Any]:
    """Fill the relation of ``dto`` and return the DTO of its other side, on ``target``."""
    kind = str(payload["type"])
    back_kind = "ONE_TO_MANY" if kind == "MANY_TO_ONE" else "MANY_TO_ONE"
    back_name = _back_field_name(payload, obj)
    back: dict[str, Any] = dict(
        dto,
        id=str(uuid.uuid4()),
        objectMetadataId=target.id,
        name=back_name,
        label=payload.get("targetFieldLabel") or back_name,
        isUnique=False,
    )
    source_ref = ObjectRef(obj.id, obj.name_singular, obj.name_plural)
    target_ref = ObjectRef(target.id, target.name_singular, target.name_plural)
    this_end, other_end = FieldRef(dto["id"], dto["name"]), FieldRef(back["id"], back_name)
    dto["relation"] = relation_block(kind, source_ref, target_ref, this_end, other_end)
    back["relation"] = relation_block(back_kind, target_ref, source_ref, other_end, this_end)
    dto["settings"] = relation_settings(kind, dto["name"])
    back["settings"] = relation_settings(back_kind, back_name)
    return back
