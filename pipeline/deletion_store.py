"""What delete propagation writes in a step's state store, beside its runs.

A ``deletions`` table holds, per import run, every key whose record the run asked
Twenty to soft-delete: ``sent`` before the call goes out (write-ahead), then
``deleted`` (Twenty's answer named it) or ``already_gone`` (not live when asked: the
answer did not name it), committed together with the key's ``deleted`` mark. A
record sent by a call whose answer was lost (the process was killed) is counted
``deleted`` when the next attempt finds it gone: that call deleted it.

The table is added to a store that lacks it when the store is opened for writing; an
older store stays readable.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Literal

import polars as pl

from pipeline.state import StateStore

DeletionOutcome = Literal["deleted", "already_gone"]

TABLE = """CREATE TABLE IF NOT EXISTS deletions (
    run INTEGER NOT NULL, key TEXT NOT NULL, record_id TEXT NOT NULL, outcome TEXT NOT NULL,
    at REAL NOT NULL, PRIMARY KEY (run, key))"""


class DeletionStore:
    """The deletions of one step's state store."""

    def __init__(self, store: StateStore, *, read_only: bool = False) -> None:
        self.store = store
        self.db = store.db
        if not read_only:
            self.db.execute(TABLE)

    def live_keys(self) -> pl.DataFrame:
        """Every key the workspace confirmed and no deletion took back: key, record_id."""
        rows = self.db.execute("SELECT key, record_id FROM keys WHERE deleted = 0").fetchall()
        return pl.DataFrame(
            {"key": [r[0] for r in rows], "record_id": [r[1] for r in rows]},
            schema={"key": pl.String, "record_id": pl.String},
        )

    def interrupted(self) -> set[str]:
        """Keys sent for deletion by a call whose answer never came back."""
        if not self.store.has_table("deletions"):
            return set()
        return {r[0] for r in self.db.execute("SELECT key FROM deletions WHERE outcome = 'sent'")}

    def mark_sent(self, run: int, pairs: Sequence[tuple[str, str]]) -> None:
        """Write-ahead: these (key, record id) are about to be soft-deleted."""
        now = time.time()
        with self.store.transaction():
            self.db.executemany(
                "INSERT INTO deletions (run, key, record_id, outcome, at) "
                "VALUES (?, ?, ?, 'sent', ?) ON CONFLICT(run, key) "
                "DO UPDATE SET outcome = 'sent', at = excluded.at",
                [(run, key, record_id, now) for key, record_id in pairs],
            )

    def mark_done(self, run: int, outcomes: Iterable[tuple[str, DeletionOutcome]]) -> None:
        """Twenty answered: each key's outcome, and its record known deleted, together."""
        done = list(outcomes)
        now = time.time()
        with self.store.transaction():
            # an interrupted attempt of an earlier run of this store may hold the key too
            self.db.executemany(
                "UPDATE deletions SET outcome = 'superseded', at = ? "
                "WHERE key = ? AND run != ? AND outcome = 'sent'",
                [(now, key, run) for key, _ in done],
            )
            self.db.executemany(
                "UPDATE deletions SET outcome = ?, at = ? WHERE run = ? AND key = ?",
                [(outcome, now, run, key) for key, outcome in done],
            )
            self.db.executemany(
                "UPDATE keys SET deleted = 1, last_seen = ? WHERE key = ?",
                [(now, key) for key, _ in done],
            )

    def of_run(self, run: int) -> list[tuple[str, str, str]]:
        """(key, record id, outcome) of every deletion of ``run``, by key."""
        if not self.store.has_table("deletions"):
            return []
        return [
            (str(k), str(i), str(o))
            for k, i, o in self.db.execute(
                "SELECT key, record_id, outcome FROM deletions WHERE run = ? ORDER BY key",
                (run,),
            )
        ]
