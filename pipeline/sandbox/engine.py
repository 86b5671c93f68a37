"""The sandbox's query runners over one SQLite file: records, metadata, API keys.

Both faces (REST and GraphQL) call these, as Twenty's REST and GraphQL layers both
call its "common query runners" (twenty-api.md §2.7), so they validate, limit and
answer alike.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.sandbox.filters import (
    Filter,
    OrderBy,
    compile_filter,
    cursor_record,
    decode_cursor,
    encode_cursor,
    mentions_deleted_at,
    sort_records,
)
from pipeline.sandbox.values import (
    DuplicateEntry,
    InvalidArgs,
    NotFound,
    check_uuid,
    coerce,
    composite_default,
    iso,
)
from pipeline.schema import (
    COMPOSITE_SUBFIELDS,
    UNIQUE_SUBFIELD,
    Field,
    ObjectSchema,
    WorkspaceSchema,
    parse_schema,
)
from pipeline.standard import (
    SYSTEM_FIELDS,
    F,
    field_dto,
    metadata_id,
    object_dto,
    standard_metadata,
)

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS workspace (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE,
    plural TEXT NOT NULL UNIQUE, dto TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fields (id TEXT PRIMARY KEY, object_id TEXT NOT NULL,
    name TEXT NOT NULL, dto TEXT NOT NULL, UNIQUE (object_id, name));
CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, object TEXT NOT NULL,
    id TEXT NOT NULL, data TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    UNIQUE (object, id));
CREATE TABLE IF NOT EXISTS uniques (object TEXT NOT NULL, path TEXT NOT NULL,
    value TEXT NOT NULL, record_id TEXT NOT NULL, PRIMARY KEY (object, path, value));
CREATE INDEX IF NOT EXISTS uniques_by_record ON uniques (object, record_id);
CREATE TABLE IF NOT EXISTS api_keys (id TEXT PRIMARY KEY, name TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE, expires_at TEXT, revoked_at TEXT);
"""

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
SYSTEM_WRITABLE = ("id", "createdAt", "updatedAt", "position", "createdBy")


@dataclass(frozen=True)
class ApiKey:
    """A stored API key."""

    id: str
    name: str
    token: str
    expires_at: str | None
    revoked_at: str | None


@dataclass(frozen=True)
class PageResult:
    """One page of a find-many."""

    records: list[dict[str, Any]]
    total_count: int
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


def _now() -> str:
    return iso(datetime.now(UTC))


def _default_value(field: Field) -> Any:
    """A field's stored default: SQL-quoted strings unquoted, booleans kept."""
    raw = field.default_value
    if field.subfields:
        return composite_default(field.type)
    if isinstance(raw, str) and raw.startswith("'") and raw.endswith("'"):
        return raw[1:-1]
    if isinstance(raw, bool | int | float):
        return raw
    return None


