"""The sandbox workspace behind both faces: one SQLite file, its metadata, records and keys.

:class:`Engine` is what the app, the GraphQL resolvers and the tests hold; it ties
together the database (:mod:`.database`), the metadata (:mod:`.metadata`), the record
runners (:mod:`.records`) and the API keys (:mod:`.api_keys`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.sandbox.api_keys import ApiKey, ApiKeyStore
from pipeline.sandbox.database import Database, utc_now
from pipeline.sandbox.filters import Filter
from pipeline.sandbox.metadata import MetadataStore
from pipeline.sandbox.model import ObjectModel, WorkspaceModel
from pipeline.sandbox.pagination import OrderBy, PageResult
from pipeline.sandbox.record_input import prepare
from pipeline.sandbox.records import Record, RecordStore


class Engine:
    """The workspace: one SQLite file (WAL), safe to share between the app's handlers."""

    def __init__(
        self, path: str | Path, *, max_records: int = 200, clock: Callable[[], str] = utc_now
    ) -> None:
        self.database = Database(path, clock=clock)
        self.metadata = MetadataStore(self.database)
        self.records = RecordStore(self.database, self.metadata, max_records=max_records)
        self.api_keys = ApiKeyStore(self.database)
        self.workspace_id = self.database.workspace_value("id")

    @property
    def path(self) -> Path:
        """The workspace file."""
        return self.database.path

    @property
    def db(self) -> sqlite3.Connection:
        """The SQLite connection (tests read the tables directly)."""
        return self.database.db

    @property
    def clock(self) -> Callable[[], str]:
        """What stamps createdAt / updatedAt / deletedAt; tests set a fixed one."""
        return self.database.clock

    @clock.setter
    def clock(self, clock: Callable[[], str]) -> None:
        self.database.clock = clock

    @property
    def max_records(self) -> int:
        """The most records one call may create, update or upsert (QUERY_MAX_RECORDS)."""
        return self.records.max_records

    def close(self) -> None:
        """Close the database."""
        self.database.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; rolled back on any error."""
        with self.database.transaction():
            yield

    # ------------------------------------------------------------------ api keys

    def ensure_api_key(self, token: str | None = None, name: str = "sandbox") -> str:
        """A usable key: ``token`` (stored if new), else the first live key, else a new one."""
        return self.api_keys.ensure(token, name)

    def add_api_key(
        self,
        token: str,
        *,
        name: str = "key",
        expires_at: str | None = None,
        revoked_at: str | None = None,
    ) -> None:
        """Store a key with an expiry or revocation (tests of the auth answers)."""
        self.api_keys.add(token, name=name, expires_at=expires_at, revoked_at=revoked_at)

    def find_api_key(self, token: str) -> ApiKey | None:
        """The stored key whose token is ``token``."""
        return self.api_keys.find(token)

    # ------------------------------------------------------------------ metadata

    @property
    def schema(self) -> WorkspaceModel:
        """The workspace model (a new object after every metadata change)."""
        return self.metadata.model

    def reload_metadata(self) -> WorkspaceModel:
        """Rebuild the model after the metadata tables were edited directly (tests do)."""
        self.metadata.model = self.metadata.load_model()
        return self.metadata.model

    def object(self, name: str) -> ObjectModel:
        """The object named ``name`` (singular or plural); 400 for an unknown one."""
        return self.metadata.object(name)

    def object_by_plural(self, plural: str) -> ObjectModel | None:
        """The object whose namePlural is exactly ``plural`` (REST routing)."""
        return self.metadata.object_by_plural(plural)

    def object_dtos(self, *, with_fields: bool) -> list[dict[str, Any]]:
        """Every object DTO, optionally with its ``fields`` embedded."""
        return self.metadata.object_dtos(with_fields=with_fields)

    def field_dtos(self) -> list[dict[str, Any]]:
        """Every field DTO of the workspace, ordered by id."""
        return self.metadata.field_dtos()

    def object_dtos_by_id(self, object_id: str) -> dict[str, Any]:
        """One object DTO with its fields; 404 when absent."""
        return self.metadata.object_dto_by_id(object_id)

    def field_dto_by_id(self, field_id: str) -> dict[str, Any]:
        """One field DTO; 404 when absent."""
        return self.metadata.field_dto_by_id(field_id)

    def create_object(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create a custom object (with the system fields and a ``name`` text field)."""
        return self.metadata.create_object(data)

    def create_field(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create a custom field (CreateFieldInput); every problem reported at once."""
        return self.metadata.create_field(data)

    def update_field(self, field_id: str, update: dict[str, Any]) -> dict[str, Any]:
        """Change a field's options or labels (UpdateOneField); every problem at once."""
        return self.metadata.update_field(field_id, update)

    # ------------------------------------------------------------------ records

    def prepare(self, obj: ObjectModel, data: Any, *, for_create: bool) -> Record:
        """Validate one input record; return its normalized values."""
        return prepare(obj, data, for_create=for_create)

    def present(self, obj: ObjectModel, record: Record, depth: int = 0) -> Record:
        """The record as Twenty answers it."""
        return self.records.present(obj, record, depth)

    def create_many(
        self,
        obj: ObjectModel,
        inputs: Any,
        *,
        upsert: bool,
        actor: Record,
        id_conflict_message: str | None = None,
    ) -> list[Record]:
        """Create (or upsert) records; answer them in input order."""
        return self.records.create_many(
            obj, inputs, upsert=upsert, actor=actor, id_conflict_message=id_conflict_message
        )

    def update_one(self, obj: ObjectModel, record_id: str, data: Any, actor: Record) -> Record:
        """PATCH one record; 404 if it does not exist (or is deleted)."""
        return self.records.update_one(obj, record_id, data, actor)

    def update_many(self, obj: ObjectModel, flt: Filter, data: Any, actor: Record) -> list[Record]:
        """PATCH every record matching ``flt``."""
        return self.records.update_many(obj, flt, data, actor)

    def delete(self, obj: ObjectModel, flt: Filter, *, soft: bool) -> list[Record]:
        """Soft-delete or destroy the records matching ``flt``."""
        return self.records.delete(obj, flt, soft=soft)

    def restore(self, obj: ObjectModel, flt: Filter) -> list[Record]:
        """Clear deletedAt on the deleted records matching ``flt``."""
        return self.records.restore(obj, flt)

    def find_one(self, obj: ObjectModel, record_id: str, depth: int = 0) -> Record:
        """GET one record; 404 if absent or deleted."""
        return self.records.find_one(obj, record_id, depth)

    def find_first(self, obj: ObjectModel, flt: Filter, depth: int = 0) -> Record | None:
        """The first record matching ``flt`` (GraphQL findOne)."""
        return self.records.find_first(obj, flt, depth)

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
        """One page of records, with totalCount and cursors."""
        return self.records.find_many(
            obj, flt, order, limit=limit, after=after, before=before, depth=depth
        )

    def count_records(self, obj: ObjectModel, *, with_deleted: bool = False) -> int:
        """How many records an object holds (tests and the serve banner)."""
        return self.records.count_records(obj, with_deleted=with_deleted)


__all__ = ["Engine", "PageResult"]
