"""The state store: one SQLite file per mapping (or job), the truth about its runs.

It keeps, across runs:

- **keys**: every record key ever confirmed by the workspace, with its Twenty id, the
  hash of the content last confirmed, the run that last saw it, and whether it is
  known to be deleted (what incremental sync and delete propagation build on);
- **runs**: one row per import run, with the fingerprint that decides whether an
  interrupted run may resume (mapping text, source content, batch-shaping settings);
- per run: **batches**, named by the keys they hold, **rows** (the outcome of every
  source row), and the **lookup cache** (per run, so that an id resolved last night is
  never trusted tonight without asking the workspace).

Write-ahead: a batch and its keys are recorded as ``sent`` (in their own transaction)
before the call goes out, and ``done`` in the same transaction that records its rows'
outcomes and updates the keys. WAL mode and one transaction per state change make it
safe against ``kill -9`` at any instant. The ledgers (success.csv, rejects.csv) are
written from this file, so they always agree with it.

It never holds the API key.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl

from pipeline.errors import RESTART_SETS_ASIDE, WRITABLE_STATE_DIR, Stage, StateError

SCHEMA_VERSION = 2
STORE_NAME = "state.sqlite"
OLD_CHECKPOINT = "checkpoint.sqlite"  # schema 1: one run per file
Outcome = Literal["created", "updated", "restored", "unchanged", "skipped", "rejected"]
RunStatus = Literal["running", "finished", "abandoned", "undone", "partly_undone"]
LOADED = ("created", "updated", "restored")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, status TEXT NOT NULL, fingerprint TEXT NOT NULL,
    mapping_digest TEXT NOT NULL, source_digest TEXT NOT NULL, settings TEXT NOT NULL,
    mapping TEXT NOT NULL, source TEXT NOT NULL, object TEXT NOT NULL,
    rows_read INTEGER, started REAL NOT NULL, ended REAL, attempts INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS batches (
    run INTEGER NOT NULL, id INTEGER NOT NULL, size INTEGER NOT NULL, keys TEXT NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL,
    PRIMARY KEY (run, id));
CREATE TABLE IF NOT EXISTS batch_keys (
    run INTEGER NOT NULL, batch INTEGER NOT NULL, row INTEGER NOT NULL, key TEXT,
    PRIMARY KEY (run, batch, row));
CREATE TABLE IF NOT EXISTS rows (
    run INTEGER NOT NULL, row INTEGER NOT NULL, batch INTEGER, key TEXT, record_id TEXT,
    outcome TEXT NOT NULL, stage TEXT, reason TEXT, original TEXT, PRIMARY KEY (run, row));
CREATE TABLE IF NOT EXISTS keys (
    key TEXT PRIMARY KEY, record_id TEXT NOT NULL, content_hash TEXT, last_run INTEGER NOT NULL,
    last_seen REAL NOT NULL, deleted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS lookups (
    run INTEGER NOT NULL, object TEXT NOT NULL, path TEXT NOT NULL, value TEXT NOT NULL,
    record_id TEXT, PRIMARY KEY (run, object, path, value));
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
    content_hash: str | None = None


@dataclass(frozen=True)
class RunFingerprint:
    """What a run may only be resumed with: mapping text, source content, settings."""

    mapping_digest: str
    source_digest: str
    settings: dict[str, Any]

    @property
    def digest(self) -> str:
        """One value for the whole fingerprint."""
        text = json.dumps(
            [self.mapping_digest, self.source_digest, self.settings], sort_keys=True, default=str
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def differences(self, run: Run) -> list[str]:
        """What differs from the fingerprint ``run`` was started with, in words."""
        out = []
        if run.mapping_digest != self.mapping_digest:
            out.append("the mapping file changed")
        if run.source_digest != self.source_digest:
            out.append(f"the source file changed (was {run.source})")
        for name in sorted(set(self.settings) | set(run.settings)):
            was, now = run.settings.get(name, "off"), self.settings.get(name, "off")
            if was != now:
                out.append(f"{name.replace('_', ' ')} {was} -> {now}")
        return out or ["the mapping, source or settings changed"]


@dataclass(frozen=True)
class Run:
    """One import run as the store recorded it."""

    id: int
    status: RunStatus
    fingerprint: str
    mapping_digest: str
    source_digest: str
    settings: dict[str, Any]
    mapping: str
    source: str
    object: str
    rows_read: int | None
    started: float
    ended: float | None
    attempts: int = 1

    @property
    def finished(self) -> bool:
        """The run ran to its end (every row has an outcome)."""
        return self.status == "finished"


@dataclass(frozen=True)
class KeyState:
    """What the store knows of one record key."""

    key: str
    record_id: str
    content_hash: str | None
    last_run: int
    deleted: bool


def content_hash(payload: dict[str, Any]) -> str:
    """A stable digest of a record as sent (what "unchanged since last run" compares)."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class StateStore:
    """The SQLite state of one mapping's (or job's) runs. See the module docstring."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.run_id: int | None = None
        self.db = _connect(path, read_only=read_only)
        try:
            if not read_only:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
            version = self._version()
            if version is None and not read_only:
                # one transaction: a kill during creation leaves no store, or a whole one
                self.db.executescript(
                    f"BEGIN IMMEDIATE;\n{SCHEMA}\nINSERT OR REPLACE INTO meta VALUES "
                    f"('schema_version', '{SCHEMA_VERSION}');\nCOMMIT;"
                )
                version = str(SCHEMA_VERSION)
        except sqlite3.Error as exc:
            self.db.close()
            raise damaged(path, exc) from None
        if version != str(SCHEMA_VERSION):
            self.db.close()
            raise StateError(
                f"the state store {path} was written by another version of twenty-pipeline "
                f"(state schema {version}, this one reads {SCHEMA_VERSION}); finish its run "
                "with that version",
                advice=RESTART_SETS_ASIDE,
            )

    def _version(self) -> str | None:
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master")}
        if "meta" not in tables:
            return None
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        # schema 1 (checkpoint.sqlite) wrote its version under "version"
        version = meta.get("schema_version") or meta.get("version")
        if version is None and not meta:
            runs = (
                self.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
                if "runs" in tables
                else 0
            )
            if not runs:
                return None  # a creation that an earlier release left half done: nothing to keep
        return version or "unknown"

    def close(self) -> None:
        """Close the database (everything is already committed)."""
        self.db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tx(self) -> _Transaction:
        return _Transaction(self.db)

    def has_table(self, name: str) -> bool:
        """Whether the store holds table ``name`` (an older store may not: read as empty)."""
        found = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return found is not None

    def transaction(self) -> _Transaction:
        """One ``BEGIN IMMEDIATE`` ... ``COMMIT`` (for the tables other modules keep here)."""
        return _Transaction(self.db)

    # ------------------------------------------------------------------ runs

    def last_run(self) -> Run | None:
        """The most recent run, whatever its status."""
        row = self.db.execute(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT 1")
        found = row.fetchone()
        return _run(found) if found else None

    def runs(self) -> list[Run]:
        """Every run, oldest first."""
        return [_run(r) for r in self.db.execute(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY id")]

    def begin_run(
        self, fingerprint: RunFingerprint, *, mapping: str, source: str, object_name: str
    ) -> Run:
        """Start a new run and make it the store's current run."""
        with self._tx():
            cursor = self.db.execute(
                "INSERT INTO runs (status, fingerprint, mapping_digest, source_digest, settings,"
                " mapping, source, object, started) VALUES ('running', ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    fingerprint.digest,
                    fingerprint.mapping_digest,
                    fingerprint.source_digest,
                    json.dumps(fingerprint.settings, sort_keys=True, default=str),
                    mapping,
                    source,
                    object_name,
                    time.time(),
                ),
            )
        self.run_id = int(cursor.lastrowid or 0)
        run = self.last_run()
        assert run is not None and run.id == self.run_id
        return run

    def resume_run(self, run: Run) -> None:
        """Continue ``run`` (an unfinished one); the store counts the attempts."""
        self.run_id = run.id
        with self._tx():
            self.db.execute("UPDATE runs SET attempts = attempts + 1 WHERE id = ?", (run.id,))

    def end_run(self, status: RunStatus, run_id: int | None = None) -> None:
        """Mark a run finished (every row has an outcome) or abandoned (--restart)."""
        with self._tx():
            self.db.execute(
                "UPDATE runs SET status = ?, ended = ? WHERE id = ?",
                (status, time.time(), run_id if run_id is not None else self._run()),
            )

    def set_rows_read(self, rows: int) -> None:
        """How many source rows the current run has to account for."""
        with self._tx():
            self.db.execute("UPDATE runs SET rows_read = ? WHERE id = ?", (rows, self._run()))

    def _run(self) -> int:
        if self.run_id is None:
            raise RuntimeError("no current run: begin_run() or resume_run() first")
        return self.run_id

    # ------------------------------------------------------------------ batches

    def retire_unconfirmed(self) -> int:
        """On resume: batches sent but never confirmed are cut again from their rows."""
        with self._tx():
            cursor = self.db.execute(
                "UPDATE batches SET status = 'resent' WHERE run = ? AND status = 'sent'",
                (self._run(),),
            )
        return cursor.rowcount

    def next_batch_id(self) -> int:
        """A batch id no batch of this run has used."""
        row = self.db.execute("SELECT MAX(id) FROM batches WHERE run = ?", (self._run(),))
        found = row.fetchone()
        return int(found[0]) + 1 if found and found[0] is not None else 0

    def final_rows(self) -> pl.Series:
        """Sorted source rows of this run whose outcome came from the workspace.

        They are final: a resume never sends them again. Rows rejected or skipped
        before any call (read / normalize) are not: a resume judges them again, so that
        their outcome is true for the workspace and mapping of now.
        """
        rows = [
            r[0]
            for r in self.db.execute(
                "SELECT row FROM rows WHERE run = ? AND "
                "(outcome NOT IN ('rejected', 'skipped') OR stage = 'load')"
                " ORDER BY row",
                (self._run(),),
            )
        ]
        return pl.Series("row", rows, dtype=pl.Int64)

    def mark_sent(self, batch: int, rows: Sequence[int], keys: Sequence[str | None]) -> None:
        """Write-ahead: the batch, named by its keys, is about to go out."""
        run = self._run()
        named = hashlib.sha256("\n".join(k or "" for k in keys).encode()).hexdigest()[:16]
        with self._tx():
            self.db.execute(
                "INSERT INTO batches (run, id, size, keys, status, attempts, updated_at)"
                " VALUES (?, ?, ?, ?, 'sent', 1, ?) ON CONFLICT(run, id) DO UPDATE SET "
                "status = 'sent', attempts = attempts + 1, updated_at = excluded.updated_at",
                (run, batch, len(rows), named, time.time()),
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO batch_keys VALUES (?, ?, ?, ?)",
                [(run, batch, row, key) for row, key in zip(rows, keys, strict=True)],
            )

    def mark_done(
        self,
        batch: int,
        outcomes: Iterable[RowOutcome],
        also: Callable[[], None] | None = None,
    ) -> None:
        """The batch is confirmed: its rows, the keys it wrote and its status, together.

        ``also`` writes what another module keeps of the batch, in the same transaction.
        """
        done = list(outcomes)
        run = self._run()
        with self._tx():
            if also is not None:
                also()
            self._write_rows(done, batch)
            now = time.time()
            self.db.executemany(
                "INSERT INTO keys (key, record_id, content_hash, last_run, last_seen, deleted) "
                "VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT(key) DO UPDATE SET "
                "record_id = excluded.record_id, content_hash = excluded.content_hash, "
                "last_run = excluded.last_run, last_seen = excluded.last_seen, deleted = 0",
                [
                    (o.key, o.record_id, o.content_hash, run, now)
                    for o in done
                    if o.outcome in LOADED and o.key is not None and o.record_id
                ],
            )
            self.db.execute(
                "UPDATE batches SET status = 'done', updated_at = ? WHERE run = ? AND id = ?",
                (now, run, batch),
            )

    def batch_counts(self, run_id: int | None = None) -> dict[str, int]:
        """Batches of a run (default: the current or last one) by status."""
        return {
            str(k): int(v)
            for k, v in self.db.execute(
                "SELECT status, COUNT(*) FROM batches WHERE run = ? GROUP BY status",
                (self._or_last(run_id),),
            )
        }

    # ------------------------------------------------------------------ rows

    def record_rows(self, outcomes: Iterable[RowOutcome]) -> None:
        """Row outcomes decided before any call (read / normalize rejects)."""
        with self._tx():
            self._write_rows(list(outcomes), None)

    def _write_rows(self, outcomes: list[RowOutcome], batch: int | None) -> None:
        run = self._run()
        self.db.executemany(
            "INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    run,
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

    def counts(self, run_id: int | None = None) -> dict[str, int]:
        """Rows of a run (default: the current or last one) by outcome."""
        return {
            str(k): int(v)
            for k, v in self.db.execute(
                "SELECT outcome, COUNT(*) FROM rows WHERE run = ? GROUP BY outcome",
                (self._or_last(run_id),),
            )
        }

    def links_left_empty(self) -> int:
        """Loaded rows of the current run with a note: a relation left empty."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM rows WHERE run = ? AND outcome IN "
            "('created', 'updated', 'restored') AND reason IS NOT NULL",
            (self._run(),),
        ).fetchone()
        return int(row[0])

    def iter_rows(self, *, rejected: bool, run_id: int | None = None) -> Iterator[tuple[Any, ...]]:
        """(row, key, id, outcome, stage, reason, original) of a run, in row order."""
        where = "outcome = 'rejected'" if rejected else "outcome != 'rejected'"
        yield from self.db.execute(
            f"SELECT row, key, record_id, outcome, stage, reason, original FROM rows "
            f"WHERE run = ? AND {where} ORDER BY row",
            (self._or_last(run_id),),
        )

    def _or_last(self, run_id: int | None) -> int:
        if run_id is not None:
            return run_id
        if self.run_id is not None:
            return self.run_id
        last = self.last_run()
        return last.id if last else -1

    # ------------------------------------------------------------------ keys

    def key_state(self, key: str) -> KeyState | None:
        """What the store knows of ``key`` (None: never confirmed)."""
        found = self.db.execute(
            "SELECT key, record_id, content_hash, last_run, deleted FROM keys WHERE key = ?",
            (key,),
        ).fetchone()
        if found is None:
            return None
        return KeyState(str(found[0]), str(found[1]), found[2], int(found[3]), bool(found[4]))

    def unchanged_since(
        self, keys: Sequence[str | None], hashes: Sequence[str], mapping_digest: str
    ) -> dict[str, tuple[str, int]]:
        """Keys whose content hash, last confirmed under this same mapping, is ``hashes``.

        Returns key -> (record id, the run that confirmed it). A key known deleted, or
        last written under another mapping text, is never unchanged: a changed
        mapping sends everything once.
        """
        wanted = {k: h for k, h in zip(keys, hashes, strict=True) if k is not None}
        found: dict[str, tuple[str, int]] = {}
        names = list(wanted)
        for start in range(0, len(names), 500):
            part = names[start : start + 500]
            marks = ",".join("?" * len(part))
            for key, record_id, digest, last_run in self.db.execute(
                "SELECT k.key, k.record_id, k.content_hash, k.last_run FROM keys k "
                "JOIN runs r ON r.id = k.last_run "
                f"WHERE k.deleted = 0 AND r.mapping_digest = ? AND k.key IN ({marks})",
                (mapping_digest, *part),
            ):
                if digest is not None and wanted[str(key)] == digest:
                    found[str(key)] = (str(record_id), int(last_run))
        return found

    def mark_unchanged(self, outcomes: Iterable[RowOutcome]) -> None:
        """Rows not sent because Twenty holds them as they are: recorded, keys seen now."""
        done = list(outcomes)
        run = self._run()
        with self._tx():
            self._write_rows(done, None)
            self.db.executemany(
                "UPDATE keys SET last_run = ?, last_seen = ? WHERE key = ?",
                [(run, time.time(), o.key) for o in done if o.key is not None],
            )

    def confirmed_ids(self, run_id: int) -> dict[str, str]:
        """Key -> record id of every row of ``run_id`` that Twenty holds (loaded or unchanged)."""
        return {
            str(key): str(record_id)
            for key, record_id in self.db.execute(
                "SELECT key, record_id FROM rows WHERE run = ? AND key IS NOT NULL"
                " AND record_id IS NOT NULL AND outcome != 'rejected'",
                (run_id,),
            )
        }

    def key_count(self) -> int:
        """Keys ever confirmed by the workspace."""
        return int(self.db.execute("SELECT COUNT(*) FROM keys").fetchone()[0])

    # ------------------------------------------------------------------ lookups

    def lookup_cache(self, obj: str, path: str) -> dict[str, str | None]:
        """Lookup values of ``obj.path`` resolved in this run (None: known to be missing)."""
        return {
            str(v): (str(i) if i else None)
            for v, i in self.db.execute(
                "SELECT value, record_id FROM lookups WHERE run = ? AND object = ? AND path = ?",
                (self._run(), obj, path),
            )
        }

    def save_lookups(self, obj: str, path: str, resolved: dict[str, str | None]) -> None:
        """Remember lookup values resolved in this run."""
        run = self._run()
        with self._tx():
            self.db.executemany(
                "INSERT OR REPLACE INTO lookups VALUES (?, ?, ?, ?, ?)",
                [(run, obj, path, v, i) for v, i in resolved.items()],
            )


_RUN_COLUMNS = (
    "id, status, fingerprint, mapping_digest, source_digest, settings, mapping, source, "
    "object, rows_read, started, ended, attempts"
)


def _run(row: tuple[Any, ...]) -> Run:
    return Run(
        id=int(row[0]),
        status=row[1],
        fingerprint=str(row[2]),
        mapping_digest=str(row[3]),
        source_digest=str(row[4]),
        settings=json.loads(row[5] or "{}"),
        mapping=str(row[6]),
        source=str(row[7]),
        object=str(row[8]),
        rows_read=None if row[9] is None else int(row[9]),
        started=float(row[10]),
        ended=None if row[11] is None else float(row[11]),
        attempts=int(row[12]),
    )


def _connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
    try:
        if read_only:
            return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(path, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise StateError(
            f"cannot use the state folder {path.parent}: {_why(exc)}", advice=WRITABLE_STATE_DIR
        ) from None


def damaged(path: Path, exc: BaseException) -> StateError:
    """The one-line refusal of a store that SQLite cannot read."""
    return StateError(
        f"the state store {path} cannot be read ({_why(exc)}): it is damaged or not a "
        "state store; move it away",
        advice=RESTART_SETS_ASIDE,
    )


def set_aside(path: Path) -> Path | None:
    """Rename a store (and its WAL files) out of the way; nothing is deleted."""
    if not path.exists():
        return None
    aside = path.with_name(f"{path.name}.set-aside-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("-wal", "-shm"):
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            extra.replace(aside.with_name(aside.name + suffix))
    path.replace(aside)
    return aside


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