class Engine:
    """The workspace: one SQLite file (WAL), safe to share between the app's handlers."""

    def __init__(
        self, path: str | Path, *, max_records: int = 200, clock: Callable[[], str] = _now
    ) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_records = max_records
        self.clock = clock
        self._lock = threading.RLock()
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA case_sensitive_like=ON")
        self.db.executescript(SCHEMA_SQL)
        self._positions: dict[str, float] = {}
        if self.db.execute("SELECT COUNT(*) FROM objects").fetchone()[0] == 0:
            self._seed()
        self.workspace_id = self._workspace_value("id")
        self._schema = self._load_schema()

    # ------------------------------------------------------------------ setup

    def _workspace_value(self, key: str) -> str:
        row = self.db.execute("SELECT value FROM workspace WHERE key = ?", (key,)).fetchone()
        return str(row[0])

    def _seed(self) -> None:
        objects, fields = standard_metadata()
        with self.transaction():
            self.db.execute("INSERT INTO workspace VALUES ('id', ?)", (str(uuid.uuid4()),))
            for o in objects:
                self._insert_object(o)
            for f in fields:
                self._insert_field(f)

    def _insert_object(self, dto: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO objects VALUES (?, ?, ?, ?)",
            (dto["id"], dto["nameSingular"], dto["namePlural"], json.dumps(dto)),
        )

    def _insert_field(self, dto: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO fields VALUES (?, ?, ?, ?)",
            (dto["id"], dto["objectMetadataId"], dto["name"], json.dumps(dto)),
        )

    def _load_schema(self) -> WorkspaceSchema:
        return parse_schema(self.object_dtos(with_fields=True))

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; rolled back on any error."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    # ------------------------------------------------------------------ api keys

    def ensure_api_key(self, token: str | None = None, name: str = "sandbox") -> str:
        """A usable key: ``token`` (stored if new), else the first live key, else a new one."""
        with self.transaction():
            if token is not None:
                row = self.db.execute(
                    "SELECT token FROM api_keys WHERE token = ?", (token,)
                ).fetchone()
                if row is None:
                    self.db.execute(
                        "INSERT INTO api_keys VALUES (?, ?, ?, NULL, NULL)",
                        (str(uuid.uuid4()), name, token),
                    )
                return token
            row = self.db.execute(
                "SELECT token FROM api_keys WHERE revoked_at IS NULL AND expires_at IS NULL "
                "ORDER BY rowid LIMIT 1"
            ).fetchone()
            if row is not None:
                return str(row[0])
            new = "sandbox-" + secrets.token_hex(20)
            self.db.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, NULL, NULL)", (str(uuid.uuid4()), name, new)
            )
            return new

    def add_api_key(
        self,
        token: str,
        *,
        name: str = "key",
        expires_at: str | None = None,
        revoked_at: str | None = None,
    ) -> None:
        """Store a key with an expiry or revocation (tests of the auth answers)."""
        with self.transaction():
            self.db.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?)",
                (str(uuid.uuid4()), name, token, expires_at, revoked_at),
            )

    def find_api_key(self, token: str) -> ApiKey | None:
        """The stored key whose token is ``token``."""
        row = self.db.execute(
            "SELECT id, name, token, expires_at, revoked_at FROM api_keys WHERE token = ?", (token,)
        ).fetchone()
        return ApiKey(*row) if row else None

    # ------------------------------------------------------------------ metadata

    @property
    def schema(self) -> WorkspaceSchema:
        """The workspace model (rebuilt after every metadata change)."""
        return self._schema

    def object(self, name: str) -> ObjectSchema:
        """The object named ``name`` (singular or plural); 400 for an unknown one."""
        found = self._schema.object(name)
        if found is None:
            raise InvalidArgs(f"object '{name}' not found")
        return found

    def object_by_plural(self, plural: str) -> ObjectSchema | None:
        """The object whose namePlural is exactly ``plural`` (REST routing)."""
        for obj in self._schema.objects:
            if obj.name_plural == plural:
                return obj
        return None

    def object_dtos(self, *, with_fields: bool) -> list[dict[str, Any]]:
        """Every object DTO, optionally with its ``fields`` embedded."""
        objects = [json.loads(r[0]) for r in self.db.execute("SELECT dto FROM objects ORDER BY id")]
        if with_fields:
            by_object: dict[str, list[dict[str, Any]]] = {}
            for (dto,) in self.db.execute("SELECT dto FROM fields ORDER BY rowid"):
                field = json.loads(dto)
                by_object.setdefault(field["objectMetadataId"], []).append(field)
            for o in objects:
                o["fields"] = by_object.get(o["id"], [])
        return objects

    def field_dtos(self) -> list[dict[str, Any]]:
        """Every field DTO of the workspace, ordered by id (the metadata pagination key)."""
        return [json.loads(r[0]) for r in self.db.execute("SELECT dto FROM fields ORDER BY id")]

    def create_object(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create a custom object (with the system fields and a ``name`` text field)."""
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
        for obj in self._schema.objects:
            if {singular, plural} & {obj.name_singular, obj.name_plural}:
                raise InvalidArgs(f"Object already exists: {obj.name_singular}")
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
        plurals = {o.name_singular: o.name_plural for o in self._schema.objects}
        plurals[singular] = plural
        with self.transaction():
            self._insert_object(dto)
            for f in (*SYSTEM_FIELDS, F("name", "TEXT", "Name")):
                field = field_dto(singular, f, plurals)
                field["id"] = str(uuid.uuid4())
                field["objectMetadataId"] = object_id
                self._insert_field(field)
        self._schema = self._load_schema()
        return self.object_dtos_by_id(object_id)

    def object_dtos_by_id(self, object_id: str) -> dict[str, Any]:
        """One object DTO with its fields; 404 when absent."""
        for o in self.object_dtos(with_fields=True):
            if o["id"] == object_id:
                return o
        raise NotFound("Object not found")

    def field_dto_by_id(self, field_id: str) -> dict[str, Any]:
        """One field DTO; 404 when absent."""
        row = self.db.execute("SELECT dto FROM fields WHERE id = ?", (field_id,)).fetchone()
        if row is None:
            raise NotFound("Field not found")
        return dict(json.loads(row[0]))

    def create_field(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create a custom field (twenty-api.md §8.1 CreateFieldInput); every problem at once."""
        problems: list[str] = []
        object_id = str(data.get("objectMetadataId") or "")
        obj = next((o for o in self._schema.objects if o.id == object_id), None)
        if obj is None:
            problems.append(f"Object metadata {object_id or '(none)'} not found")
        name, ftype, label = data.get("name"), data.get("type"), data.get("label")
        if not isinstance(name, str) or not NAME_RE.match(name):
            problems.append(f'Name "{name}" is not valid: use camelCase letters and digits')
        elif obj is not None and obj.field(name) is not None:
            problems.append(f'Name "{name}" is not available, a field already uses it')
        if ftype not in FIELD_TYPES:
            problems.append(f"Invalid field type {ftype}")
        if not label:
            problems.append("label is required")
        options = data.get("options")
        if ftype in ("SELECT", "MULTI_SELECT", "RATING"):
            if not isinstance(options, list) or not options:
                problems.append(f"options are required for a {ftype} field")
            else:
                for i, opt in enumerate(options):
                    value = opt.get("value") if isinstance(opt, dict) else None
                    if (
                        not isinstance(value, str)
                        or not OPTION_VALUE_RE.match(value)
                        or len(value) > 63
                    ):
                        problems.append(
                            f'Value must be in UPPER_CASE and follow snake_case "{value}"'
                        )
                    elif not opt.get("label"):
                        problems.append(f"option {i} needs a label")
        relation_payload = data.get("relationCreationPayload")
        target: ObjectSchema | None = None
        if ftype == "RELATION":
            if not isinstance(relation_payload, dict):
                problems.append("relationCreationPayload is required for a RELATION field")
            else:
                target = next(
                    (
                        o
                        for o in self._schema.objects
                        if o.id == relation_payload.get("targetObjectMetadataId")
                    ),
                    None,
                )
                if target is None:
                    problems.append("relationCreationPayload.targetObjectMetadataId not found")
                if relation_payload.get("type") not in ("MANY_TO_ONE", "ONE_TO_MANY"):
                    problems.append(
                        "relationCreationPayload.type must be MANY_TO_ONE or ONE_TO_MANY"
                    )
        if problems:
            raise InvalidArgs("; ".join(problems))
        assert obj is not None and isinstance(name, str)
        field_id = str(uuid.uuid4())
        dto: dict[str, Any] = {
            "id": field_id,
            "objectMetadataId": object_id,
            "type": ftype,
            "name": name,
            "label": label,
            "description": data.get("description"),
            "icon": data.get("icon"),
            "isCustom": True,
            "isActive": True,
            "isSystem": False,
            "isNullable": data.get("isNullable", True) is not False,
            "isUnique": bool(data.get("isUnique")),
            "defaultValue": data.get("defaultValue"),
            "options": [
                {
                    "id": str(uuid.uuid4()),
                    "value": o["value"],
                    "label": o["label"],
                    "position": o.get("position", i),
                    "color": o.get("color", "gray"),
                }
                for i, o in enumerate(options or [])
            ]
            or None,
            "settings": data.get("settings"),
            "isLabelSyncedWithName": bool(data.get("isLabelSyncedWithName")),
            "createdAt": self.clock(),
            "updatedAt": self.clock(),
            "relation": None,
        }
        dtos = [dto]
        if ftype == "RELATION" and target is not None and isinstance(relation_payload, dict):
            rel_type = relation_payload["type"]
            back_type = "ONE_TO_MANY" if rel_type == "MANY_TO_ONE" else "MANY_TO_ONE"
            back_name = str(relation_payload.get("targetFieldLabel") or obj.name_plural)
            back_name = re.sub(r"[^a-zA-Z0-9]", "", back_name)
            back_name = back_name[:1].lower() + back_name[1:]
            back_id = str(uuid.uuid4())
            back: dict[str, Any] = dict(
                dto,
                id=back_id,
                objectMetadataId=target.id,
                name=back_name,
                label=relation_payload.get("targetFieldLabel") or back_name,
                isUnique=False,
            )

            def side(
                src: ObjectSchema,
                dst: ObjectSchema,
                kind: str,
                fname: str,
                other: str,
                src_id: str,
                dst_id: str,
            ) -> dict[str, Any]:
                return {
                    "type": kind,
                    "sourceObjectMetadata": {
                        "id": src.id,
                        "nameSingular": src.name_singular,
                        "namePlural": src.name_plural,
                    },
                    "targetObjectMetadata": {
                        "id": dst.id,
                        "nameSingular": dst.name_singular,
                        "namePlural": dst.name_plural,
                    },
                    "sourceFieldMetadata": {"id": src_id, "name": fname},
                    "targetFieldMetadata": {"id": dst_id, "name": other},
                }

            dto["relation"] = side(obj, target, rel_type, name, back_name, field_id, back_id)
            back["relation"] = side(target, obj, back_type, back_name, name, back_id, field_id)
            for d, kind in ((dto, rel_type), (back, back_type)):
                d["settings"] = {"relationType": kind}
                if kind == "MANY_TO_ONE":
                    d["settings"].update(
                        {"joinColumnName": f"{d['name']}Id", "onDelete": "SET_NULL"}
                    )
            dtos.append(back)
        with self.transaction():
            for d in dtos:
                self._insert_field(d)
        self._schema = self._load_schema()
        return dto

    # ------------------------------------------------------------------ records: helpers

    def _row(
        self, obj: ObjectSchema, record_id: str, *, with_deleted: bool
    ) -> dict[str, Any] | None:
        sql = "SELECT data FROM records WHERE object = ? AND id = ?"
        if not with_deleted:
            sql += " AND deleted = 0"
        row = self.db.execute(sql, (obj.name_singular, record_id)).fetchone()
        return json.loads(row[0]) if row else None

    def _unique_values(self, obj: ObjectSchema, record: dict[str, Any]) -> list[tuple[str, str]]:
        out = []
        for field in obj.fields.values():
            if not field.is_unique or field.name == "id" or not field.is_active:
                continue
            value = record.get(field.name)
            sub = UNIQUE_SUBFIELD.get(field.type)
            if sub is not None:
                value = value.get(sub) if isinstance(value, dict) else None
            elif field.relation is not None and field.relation.join_column:
                value = record.get(field.relation.join_column)
            if value not in (None, ""):
                out.append((field.unique_path or field.name, json.dumps(value)))
        return out

    def _write_uniques(self, obj: ObjectSchema, record: dict[str, Any]) -> None:
        self.db.execute(
            "DELETE FROM uniques WHERE object = ? AND record_id = ?",
            (obj.name_singular, record["id"]),
        )
        for path, value in self._unique_values(obj, record):
            try:
                self.db.execute(
                    "INSERT INTO uniques VALUES (?, ?, ?, ?)",
                    (obj.name_singular, path, value, record["id"]),
                )
            except sqlite3.IntegrityError:
                other = self.db.execute(
                    "SELECT record_id FROM uniques WHERE object = ? AND path = ? AND value = ?",
                    (obj.name_singular, path, value),
                ).fetchone()
                raise DuplicateEntry(other[0] if other else None, obj.name_singular) from None

    def _store(self, obj: ObjectSchema, record: dict[str, Any], *, insert: bool) -> None:
        data = json.dumps(record)
        deleted = 1 if record.get("deletedAt") else 0
        if insert:
            try:
                self.db.execute(
                    "INSERT INTO records (object, id, data, deleted) VALUES (?,?,?,?)",
                    (obj.name_singular, record["id"], data, deleted),
                )
            except sqlite3.IntegrityError:
                raise DuplicateEntry(record["id"], obj.name_singular) from None
        else:
            self.db.execute(
                "UPDATE records SET data = ?, deleted = ? WHERE object = ? AND id = ?",
                (data, deleted, obj.name_singular, record["id"]),
            )
        self._write_uniques(obj, record)

    def _next_position(self, obj: ObjectSchema) -> float:
        name = obj.name_singular
        if name not in self._positions:
            row = self.db.execute(
                "SELECT MAX(json_extract(data, '$.position')) FROM records WHERE object = ?",
                (name,),
            ).fetchone()
            self._positions[name] = float(row[0] or 0)
        self._positions[name] += 1
        return self._positions[name]

    def prepare(self, obj: ObjectSchema, data: Any, *, for_create: bool) -> dict[str, Any]:
        """Validate one input record; return its normalized values by field or join column."""
        if not isinstance(data, dict):
            raise InvalidArgs("Each record must be a JSON object")
        out: dict[str, Any] = {}
        for key, value in data.items():
            field = obj.field(key)
            if field is None or not field.is_active:
                raise InvalidArgs(f'Object {obj.name_singular} doesn\'t have any "{key}" field.')
            if field.relation is not None:
                if field.relation.type == "ONE_TO_MANY":
                    raise InvalidArgs(
                        f"One-to-many relation {field.name} field does not support "
                        "write operations."
                    )
                if key == field.name:
                    raise InvalidArgs(
                        f"Relation field {field.name} is written through its join column "
                        f"{field.relation.join_column}"
                    )
                out[key] = None if value is None else check_uuid(value)
                continue
            if field.name in ("updatedAt", "deletedAt", "updatedBy", "searchVector") or (
                field.is_system and field.name not in SYSTEM_WRITABLE
            ):
                if field.type in ("TS_VECTOR", "RICH_TEXT"):
                    raise InvalidArgs(f"Field {field.name} does not support write operations.")
                continue  # server-managed: ignored like Twenty does
            if field.name == "id":
                if not for_create:
                    continue
                out["id"] = check_uuid(value)
                continue
            stored = coerce(field, value)
            if stored is None and not field.is_nullable and (for_create or key in data):
                if _default_value(field) is None:
                    raise InvalidArgs(
                        f"Field {field.name} is not nullable and has no default value."
                    )
                stored = _default_value(field)
            out[key] = stored
        return out

    def _check_foreign_keys(self, obj: ObjectSchema, prepared: list[dict[str, Any]]) -> None:
        for field in obj.fields.values():
            rel = field.relation
            if rel is None or rel.join_column is None:
                continue
            wanted = {p[rel.join_column] for p in prepared if p.get(rel.join_column)}
            if not wanted:
                continue
            marks = ",".join("?" * len(wanted))
            found = {
                r[0]
                for r in self.db.execute(
                    f"SELECT id FROM records WHERE object = ? AND id IN ({marks})",
                    (rel.target_object, *wanted),
                )
            }
            missing = sorted(wanted - found)
            if missing:
                raise InvalidArgs(
                    f"Foreign key violation on {rel.join_column}: no {rel.target_object} "
                    f"with id {missing[0]}"
                )

    def _new_record(
        self, obj: ObjectSchema, values: dict[str, Any], actor: dict[str, Any]
    ) -> dict[str, Any]:
        now = self.clock()
        record: dict[str, Any] = {
            "id": values.get("id") or str(uuid.uuid4()),
            "createdAt": values.get("createdAt") or now,
            "updatedAt": now,
            "deletedAt": None,
            "position": values.get("position", self._next_position(obj)),
            "createdBy": {**actor, **(values.get("createdBy") or {})},
            "updatedBy": dict(actor),
        }
        for field in obj.fields.values():
            if not field.is_active or field.name in record or field.type == "TS_VECTOR":
                continue
            if field.relation is not None:
                if field.relation.join_column:
                    record[field.relation.join_column] = values.get(field.relation.join_column)
                continue
            if field.subfields:
                record[field.name] = {**_default_value(field), **(values.get(field.name) or {})}
            else:
                record[field.name] = values.get(field.name, _default_value(field))
        return record

    def present(self, obj: ObjectSchema, record: dict[str, Any], depth: int = 0) -> dict[str, Any]:
        """The record as Twenty answers it: every field, defaults for fields added later."""
        out: dict[str, Any] = {}
        for field in obj.fields.values():
            if not field.is_active or field.type == "TS_VECTOR":
                continue
            rel = field.relation
            if rel is not None:
                if rel.join_column:
                    out[rel.join_column] = record.get(rel.join_column)
                    if depth > 0:
                        target = self._schema.object(rel.target_object)
                        linked = (
                            self._row(target, record[rel.join_column], with_deleted=False)
                            if target and record.get(rel.join_column)
                            else None
                        )
                        out[field.name] = (
                            self.present(target, linked) if target and linked else None
                        )
                elif depth > 0 and rel.target_field:
                    target = self._schema.object(rel.target_object)
                    back = target.fields.get(rel.target_field) if target else None
                    if target and back and back.relation and back.relation.join_column:
                        rows = self.db.execute(
                            "SELECT data FROM records WHERE object = ? AND deleted = 0 AND "
                            f"json_extract(data, '$.{back.relation.join_column}') = ? ORDER BY id",
                            (target.name_singular, record["id"]),
                        )
                        out[field.name] = [self.present(target, json.loads(r[0])) for r in rows]
                continue
            if field.name in record:
                value = record[field.name]
                if field.subfields and isinstance(value, dict):
                    value = {**composite_default(field.type), **value}
                out[field.name] = value
            else:
                out[field.name] = _default_value(field)
        return out

    # ------------------------------------------------------------------ records: writes

    def create_many(
        self,
        obj: ObjectSchema,
        inputs: Any,
        *,
        upsert: bool,
        actor: dict[str, Any],
        id_conflict_message: str | None = None,
    ) -> list[dict[str, Any]]:
        """Create (or upsert) records; answer them in input order (twenty-api.md §2.4, §4)."""
        if not isinstance(inputs, list):
            raise InvalidArgs("Body must be an array")
        if not inputs:
            raise InvalidArgs("Input must not be empty")
        if len(inputs) > self.max_records:
            raise InvalidArgs(f"Maximum number of records to upsert is {self.max_records}.")
        prepared = [self.prepare(obj, item, for_create=True) for item in inputs]
        self._check_foreign_keys(obj, prepared)
        with self._lock:
            matches = self._match_existing(obj, prepared) if upsert else [None] * len(prepared)
            result_ids: list[str] = []
            updates = [
                (i, p, m)
                for i, (p, m) in enumerate(zip(prepared, matches, strict=True))
                if m is not None
            ]
            inserts = [
                (i, p) for i, (p, m) in enumerate(zip(prepared, matches, strict=True)) if m is None
            ]
            ids: dict[int, str] = {}
            # Updates first, then one insert: an upsert batch can be partly applied (§4.8).
            if updates:
                with self.transaction():
                    for i, values, existing in updates:
                        record = self._apply_update(obj, existing, values, actor, restore=True)
                        ids[i] = record["id"]
            if inserts:
                with self.transaction():
                    for i, values in inserts:
                        if (
                            not upsert
                            and values.get("id")
                            and id_conflict_message
                            and self._row(obj, values["id"], with_deleted=True)
                        ):
                            raise InvalidArgs(id_conflict_message)
                        record = self._new_record(obj, values, actor)
                        self._store(obj, record, insert=True)
                        ids[i] = record["id"]
            result_ids = [ids[i] for i in range(len(prepared))]
        return [
            self.present(obj, self._row(obj, rid, with_deleted=True) or {}) for rid in result_ids
        ]

    def _match_existing(
        self, obj: ObjectSchema, prepared: list[dict[str, Any]]
    ) -> list[dict[str, Any] | None]:
        """Per input row, the existing record (deleted ones included) its keys point at."""
        out: list[dict[str, Any] | None] = []
        for values in prepared:
            found: dict[str, dict[str, Any]] = {}
            if values.get("id"):
                row = self._row(obj, values["id"], with_deleted=True)
                if row is not None:
                    found[row["id"]] = row
            probe = {k: v for k, v in values.items()}
            for path, value in self._unique_values(obj, probe):
                hit = self.db.execute(
                    "SELECT record_id FROM uniques WHERE object = ? AND path = ? AND value = ?",
                    (obj.name_singular, path, value),
                ).fetchone()
                if hit is not None and hit[0] not in found:
                    row = self._row(obj, hit[0], with_deleted=True)
                    if row is not None:
                        found[row["id"]] = row
            if len(found) > 1:
                paths = ", ".join(["id", *[p for p, _ in self._unique_values(obj, probe)]])
                raise InvalidArgs(
                    f"Multiple records found with the same unique field values for {paths}. "
                    "Cannot determine which record to update."
                )
            out.append(next(iter(found.values()), None))
        return out

    def _apply_update(
        self,
        obj: ObjectSchema,
        existing: dict[str, Any],
        values: dict[str, Any],
        actor: dict[str, Any],
        *,
        restore: bool = False,
    ) -> dict[str, Any]:
        record = dict(existing)
        for key, value in values.items():
            if key in ("id", "createdBy"):
                continue  # the original creator stays (twenty-api.md §4.4)
            field = obj.fields.get(key)
            if field is not None and field.subfields and isinstance(value, dict):
                record[key] = {**(record.get(key) or composite_default(field.type)), **value}
            else:
                record[key] = value
        record["updatedAt"] = self.clock()
        record["updatedBy"] = dict(actor)
        if restore:
            record["deletedAt"] = None
        self._store(obj, record, insert=False)
        return record

    def update_one(
        self, obj: ObjectSchema, record_id: str, data: Any, actor: dict[str, Any]
    ) -> dict[str, Any]:
        """PATCH one record; 404 if it does not exist (or is deleted)."""
        check_uuid(record_id)
        values = self.prepare(obj, data, for_create=False)
        self._check_foreign_keys(obj, [values])
        with self.transaction():
            existing = self._row(obj, record_id, with_deleted=False)
            if existing is None:
                raise NotFound("Record not found")
            record = self._apply_update(obj, existing, values, actor)
        return self.present(obj, record)

    def update_many(
        self, obj: ObjectSchema, flt: Filter, data: Any, actor: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """PATCH every record matching ``flt`` (at most ``max_records`` of them)."""
        values = self.prepare(obj, data, for_create=False)
        self._check_foreign_keys(obj, [values])
        with self.transaction():
            rows = self._select(obj, flt)
            if len(rows) > self.max_records:
                raise InvalidArgs(f"Cannot update more than {self.max_records} records at once")
            out = [self._apply_update(obj, r, values, actor) for r in rows]
        return [self.present(obj, r) for r in out]

    def delete(self, obj: ObjectSchema, flt: Filter, *, soft: bool) -> list[dict[str, Any]]:
        """Soft-delete (set deletedAt) or destroy the records matching ``flt``."""
        with self.transaction():
            rows = self._select(obj, flt)
            for row in rows:
                if soft:
                    row["deletedAt"] = self.clock()
                    self._store(obj, row, insert=False)
                else:
                    self._destroy(obj, row["id"])
        return [self.present(obj, r) for r in rows]

    def _destroy(self, obj: ObjectSchema, record_id: str) -> None:
        self.db.execute(
            "DELETE FROM records WHERE object = ? AND id = ?", (obj.name_singular, record_id)
        )
        self.db.execute(
            "DELETE FROM uniques WHERE object = ? AND record_id = ?", (obj.name_singular, record_id)
        )
        # MANY_TO_ONE relations pointing here are set to null (onDelete SET_NULL).
        for other in self._schema.objects:
            for field in other.fields.values():
                rel = field.relation
                if rel and rel.join_column and rel.target_object == obj.name_singular:
                    path = f"$.{rel.join_column}"
                    self.db.execute(
                        f"UPDATE records SET data = json_set(data, '{path}', NULL) "
                        f"WHERE object = ? AND json_extract(data, '{path}') = ?",
                        (other.name_singular, record_id),
                    )

    def restore(self, obj: ObjectSchema, flt: Filter) -> list[dict[str, Any]]:
        """Clear deletedAt on the deleted records matching ``flt``."""
        with self.transaction():
            rows = self._select(obj, {"and": [flt, {"deletedAt": {"is": "NOT_NULL"}}]})
            for row in rows:
                row["deletedAt"] = None
                self._store(obj, row, insert=False)
        return [self.present(obj, r) for r in rows]

    # ------------------------------------------------------------------ records: reads

    def _where(self, obj: ObjectSchema, flt: Filter | None, params: list[Any]) -> str:
        params.append(obj.name_singular)
        where = "object = ?"
        if not mentions_deleted_at(flt):
            where += " AND deleted = 0"
        return f"{where} AND {compile_filter(obj, flt, params)}"

    def _select(self, obj: ObjectSchema, flt: Filter | None) -> list[dict[str, Any]]:
        params: list[Any] = []
        where = self._where(obj, flt, params)
        return [
            json.loads(r[0])
            for r in self.db.execute(f"SELECT data FROM records WHERE {where} ORDER BY id", params)
        ]

    def find_one(self, obj: ObjectSchema, record_id: str, depth: int = 0) -> dict[str, Any]:
        """GET one record; 404 if absent or deleted."""
        check_uuid(record_id)
        row = self._row(obj, record_id, with_deleted=False)
        if row is None:
            raise NotFound("Record not found")
        return self.present(obj, row, depth)

    def find_first(self, obj: ObjectSchema, flt: Filter, depth: int = 0) -> dict[str, Any] | None:
        """The first record matching ``flt`` (GraphQL findOne)."""
        rows = self._select(obj, flt)
        return self.present(obj, rows[0], depth) if rows else None

    def find_many(
        self,
        obj: ObjectSchema,
        flt: Filter | None = None,
        order: OrderBy | None = None,
        *,
        limit: int = 60,
        after: str | None = None,
        before: str | None = None,
        depth: int = 0,
    ) -> PageResult:
        """One page of records, with totalCount and cursors (twenty-api.md §2.2-2.3)."""
        order = list(order or [])
        params: list[Any] = []
        where = self._where(obj, flt, params)
        total = int(
            self.db.execute(f"SELECT COUNT(*) FROM records WHERE {where}", params).fetchone()[0]
        )
        cursor = decode_cursor(after or before or "") if (after or before) else None
        if not order:
            # Fast path: Twenty's implicit order is the id tiebreaker.
            page_params = list(params)
            sql = f"SELECT data FROM records WHERE {where}"
            if cursor is not None:
                sql += " AND id > ?" if after else " AND id < ?"
                page_params.append(cursor["id"])
            sql += " ORDER BY id " + ("DESC" if before else "ASC") + " LIMIT ?"
            page_params.append(limit + 1)
            rows = [json.loads(r[0]) for r in self.db.execute(sql, page_params)]
            more = len(rows) > limit
            rows = rows[:limit]
            if before:
                rows.reverse()
        else:
            rows = sort_records(
                [
                    json.loads(r[0])
                    for r in self.db.execute(f"SELECT data FROM records WHERE {where}", params)
                ],
                order,
            )
            if cursor is not None:
                marker = cursor_record(cursor)
                placed = sort_records(
                    [marker, *[r for r in rows if r["id"] != cursor["id"]]], order
                )
                index = next(i for i, r in enumerate(placed) if r is marker)
                rest = [r for r in placed if r is not marker]
                rows = rest[index:] if after else rest[:index]
            if before:
                more = len(rows) > limit
                rows = rows[-limit:] if limit else []
            else:
                more = len(rows) > limit
                rows = rows[:limit]
        has_next = more if not before else cursor is not None
        has_previous = (cursor is not None) if not before else more
        return PageResult(
            records=[self.present(obj, r, depth) for r in rows],
            total_count=total,
            has_next_page=has_next,
            has_previous_page=has_previous,
            start_cursor=encode_cursor(rows[0], order) if rows else None,
            end_cursor=encode_cursor(rows[-1], order) if rows else None,
        )

    def count_records(self, obj: ObjectSchema, *, with_deleted: bool = False) -> int:
        """How many records an object holds (tests and the serve banner)."""
        sql = "SELECT COUNT(*) FROM records WHERE object = ?" + (
            "" if with_deleted else " AND deleted = 0"
        )
        return int(self.db.execute(sql, (obj.name_singular,)).fetchone()[0])


__all__ = ["COMPOSITE_SUBFIELDS", "Engine", "PageResult", "metadata_id"]
