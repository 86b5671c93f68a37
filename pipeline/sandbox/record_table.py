"""The records table of a workspace: rows, unique-key index, positions, foreign keys.

Records are JSON in one table; the ``uniques`` table indexes every unique path
(``emails.primaryEmail``) so a duplicate is refused as Twenty's unique index refuses
it, and so upserts find their match (twenty-api.md §4).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from pipeline.sandbox.database import Database
from pipeline.sandbox.errors import DuplicateEntry, InvalidArgs
from pipeline.sandbox.filters import Filter, compile_filter, mentions_deleted_at
from pipeline.sandbox.metadata import MetadataStore
from pipeline.sandbox.model import ObjectModel


class RecordTable:
    """Reads and writes of stored rows; callers hold the transaction."""

    def __init__(self, database: Database, metadata: MetadataStore) -> None:
        self.database = database
        self.metadata = metadata
        self._positions: dict[str, float] = {}

    def row(self, obj: ObjectModel, record_id: str, *, with_deleted: bool) -> dict[str, Any] | None:
        """The stored record ``record_id`` of ``obj``; soft-deleted ones only ``with_deleted``."""
        sql = "SELECT data FROM records WHERE object = ? AND id = ?"
        if not with_deleted:
            sql += " AND deleted = 0"
        row = self.database.db.execute(sql, (obj.name_singular, record_id)).fetchone()
        return json.loads(row[0]) if row else None

    def unique_values(self, obj: ObjectModel, record: dict[str, Any]) -> list[tuple[str, str]]:
        """(unique path, JSON value) of every unique field ``record`` fills (§4.1)."""
        out = []
        for field in obj.fields.values():
            if not field.is_unique or field.name == "id" or not field.is_active:
                continue
            value = record.get(field.name)
            sub = field.composite.upsert_key if field.composite is not None else None
            if sub is not None:
                value = value.get(sub) if isinstance(value, dict) else None
            elif field.relation is not None and field.relation.join_column:
                value = record.get(field.relation.join_column)
            if value not in (None, ""):
                out.append((field.unique_path or field.name, json.dumps(value)))
        return out

    def _write_uniques(self, obj: ObjectModel, record: dict[str, Any]) -> None:
        self.database.db.execute(
            "DELETE FROM uniques WHERE object = ? AND record_id = ?",
            (obj.name_singular, record["id"]),
        )
        for path, value in self.unique_values(obj, record):
            try:
                self.database.db.execute(
                    "INSERT INTO uniques VALUES (?, ?, ?, ?)",
                    (obj.name_singular, path, value, record["id"]),
                )
            except sqlite3.IntegrityError:
                other = self.database.db.execute(
                    "SELECT record_id FROM uniques WHERE object = ? AND path = ? AND value = ?",
                    (obj.name_singular, path, value),
                ).fetchone()
                raise DuplicateEntry(other[0] if other else None, obj.name_singular) from None

    def store(self, obj: ObjectModel, record: dict[str, Any], *, insert: bool) -> None:
        """Insert or rewrite ``record`` and its unique-index entries; a clash is a duplicate."""
        data = json.dumps(record)
        deleted = 1 if record.get("deletedAt") else 0
        if insert:
            try:
                self.database.db.execute(
                    "INSERT INTO records (object, id, data, deleted) VALUES (?,?,?,?)",
                    (obj.name_singular, record["id"], data, deleted),
                )
            except sqlite3.IntegrityError:
                raise DuplicateEntry(record["id"], obj.name_singular) from None
        else:
            self.database.db.execute(
                "UPDATE records SET data = ?, deleted = ? WHERE object = ? AND id = ?",
                (data, deleted, obj.name_singular, record["id"]),
            )
        self._write_uniques(obj, record)

    def next_position(self, obj: ObjectModel) -> float:
        """The position a new record gets when the input has none (back-filled, §6)."""
        name = obj.name_singular
        if name not in self._positions:
            row = self.database.db.execute(
                "SELECT MAX(json_extract(data, '$.position')) FROM records WHERE object = ?",
                (name,),
            ).fetchone()
            self._positions[name] = float(row[0] or 0)
        self._positions[name] += 1
        return self._positions[name]

    def check_foreign_keys(self, obj: ObjectModel, prepared: list[dict[str, Any]]) -> None:
        """Refuse join-column values that point at no record of the target object."""
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
                for r in self.database.db.execute(
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

    def destroy(self, obj: ObjectModel, record_id: str) -> None:
        """Remove a record for good; MANY_TO_ONE links to it become null (SET_NULL)."""
        self.database.db.execute(
            "DELETE FROM records WHERE object = ? AND id = ?", (obj.name_singular, record_id)
        )
        self.database.db.execute(
            "DELETE FROM uniques WHERE object = ? AND record_id = ?", (obj.name_singular, record_id)
        )
        # MANY_TO_ONE relations pointing here are set to null (onDelete SET_NULL).
        for other in self.metadata.model.objects:
            for field in other.fields.values():
                rel = field.relation
                if rel and rel.join_column and rel.target_object == obj.name_singular:
                    path = f"$.{rel.join_column}"
                    self.database.db.execute(
                        f"UPDATE records SET data = json_set(data, '{path}', NULL) "
                        f"WHERE object = ? AND json_extract(data, '{path}') = ?",
                        (other.name_singular, record_id),
                    )

    def where(self, obj: ObjectModel, flt: Filter | None, params: list[Any]) -> str:
        """The SQL condition of ``flt``; soft-deleted rows only when it names deletedAt."""
        params.append(obj.name_singular)
        where = "object = ?"
        if not mentions_deleted_at(flt):
            where += " AND deleted = 0"
        return f"{where} AND {compile_filter(obj, flt, params)}"

    def select(self, obj: ObjectModel, flt: Filter | None) -> list[dict[str, Any]]:
        """Every row matching ``flt``, ordered by id."""
        params: list[Any] = []
        where = self.where(obj, flt, params)
        sql = f"SELECT data FROM records WHERE {where} ORDER BY id"
        return [json.loads(r[0]) for r in self.database.db.execute(sql, params)]

    def rows(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        """The records a ``SELECT data ...`` query returns."""
        return [json.loads(r[0]) for r in self.database.db.execute(sql, params)]

    def count(self, where: str, params: list[Any]) -> int:
        """How many rows match a condition built by :meth:`where`."""
        sql = f"SELECT COUNT(*) FROM records WHERE {where}"
        return int(self.database.db.execute(sql, params).fetchone()[0])

    def find_unique(self, obj: ObjectModel, path: str, value: str) -> str | None:
        """The id of the record holding ``value`` at unique ``path`` (deleted ones too)."""
        hit = self.database.db.execute(
            "SELECT record_id FROM uniques WHERE object = ? AND path = ? AND value = ?",
            (obj.name_singular, path, value),
        ).fetchone()
        return None if hit is None else str(hit[0])
