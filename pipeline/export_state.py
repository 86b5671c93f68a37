"""The state of one export: pages written so far, the cursor after them, the next ``since``.

One folder per exported object (``STATE_DIR/export/<object>/``) holds ``export.sqlite``
and one Parquet part file per page; after the first page the rest of the id space may be
split into ranges read side by side, each with its own cursor
(:mod:`pipeline.export_pages`). A part is written under a temporary name, flushed to
disk and renamed, and only then recorded with its cursor in one transaction: after a
kill, every recorded part is whole, and a part on disk that is not recorded is removed
on the next start (its page is fetched again). The state of a finished export keeps only
its next ``since``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from pipeline.errors import StateError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS parts (
    n INTEGER PRIMARY KEY,
    part INTEGER NOT NULL,
    cursor TEXT,
    last_id TEXT,
    rows INTEGER NOT NULL,
    latest TEXT
);
"""

PART_COLUMNS = {"n", "part", "cursor", "last_id", "rows", "latest"}


class ExportState:
    """Parts and cursor of the export under way in ``folder`` (see module docstring)."""

    def __init__(self, folder: Path, db: sqlite3.Connection) -> None:
        self.folder = folder
        self.db = db

    @classmethod
    def open(cls, folder: Path, fingerprint: str, *, restart: bool = False) -> ExportState:
        """The export under way with these options, or a fresh one.

        An unfinished export with other options is refused (its parts would mix two
        exports) unless ``restart``, which drops it.
        """
        try:
            db = sqlite3.connect(folder / "export.sqlite", isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(parts)")}
        except sqlite3.Error as exc:
            raise StateError(f"{folder}: cannot open the export state: {exc}") from exc
        if columns != PART_COLUMNS:
            db.close()
            cls._replace_older(folder, restart)
            return cls.open(folder, fingerprint, restart=restart)
        state = cls(folder, db)
        status = state._meta("status")
        if status in ("running", "complete") and state._meta("fingerprint") != fingerprint:
            if not restart:
                db.close()
                raise StateError(
                    f"{folder}: an unfinished export of this object with other options "
                    "(fields, filter, since, deleted rows or money) is there; run it again "
                    "with the same options to finish it, or pass --restart to drop it"
                )
            state._reset()
        elif status not in ("running", "complete"):
            state._reset()
        state._set("fingerprint", fingerprint)
        state._set("status", state._meta("status") or "running")
        state._remove_strays()
        return state

    # ------------------------------------------------------------------ reading

    @property
    def pages(self) -> int:
        """Pages recorded so far."""
        return int(self.db.execute("SELECT count(*) FROM parts").fetchone()[0])

    @property
    def rows(self) -> int:
        """Records in the recorded pages."""
        return int(self.db.execute("SELECT coalesce(sum(rows), 0) FROM parts").fetchone()[0])

    def cursor(self, part: int = 0) -> str | None:
        """The cursor after the last recorded page of a range (None: from its start)."""
        row = self.db.execute(
            "SELECT cursor FROM parts WHERE part = ? ORDER BY n DESC LIMIT 1", (part,)
        ).fetchone()
        return row[0] if row else None

    def last_id(self, part: int) -> str | None:
        """The id of the last record recorded in a range."""
        row = self.db.execute(
            "SELECT last_id FROM parts WHERE part = ? ORDER BY n DESC LIMIT 1", (part,)
        ).fetchone()
        return row[0] if row and row[0] else None

    def pages_of(self, part: int) -> int:
        """Pages recorded for one range."""
        row = self.db.execute("SELECT count(*) FROM parts WHERE part = ?", (part,)).fetchone()
        return int(row[0])

    @property
    def ranges(self) -> list[list[str | None]] | None:
        """The id ranges read side by side after the first page (None: not decided yet)."""
        text = self._meta("ranges")
        return json.loads(text) if text else None

    def set_ranges(self, ranges: list[list[str | None]]) -> None:
        """Decide the ranges once; a resumed export reads the same ones."""
        self._set("ranges", json.dumps(ranges))

    def range_done(self, part: int) -> bool:
        """Every page of this range is recorded."""
        return self._meta(f"done:{part}") == "1"

    def mark_range_done(self, part: int) -> None:
        """Note that a range has no page left."""
        self._set(f"done:{part}", "1")

    @property
    def latest(self) -> str | None:
        """The latest ``updatedAt`` among the recorded pages."""
        row = self.db.execute("SELECT max(latest) FROM parts").fetchone()
        return row[0] if row and row[0] else None

    @property
    def complete(self) -> bool:
        """Every page has been fetched; the output is still to be assembled."""
        return self._meta("status") == "complete"

    def last_since(self) -> str | None:
        """The next ``since`` a finished export stored."""
        return self._meta("next_since")

    def frames(self) -> Iterator[pl.DataFrame]:
        """The recorded pages, in order."""
        for (n,) in self.db.execute("SELECT n FROM parts ORDER BY part, n").fetchall():
            yield pl.read_parquet(self._part(n))

    # ------------------------------------------------------------------ writing

    def add_page(
        self,
        frame: pl.DataFrame,
        cursor: str | None,
        latest: str | None,
        part: int = 0,
        last_id: str | None = None,
    ) -> None:
        """Write one page's part file, then record it with the cursor after it."""
        row = self.db.execute("SELECT coalesce(max(n), 0) FROM parts").fetchone()
        n = int(row[0]) + 1
        final = self._part(n)
        partial = final.with_suffix(".partial")
        frame.write_parquet(partial)
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, final)
        self.db.execute(
            "INSERT INTO parts (n, part, cursor, last_id, rows, latest) VALUES (?, ?, ?, ?, ?, ?)",
            (n, part, cursor, last_id, frame.height, latest),
        )

    def mark_complete(self) -> None:
        """Every page is fetched."""
        self._set("status", "complete")

    def finish(self, next_since: str | None) -> None:
        """The output is in place: drop the parts, keep the next ``since``."""
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM parts")
        self.db.execute("DELETE FROM meta WHERE key = 'ranges' OR key LIKE 'done:%'")
        self.db.execute(
            "INSERT OR REPLACE INTO meta VALUES ('status', 'finished'), ('next_since', ?)",
            (next_since,),
        )
        self.db.execute("COMMIT")
        self._remove_strays()

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    # ------------------------------------------------------------------ inside

    @staticmethod
    def _replace_older(folder: Path, restart: bool) -> None:
        """An export state of an earlier layout: dropped if finished (or ``restart``)."""
        path = folder / "export.sqlite"
        with sqlite3.connect(path) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'status'").fetchone()
        if row is not None and row[0] in ("running", "complete") and not restart:
            raise StateError(
                f"{folder}: an unfinished export written by an earlier version of "
                "twenty-pipeline is there; pass --restart to start it over"
            )
        for name in ("export.sqlite", "export.sqlite-wal", "export.sqlite-shm"):
            (folder / name).unlink(missing_ok=True)
        for part in folder.glob("part-*"):
            part.unlink()

    def _part(self, n: int) -> Path:
        return self.folder / f"part-{n:06d}.parquet"

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _reset(self) -> None:
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM parts")
        self.db.execute("DELETE FROM meta WHERE key = 'ranges' OR key LIKE 'done:%'")
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('status', 'running')")
        self.db.execute("COMMIT")

    def _remove_strays(self) -> None:
        """Part files the database does not record (a kill between write and record)."""
        kept = {self._part(n).name for (n,) in self.db.execute("SELECT n FROM parts")}
        for path in self.folder.glob("part-*"):
            if path.name not in kept:
                path.unlink(missing_ok=True)
