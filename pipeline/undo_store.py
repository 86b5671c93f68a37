"""What undo needs, kept in a step's state store beside its runs.

- ``undo_before``: with ``--undoable``, the values a record had before a run updated it
  (only the fields the run wrote), written ahead of the call; the first image of a
  record in a run wins, so a batch sent again on resume cannot take the run's own
  values for the "before".
- ``undo_writes``: the ``updatedAt`` Twenty answered for each record a run wrote (always
  kept: it costs no call), and the records a run created through ``on_missing: create``
  lookups. Undo's guard compares it with the record's ``updatedAt`` now.
- ``undo_actions``: an undo's plan, one action per record, with its status (``planned``,
  ``sent``, ``done``, ``gone``, ``changed``, ``kept``) so that a killed undo resumes where it
  stopped and a second undo of the same run does nothing.

The tables are added to a store that lacks them when it is opened for writing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.state import StateStore

Action = Literal["delete", "delete_again", "restore_values", "not_undoable"]
ActionStatus = Literal["planned", "sent", "done", "gone", "changed", "kept"]

TABLES = (
    """CREATE TABLE IF NOT EXISTS undo_before (
    run INTEGER NOT NULL, record_id TEXT NOT NULL, image TEXT NOT NULL,
    PRIMARY KEY (run, record_id))""",
    """CREATE TABLE IF NOT EXISTS undo_writes (
    run INTEGER NOT NULL, object TEXT NOT NULL, record_id TEXT NOT NULL,
    created INTEGER NOT NULL, updated_at TEXT, checked INTEGER NOT NULL DEFAULT 0,
    sent TEXT, PRIMARY KEY (run, object, record_id))""",
    """CREATE TABLE IF NOT EXISTS undo_actions (
    run INTEGER NOT NULL, object TEXT NOT NULL, record_id TEXT NOT NULL,
    action TEXT NOT NULL, status TEXT NOT NULL, position INTEGER NOT NULL,
    detail TEXT, at REAL NOT NULL, PRIMARY KEY (run, object, record_id))""",
)


@dataclass(frozen=True)
class PlannedAction:
    """One record's part of an undo."""

    object: str
    record_id: str
    action: Action
    status: ActionStatus
    position: int
    """Order of the objects: links first, then the run's own records, then lookups'."""
    detail: str | None = None


