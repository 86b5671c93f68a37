"""The SQLite file behind one sandbox workspace: tables, write transactions, the clock.

One file in WAL mode, shared by the app's handlers; writes go through
:meth:`Database.transaction` under one lock, as the handlers may run on several threads.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pipeline.sandbox.values import iso

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


def utc_now() -> str:
    """The current time as Twenty writes DATE_TIME values."""
    return iso(datetime.now(UTC))


class Database:
    """The connection, its write lock, and the clock that stamps createdAt / updatedAt."""

    def __init__(self, path: str | Path, *, clock: Callable[[], str] = utc_now) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.lock = threading.RLock()
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA case_sensitive_like=ON")
        self.db.executescript(SCHEMA_SQL)

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; rolled back on any error."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def workspace_value(self, key: str) -> str | None:
        """A value of the workspace table (its id), None before the seed."""
        row = self.db.execute("SELECT value FROM workspace WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])
