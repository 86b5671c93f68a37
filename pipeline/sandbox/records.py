"""The common query runners over records: create / upsert, update, delete, restore, find.

Both faces (REST and GraphQL) call these, as Twenty's REST and GraphQL layers both
call its "common query runners" (twenty-api.md §2.7), so they validate, limit and
answer alike.
"""

from __future__ import annotations

import uuid
from typing import Any

from pipeline.sandbox.database import Database
from pipeline.sandbox.errors import InvalidArgs, NotFound
from pipeline.sandbox.filters import Filter
from pipeline.sandbox.metadata import MetadataStore
from pipeline.sandbox.model import FieldModel, ObjectModel
from pipeline.sandbox.pagination import OrderBy, PageResult, decode_cursor, page_of, sorted_page
from pipeline.sandbox.record_input import default_value, prepare
from pipeline.sandbox.record_table import RecordTable
from pipeline.sandbox.values import check_uuid, composite_default

Record = dict[str, Any]


class RecordStore:
    """Record reads and writes of one workspace, checked against its current model."""

    def __init__(self, database: Database, metadata: MetadataStore, *, max_records: int) -> None:
        self.database = database
        self.metadata = metadata
        self.table = RecordTable(database, metadata)
        self.max_records = max_records

    # ------------------------------------------------------------------ answers

    def present(self, obj: ObjectModel, record: Record, depth: int = 0) -> Record:
        """The record as Twenty answers it: every field, defaults for fields added later."""
        out: Record = {}
        for field in obj.fields.values():
            if not field.is_active or field.type == "TS_VECTOR":
                continue
            if field.relation is not None:
                self._present_relation(field, record, depth, out)
            elif field.name in record:
                value = record[field.name]
                if field.subfields and isinstance(value, dict):
                    value = {**composite_default(field.type), **value}
                out[field.name] = value
            else:
                out[field.name] = default_value(field)
        return out

    def _present_relation(self, field: FieldModel, record: Record, depth: int, out: Record) -> None:
        """The join column, and with ``depth`` 1 the linked record(s) of one relation."""
        rel = field.relation
        assert rel is not None
        target = self.metadata.model.object(rel.target_object) if depth > 0 else None
        if rel.join_column:
            out[rel.join_column] = record.get(rel.join_column)
            if depth > 0:
                linked = (
                    self.table.row(target, record[rel.join_column], with_deleted=False)
                    if target and record.get(rel.join_column)
                    else None
                )
                out[field.name] = self.present(target, linked) if target and linked else None
        elif depth > 0 and rel.target_field:
            back = target.fields.get(rel.target_field) if target else None
            if target and back and back.relation and back.relation.join_column:
                rows = self.table.rows(
                    "SELECT data FROM records WHERE object = ? AND deleted = 0 AND "
                    f"json_extract(data, '$.{back.relation.join_column}') = ? ORDER BY id",
                    [target.name_singular, record["id"]],
                )
                out[field.name] = [self.present(target, r) for r in rows]

    # ------------------------------------------------------------------ writes

    def create_many(
        self,
        obj: ObjectModel,
        inputs: Any,
        *,
        upsert: bool,
        actor: Record,
        id_conflict_message: str | None = None,
    ) -> list[Record]:
        """Create (or upsert) records; answer them in input order (twenty-api.md §2.4, §4)."""
        if not isinstance(inputs, list):
            raise InvalidArgs("Body must be an array")
        if not inputs:
            raise InvalidArgs("Input must not be empty")
        if len(inputs) > self.max_records:
            raise InvalidArgs(f"Maximum number of records to upsert is {self.max_records}.")
        prepared = [prepare(obj, item, for_create=True) for item in inputs]
        self.table.check_foreign_keys(obj, prepared)
        with self.database.lock:
            matches = self._match_existing(obj, prepared) if upsert else [None] * len(prepared)
            pairs = list(enumerate(zip(prepared, matches, strict=True)))
            updates = [(i, p, m) for i, (p, m) in pairs if m is not None]
            inserts = [(i, p) for i, (p, m) in pairs if m is None]
            ids: dict[int, str] = {}
            # Updates first, then one insert: an upsert batch can be partly applied (§4.8).
            if updates:
                with self.database.transaction():
                    for i, values, existing in updates:
                        record = self._apply_update(obj, existing, values, actor, restore=True)
                        ids[i] = record["id"]
            if inserts:
                with self.database.transaction():
                    for i, values in inserts:
                        ids[i] = self._insert(obj, values, actor, upsert, id_conflict_message)
            result_ids = [ids[i] for i in range(len(prepared))]
        return [
            self.present(obj, self.table.row(obj, rid, with_deleted=True) or {})
            for rid in result_ids
        ]

    def _insert(
        self,
        obj: ObjectModel,
        values: Record,
        actor: Record,
        upsert: bool,
        id_conflict_message: str | None,
    ) -> str:
        """Insert one new record; the legacy REST face refuses a known id with its message."""
        if (
            not upsert
            and values.get("id")
            and id_conflict_message
            and self.table.row(obj, values["id"], with_deleted=True)
        ):
            raise InvalidArgs(id_conflict_message)
        record = self._new_record(obj, values, actor)
        self.table.store(obj, record, insert=True)
        return str(record["id"])

    def _new_record(self, obj: ObjectModel, values: Record, actor: Record) -> Record:
        now = self.database.clock()
        record: Record = {
            "id": values.get("id") or str(uuid.uuid4()),
            "createdAt": values.get("createdAt") or now,
            "updatedAt": now,
            "deletedAt": None,
            "position": values.get("position", self.table.next_position(obj)),
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
                record[field.name] = {**default_value(field), **(values.get(field.name) or {})}
            else:
                record[field.name] = values.get(field.name, default_value(field))
        return record

    def _match_existing(self, obj: ObjectModel, prepared: list[Record]) -> list[Record | None]:
        """Per input row, the existing record (deleted ones included) its keys point at."""
        out: list[Record | None] = []
        for values in prepared:
            found: dict[str, Record] = {}
            if values.get("id"):
                row = self.table.row(obj, values["id"], with_deleted=True)
                if row is not None:
                    found[row["id"]] = row
            unique_values = self.table.unique_values(obj, values)
            for path, value in unique_values:
                hit = self.table.find_unique(obj, path, value)
                if hit is not None and hit not in found:
                    row = self.table.row(obj, hit, with_deleted=True)
                    if row is not None:
                        found[row["id"]] = row
            if len(found) > 1:
                paths = ", ".join(["id", *[p for p, _ in unique_values]])
                raise InvalidArgs(
                    f"Multiple records found with the same unique field values for {paths}. "
                    "Cannot determine which record to update."
                )
            out.append(next(iter(found.values()), None))
        return out

    def _apply_update(
        self,
        obj: ObjectModel,
        existing: Record,
        values: Record,
        actor: Record,
        *,
        restore: bool = False,
    ) -> Record:
        record = dict(existing)
        for key, value in values.items():
            if key in ("id", "createdBy"):
                continue  # the original creator stays (twenty-api.md §4.4)
            field = obj.fields.get(key)
            if field is not None and field.subfields and isinstance(value, dict):
                record[key] = {**(record.get(key) or composite_default(field.type)), **value}
            else:
                record[key] = value
        record["updatedAt"] = self.database.clock()
        record["updatedBy"] = dict(actor)
        if restore:
            record["deletedAt"] = None
        self.table.store(obj, record, insert=False)
        return record

    def update_one(self, obj: ObjectModel, record_id: str, data: Any, actor: Record) -> Record:
        """PATCH one record; 404 if it does not exist (or is deleted)."""
        check_uuid(record_id)
        values = prepare(obj, data, for_create=False)
        self.table.check_foreign_keys(obj, [values])
        with self.database.transaction():
            existing = self.table.row(obj, record_id, with_deleted=False)
            if existing is None:
                raise NotFound("Record not found")
            record = self._apply_update(obj, existing, values, actor)
        return self.present(obj, record)

    def update_many(self, obj: ObjectModel, flt: Filter, data: Any, actor: Record) -> list[Record]:
        """PATCH every record matching ``flt`` (at most ``max_records`` of them)."""
        values = prepare(obj, data, for_create=False)
        self.table.check_foreign_keys(obj, [values])
        with self.database.transaction():
            rows = self.table.select(obj, flt)
            if len(rows) > self.max_records:
                raise InvalidArgs(f"Cannot update more than {self.max_records} records at once")
            out = [self._apply_update(obj, r, values, actor) for r in rows]
        return [self.present(obj, r) for r in out]

    def delete(self, obj: ObjectModel, flt: Filter, *, soft: bool) -> list[Record]:
        """Soft-delete (set deletedAt) or destroy the records matching ``flt``."""
        with self.database.transaction():
            rows = self.table.select(obj, flt)
            for row in rows:
                if soft:
                    row["deletedAt"] = self.database.clock()
                    self.table.store(obj, row, insert=False)
                else:
                    self.table.destroy(obj, row["id"])
        return [self.present(obj, r) for r in rows]

    def restore(self, obj: ObjectModel, flt: Filter) -> list[Record]:
        """Clear deletedAt on the deleted records matching ``flt``."""
        with self.database.transaction():
            rows = self.table.select(obj, {"and": [flt, {"deletedAt": {"is": "NOT_NULL"}}]})
            for row in rows:
                row["deletedAt"] = None
                self.table.store(obj, row, insert=False)
        return [self.present(obj, r) for r in rows]

    # ------------------------------------------------------------------ reads

    def find_one(self, obj: ObjectModel, record_id: str, depth: int = 0) -> Record:
        """GET one record; 404 if absent or deleted."""
        check_uuid(record_id)
        row = self.table.row(obj, record_id, with_deleted=False)
        if row is None:
            raise NotFound("Record not found")
        return self.present(obj, row, depth)

    def find_first(self, obj: ObjectModel, flt: Filter, depth: int = 0) -> Record | None:
        """The first record matching ``flt`` (GraphQL findOne)."""
        rows = self.table.select(obj, flt)
        return self.present(obj, rows[0], depth) if rows else None

    def find_many(
        self,
        obj: ObjectModel,
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
        where = self.table.where(obj, flt, params)
        total = self.table.count(where, params)
        cursor = decode_cursor(after or before or "") if (after or before) else None
        by_id = not order or (
            len(order) == 1 and order[0][0] == "id" and order[0][1].startswith("Asc")
        )
        if by_id:  # Twenty's implicit order, or id asked for: the primary key's index
            rows, more = self._id_page(
                where, params, cursor, limit, after=bool(after), before=bool(before)
            )
            if before:
                rows.reverse()
        else:
            every = self.table.rows(f"SELECT data FROM records WHERE {where}", params)
            rows, more = sorted_page(
                every, order, cursor, limit, after=bool(after), before=bool(before)
            )
        return page_of(
            rows,
            [self.present(obj, r, depth) for r in rows],
            order=order,
            total=total,
            more=more,
            had_cursor=cursor is not None,
            before=bool(before),
        )

    def _id_page(
        self,
        where: str,
        params: list[Any],
        cursor: dict[str, Any] | None,
        limit: int,
        *,
        after: bool,
        before: bool,
    ) -> tuple[list[Record], bool]:
        """The fast path in Twenty's implicit order (id): one LIMIT query past the cursor."""
        page_params = list(params)
        sql = f"SELECT data FROM records WHERE {where}"
        if cursor is not None:
            sql += " AND id > ?" if after else " AND id < ?"
            page_params.append(cursor["id"])
        sql += " ORDER BY id " + ("DESC" if before else "ASC") + " LIMIT ?"
        page_params.append(limit + 1)
        rows = self.table.rows(sql, page_params)
        return rows[:limit], len(rows) > limit

    def count_records(self, obj: ObjectModel, *, with_deleted: bool = False) -> int:
        """How many records an object holds (tests and the serve banner)."""
        where = "object = ?" + ("" if with_deleted else " AND deleted = 0")
        return self.table.count(where, [obj.name_singular])
