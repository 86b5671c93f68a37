"""Cells of the CSV files the tool writes: escaped so a spreadsheet never executes them.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run as
a formula by Excel, LibreOffice and Google Sheets ("CSV injection"). Every CSV the tool
writes (rejects, success ledgers, validate's rejects) prefixes such a cell with one
apostrophe, which spreadsheets show as a plain-text marker. Cells that already start
with apostrophes followed by such a character get one more, so that :func:`unescape`
takes exactly one off and a written file reads back to the very values it was given.
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl

_ACTIVE = r"[=+\-@\t\r]"
_NEEDS_ESCAPE = re.compile(rf"'*{_ACTIVE}")
_ESCAPED = rf"^'+{_ACTIVE}"
LEDGER_COLUMNS = ("_row", "_stage", "_column", "_value", "_reason")
"""Columns the tool adds to a rejects file; a source holding them is a rejects file."""


def escape(value: Any) -> Any:
    """The cell as written to a CSV: formula-looking text gets a leading apostrophe."""
    if isinstance(value, str) and _NEEDS_ESCAPE.match(value):
        return "'" + value
    return value


def escape_row(values: list[Any] | tuple[Any, ...]) -> list[Any]:
    """Every cell of a row escaped."""
    return [escape(v) for v in values]


def unescape_frame(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """Undo :func:`escape` on the text columns of a file the tool wrote (vectorized)."""
    exprs = [
        pl.when(pl.col(c).str.contains(_ESCAPED))
        .then(pl.col(c).str.slice(1))
        .otherwise(pl.col(c))
        .alias(c)
        for c in columns
        if c in frame.columns and frame.schema[c] == pl.String
    ]
    return frame.with_columns(exprs) if exprs else frame


def is_ledger(columns: list[str]) -> bool:
    """Whether a file's header is that of a rejects file the tool wrote."""
    return "_reason" in columns and "_stage" in columns and "_row" in columns
