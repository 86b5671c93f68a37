"""The checkpoint: one SQLite file per mapping, the truth about a run.

Write-ahead: a batch is marked ``sent`` (in its own transaction) before its call goes
out, and ``done`` in the same transaction that records the ids of its rows. WAL mode
and one transaction per state change make it safe against ``kill -9`` at any instant:
on resume, ``done`` batches are skipped and ``sent`` ones are sent again, which is safe
because every write is an upsert on a key or a derived id. The ledgers (success.csv,
rejects.csv) are written from this file, so they always agree with it.

It never holds the API key.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl

from pipeline.errors import PipelineError, Stage

SCHEMA_VERSION = "1"
Outcome = Literal["created", "updated", "restored", "unchanged", "rejected"]
BatchStatus = Literal["pending", "sent", "done", "resent"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY, first_row INTEGER NOT NULL, last_row INTEGER NOT NULL,
    size INTEGER NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    row INTEGER PRIMARY KEY, batch INTEGER, key TEXT, record_id TEXT, outcome TEXT NOT NULL,
    stage TEXT, reason TEXT, original TEXT);
CREATE TABLE IF NOT EXISTS lookups (
    object TEXT NOT NULL, path TEXT NOT NULL, value TEXT NOT NULL, record_id TEXT,
    PRIMARY KEY (object, path, value));
"""


@dataclass(frozen=True)
class RowOutcome:
    """What happened to one source row."""

    row: int
    outcome: Outcome
    key: str | None = None
    record_id: str | None = None
    stage: Stage | None = None
    reason: str | None = None
    original: dict[str, Any] | None = None


class StateError(PipelineError):
    """The state folder or its checkpoint cannot be used (exit 1; nothing is lost)."""


class Checkpoint:
    """The SQLite checkpoint of one mapping's runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(
                f"cannot use the state folder {path.parent}: {_why(exc)}; "
                "choose a writable folder with --state-dir"
            ) from None
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            version = self.get("version")
        except sqlite3.Error as exc:
            self.db.close()
            raise StateError(
                f"the checkpoint {path} cannot be read ({_why(exc)}): it is damaged or not a "
                "checkpoint; move it away, or pass --restart to start over (records already "
                "loaded are updated, not duplicated)"
            ) from None
        if version is not None and version != SCHEMA_VERSION:
            self.db.close()
            raise StateError(
                f"the checkpoint {path} was written by another version of twenty-pipeline "
                f"(state schema {version}, this one reads {SCHEMA_VERSION}); finish it with "
                "that version, or pass --restart to start over"
            )

    def close(self) -> None:
        """Close the database (everything is already committed)."""
        self.db.close()

    # ------------------------------------------------------------------ meta

    def get(self, key: str) -> str | None:
        """A meta value."""
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, **values: Any) -> None:
        """Store meta values (one transaction)."""
        with self._tx():
            for key, value in values.items():
                text = value if isinstance(value, str) else json.dumps(value)
                self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, text))

    # ------------------------------------------------------------------ transactions

    def _tx(self) -> _Transaction:
        return _Transaction(self.db)

    # ------------------------------------------------------------------ batches

    def retire_unconfirmed(self) -> int:
        """On resume: batches sent but never confirmed are cut again from their rows."""
        with self._tx():
            cursor = self.db.execute(
                "UPDATE batches SET status = 'resent' WHERE status IN ('sent', 'pending')"
            )
        return cursor.rowcount

    def next_batch_id(self) -> int:
        """A batch id no batch of this checkpoint has used."""
        row = self.db.execute("SELECT MAX(id) FROM batches").fetchone()
        return int(row[0]) + 1 if row and row[0] is not None else 0

    def final_rows(self) -> pl.Series:
        """Sorted source rows whose outcome came from the workspace (loaded, or refused).

        They are final: a resume never sends them again. Rows rejected before any
        call (read / normalize) are not: a resume judges them again, so that their
        outcome is true for the workspace and mapping of now.
        """
        rows = [
            r[0]
            for r in self.db.execute(
                "SELECT row FROM rows WHERE outcome != 'rejected' OR stage = 'load' ORDER BY row"
            )
        ]
        return pl.Series("row", rows, dtype=pl.Int64)

    def mark_sent(self, batch: int, first_row: int, last_row: int, size: int) -> None:
        """Write-ahead: the batch is about to go out."""
        with self._tx():
            self.db.execute(
                "INSERT INTO batches (id, first_row, last_row, size, status, attempts, updated_at)"
                " VALUES (?, ?, ?, ?, 'sent', 1, ?) ON CONFLICT(id) DO UPDATE SET "
                "status = 'sent', attempts = attempts + 1, updated_at = excluded.updated_at",
                (batch, first_row, last_row, size, time.time()),
            )

    def mark_done(self, batch: int, outcomes: Iterable[RowOutcome]) -> None:
        """The batch is confirmed: its rows' outcomes and the batch status, together."""
        with self._tx():
            self._write_rows(outcomes, batch)
            self.db.execute(
                "UPDATE batches SET status = 'done', updated_at = ? WHERE id = ?",
                (time.time(), batch),
            )

    # ------------------------------------------------------------------ rows

    def record_rows(self, outcomes: Iterable[RowOutcome]) -> None:
        """Row outcomes decided before any call (read / normalize rejects)."""
        with self._tx():
            self._write_rows(outcomes, None)

    def _write_rows(self, outcomes: Iterable[RowOutcome], batch: int | None) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    o.row,
                    batch,
                    o.key,
                    o.record_id,
                    o.outcome,
                    o.stage,
                    o.reason,
                    json.dumps(o.original, ensure_ascii=False) if o.original is not None else None,
                )
                for o in outcomes
            ],
        )

    def counts(self) -> dict[str, int]:
        """Rows by outcome."""
        return {
            str(k): int(v)
            for k, v in self.db.execute("SELECT outcome, COUNT(*) FROM rows GROUP BY outcome")
        }

    def links_left_empty(self) -> int:
        """Loaded rows with a note: a relation left empty (on_missing: null)."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM rows WHERE outcome IN ('created', 'updated', 'restored') "
            "AND reason IS NOT NULL"
        ).fetchone()
        return int(row[0])

    def batch_counts(self) -> dict[str, int]:
        """Batches by status."""
        return {
            str(k): int(v)
            for k, v in self.db.execute("SELECT status, COUNT(*) FROM batches GROUP BY status")
        }

    def iter_rows(self, *, rejected: bool) -> Iterator[tuple[Any, ...]]:
        """Row outcomes in row order: the rejected ones, or the loaded ones."""
        where = "outcome = 'rejected'" if rejected else "outcome != 'rejected'"
        yield from self.db.execute(
            f"SELECT row, key, record_id, outcome, stage, reason, original FROM rows "
            f"WHERE {where} ORDER BY row"
        )

    # ------------------------------------------------------------------ lookups

    def lookup_cache(self, obj: str, path: str) -> dict[str, str | None]:
        """Resolved lookup values of ``obj.path`` (None: known to be missing)."""
        return {
            str(v): (str(i) if i else None)
            for v, i in self.db.execute(
                "SELECT value, record_id FROM lookups WHERE object = ? AND path = ?", (obj, path)
            )
        }

    def save_lookups(self, obj: str, path: str, resolved: dict[str, str | None]) -> None:
        """Remember resolved lookup values."""
        with self._tx():
            self.db.executemany(
                "INSERT OR REPLACE INTO lookups VALUES (?, ?, ?, ?)",
                [(obj, path, v, i) for v, i in resolved.items()],
            )


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
