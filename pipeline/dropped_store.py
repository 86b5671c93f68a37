"""Values ``on_invalid: drop_value`` left out of records, kept in a step's state store.

One line per value (run, source row, column): its text, the reason its codec gave, and
the row's text for the rejects ledger. Recorded when the row's chunk is prepared, before
its batch is sent; a resume records it again, which changes nothing. Only the lines of
rows that Twenty confirmed count (a row later refused by Twenty is a rejected row, with
its own reason): the ledgers and the report join them with the row outcomes.

The table is added to a store that lacks it when the store is opened for writing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import polars as pl

from pipeline.sources import ROW
from pipeline.state import StateStore

TABLE = """CREATE TABLE IF NOT EXISTS dropped_values (
    run INTEGER NOT NULL, row INTEGER NOT NULL, col TEXT NOT NULL, value TEXT,
    reason TEXT NOT NULL, original TEXT, PRIMARY KEY (run, row, col))"""
LOADED_ROWS = (
    "SELECT d.row, d.col, d.value, d.reason, d.original FROM dropped_values d "
    "JOIN rows r ON r.run = d.run AND r.row = d.row "
    "WHERE d.run = ? AND r.outcome IN ('created', 'updated', 'restored')"
)


class DroppedValues:
    """The dropped values of one step's state store."""

    def __init__(self, store: StateStore, *, read_only: bool = False) -> None:
        self.store = store
        self.db = store.db
        if not read_only:
            self.db.execute(TABLE)

    def record(self, run: int, dropped: pl.DataFrame, columns: list[str]) -> None:
        """The lines of a prepared chunk (its row text, ``_column``, ``_value``, ``_reason``)."""
        if not dropped.height:
            return
        lines = [
            (
                run,
                int(line[ROW]),
                str(line["_column"]),
                line["_value"],
                str(line["_reason"]),
                json.dumps({c: line.get(c) for c in columns}, ensure_ascii=False),
            )
            for line in dropped.to_dicts()
        ]
        with self.store.transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO dropped_values VALUES (?, ?, ?, ?, ?, ?)", lines
            )

    def count(self, run: int) -> int:
        """Values dropped from rows Twenty confirmed."""
        if not self.store.has_table("dropped_values"):
            return 0
        found = self.db.execute(f"SELECT COUNT(*) FROM ({LOADED_ROWS})", (run,)).fetchone()
        return int(found[0])

    def lines(self, run: int) -> Iterator[tuple[int, str, str | None, str, dict[str, str]]]:
        """(row, column, value, reason, row text) of the values dropped from loaded rows."""
        if not self.store.has_table("dropped_values"):
            return
        for row, col, value, reason, original in self.db.execute(
            f"{LOADED_ROWS} ORDER BY d.row, d.col", (run,)
        ):
            yield int(row), str(col), value, str(reason), json.loads(original or "{}")