class UndoStore:
    """The undo tables of one step's state store."""

    def __init__(self, store: StateStore, *, read_only: bool = False) -> None:
        self.store = store
        self.db = store.db
        if not read_only:
            for table in TABLES:
                self.db.execute(table)

    # ------------------------------------------------------------------ while importing

    def save_before(self, run: int, images: dict[str, dict[str, Any]]) -> None:
        """Write-ahead: the values records have before this run's call (first one wins)."""
        with self.store.transaction():
            self.db.executemany(
                "INSERT OR IGNORE INTO undo_before VALUES (?, ?, ?)",
                [
                    (run, record_id.lower(), json.dumps(image, ensure_ascii=False))
                    for record_id, image in images.items()
                ],
            )

    def write_times(
        self,
        run: int,
        obj: str,
        written: Iterable[tuple[str, str | None, dict[str, Any] | None]],
        *,
        checked: bool = False,
    ) -> None:
        """The ``updatedAt`` Twenty answered for records a run wrote, and what it sent
        (inside the batch's transaction).

        ``checked``: a read before the call told creates from updates, not the answer.
        """
        self.db.executemany(
            "INSERT INTO undo_writes VALUES (?, ?, ?, 0, ?, ?, ?) "
            "ON CONFLICT(run, object, record_id) DO UPDATE SET "
            "updated_at = excluded.updated_at, checked = excluded.checked, sent = excluded.sent",
            [
                (
                    run,
                    obj,
                    record_id.lower(),
                    at,
                    int(checked),
                    json.dumps(sent, ensure_ascii=False) if sent is not None else None,
                )
                for record_id, at, sent in written
            ],
        )

    def created_by_lookup(
        self, run: int, obj: str, created: Iterable[tuple[str, str | None]]
    ) -> None:
        """Records a run created for ``on_missing: create`` lookups."""
        with self.store.transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO undo_writes VALUES (?, ?, ?, 1, ?, 1, NULL)",
                [(run, obj, record_id.lower(), at) for record_id, at in created],
            )

    def hand_back(self, run: int, obj: str, written: Sequence[tuple[str, str | None]]) -> None:
        """Values ``run`` overwrote were put back: the earlier run that last wrote each
        record (not undone) now holds that write's ``updatedAt`` as its own."""
        with self.store.transaction():
            for record_id, at in written:
                self.db.execute(
                    "UPDATE undo_writes SET updated_at = ? WHERE object = ? AND record_id = ? "
                    "AND run = (SELECT MAX(w.run) FROM undo_writes w JOIN runs r ON r.id = w.run "
                    "WHERE w.object = ? AND w.record_id = ? AND w.run < ? "
                    "AND r.status != 'undone')",
                    (at, obj, record_id.lower(), obj, record_id.lower(), run),
                )

    # ------------------------------------------------------------------ undoing

    def before_images(self, run: int) -> dict[str, dict[str, Any]]:
        """Record id -> the values it had before ``run`` updated it."""
        if not self.store.has_table("undo_before"):
            return {}
        return {
            str(i): json.loads(image)
            for i, image in self.db.execute(
                "SELECT record_id, image FROM undo_before WHERE run = ?", (run,)
            )
        }

    def written(self, run: int) -> dict[tuple[str, str], str | None]:
        """(object, record id) -> the ``updatedAt`` Twenty answered for ``run``'s write."""
        if not self.store.has_table("undo_writes"):
            return {}
        return {
            (str(o), str(i)): (str(at) if at else None)
            for o, i, at in self.db.execute(
                "SELECT object, record_id, updated_at FROM undo_writes WHERE run = ?", (run,)
            )
        }

    def sent(self, run: int) -> dict[str, dict[str, Any]]:
        """Record id -> the values ``run`` sent it (what the guard compares with now)."""
        if not self.store.has_table("undo_writes"):
            return {}
        return {
            str(i): json.loads(sent)
            for i, sent in self.db.execute(
                "SELECT record_id, sent FROM undo_writes WHERE run = ? AND sent IS NOT NULL",
                (run,),
            )
        }

    def checked(self, run: int) -> set[str]:
        """Ids whose create-or-update outcome a read confirmed (not Twenty's answer alone)."""
        if not self.store.has_table("undo_writes"):
            return set()
        return {
            str(i)
            for (i,) in self.db.execute(
                "SELECT record_id FROM undo_writes WHERE run = ? AND checked = 1", (run,)
            )
        }

    def lookup_created(self, run: int) -> list[tuple[str, str]]:
        """(object, record id) of the records ``run`` created for lookups."""
        if not self.store.has_table("undo_writes"):
            return []
        return [
            (str(o), str(i))
            for o, i in self.db.execute(
                "SELECT object, record_id FROM undo_writes WHERE run = ? AND created = 1 "
                "ORDER BY object, record_id",
                (run,),
            )
        ]

    def actions(self, run: int) -> list[PlannedAction]:
        """The stored plan of an undo of ``run`` (empty: never planned)."""
        if not self.store.has_table("undo_actions"):
            return []
        return [
            PlannedAction(str(o), str(i), a, s, int(p), d)
            for o, i, a, s, p, d in self.db.execute(
                "SELECT object, record_id, action, status, position, detail FROM undo_actions "
                "WHERE run = ? ORDER BY position, object, record_id",
                (run,),
            )
        ]

    def save_plan(self, run: int, actions: Sequence[PlannedAction]) -> None:
        """The plan, in one transaction: an undo killed before it is planned again."""
        now = time.time()
        with self.store.transaction():
            self.db.execute("DELETE FROM undo_actions WHERE run = ?", (run,))
            self.db.executemany(
                "INSERT INTO undo_actions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (run, a.object, a.record_id, a.action, a.status, a.position, a.detail, now)
                    for a in actions
                ],
            )

    def mark(
        self, run: int, obj: str, ids: Sequence[str], status: ActionStatus, detail: str | None
    ) -> None:
        """Write-ahead (``sent``) or an answer (``done`` / ``gone``) for some actions."""
        now = time.time()
        with self.store.transaction():
            self.db.executemany(
                "UPDATE undo_actions SET status = ?, detail = COALESCE(?, detail), at = ? "
                "WHERE run = ? AND object = ? AND record_id = ?",
                [(status, detail, now, run, obj, i) for i in ids],
            )

    def finish(
        self, run: int, *, forgotten: Sequence[str], stale: Sequence[str], partly: bool = False
    ) -> None:
        """The run is undone: marked so, and the keys it wrote no longer believed.

        ``forgotten``: ids of records deleted again (their keys known deleted);
        ``stale``: ids whose values were put back (their content hash dropped, so that
        an incremental sync sends them again).
        """
        now = time.time()
        with self.store.transaction():
            self.db.executemany(
                "UPDATE keys SET deleted = 1, content_hash = NULL, last_seen = ? "
                "WHERE lower(record_id) = ?",
                [(now, i) for i in forgotten],
            )
            self.db.executemany(
                "UPDATE keys SET content_hash = NULL, last_seen = ? WHERE lower(record_id) = ?",
                [(now, i) for i in stale],
            )
            self.db.execute(
                "UPDATE runs SET status = ?, ended = ? WHERE id = ?",
                ("partly_undone" if partly else "undone", now, run),
            )
