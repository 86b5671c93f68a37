"""Frame helpers every source shares: values as text, NUL rows, headers, chunking.

Everything a source hands out is text (types come from the workspace, not from the
file), so the conversions live here once, whatever format produced the frame.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import polars as pl

from pipeline.errors import InputError
from pipeline.sources.base import ROW, ReadReject

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


def one_line(exc: BaseException) -> str:
    """The first line of an error's text, for a one-line message to the user."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def text_value(value: JsonValue) -> str | None:
    """A JSON value as the text a column holds: nested values as JSON, booleans lower case."""
    if value is None:
        return None
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def as_text(frame: pl.DataFrame, keep: tuple[str, ...] = ()) -> pl.DataFrame:
    """Every column as text; nested values as JSON. ``keep`` columns are left as they are."""
    exprs = []
    for name, dtype in frame.schema.items():
        if name in keep or dtype == pl.String:
            exprs.append(pl.col(name))
        elif isinstance(dtype, pl.Struct):
            exprs.append(pl.col(name).struct.json_encode().alias(name))
        elif isinstance(dtype, pl.List | pl.Array):
            exprs.append(
                pl.col(name)
                .map_elements(lambda v: json.dumps(list(v), default=str), return_dtype=pl.String)
                .alias(name)
            )
        else:
            exprs.append(pl.col(name).cast(pl.String).alias(name))
    return frame.select(exprs)


def check_headers(path: Path, columns: list[str]) -> None:
    """Refuse a header with an unnamed or a repeated column, naming every one at once."""
    problems = []
    seen: dict[str, int] = {}
    for i, name in enumerate(columns, start=1):
        if not name:
            problems.append(f"{path}: column {i} has no name in the header")
        elif name in seen:
            problems.append(
                f"{path}: columns {seen[name]} and {i} are both named {name!r}; "
                "rename one so the mapping can tell them apart"
            )
        else:
            seen[name] = i
    if problems:
        raise InputError("\n".join(problems))


def holds(path: Path, needle: bytes) -> bool:
    """Whether the file holds the bytes (read in blocks: memory stays flat, C speed)."""
    with path.open("rb") as handle:
        return any(needle in block for block in iter(lambda: handle.read(1 << 22), b""))


def nul_reason(column: str) -> str:
    """Why a row holding a NUL byte is rejected (Postgres refuses the byte)."""
    return f"column {column!r} holds a NUL byte (\\x00); remove it"


def nul_rejects(lazy: pl.LazyFrame) -> list[ReadReject]:
    """The records holding a NUL byte, naming the column; ``lazy`` has the ``_row`` column."""
    text = [c for c, t in lazy.collect_schema().items() if t == pl.String and c != ROW]
    if not text:
        return []
    hits = lazy.filter(
        pl.any_horizontal(pl.col(c).str.contains("\x00", literal=True) for c in text)
    ).collect(engine="streaming")
    if hits.height == 0:
        return []
    hits = as_text(hits, keep=(ROW,))
    columns = [c for c in hits.columns if c != ROW]
    rejects = []
    for record in hits.iter_rows(named=True):
        column = next(c for c in text if record[c] is not None and "\x00" in record[c])
        values = tuple("" if record[c] is None else str(record[c]) for c in columns)
        rejects.append(ReadReject(int(record[ROW]), nul_reason(column), values, column))
    return rejects


def numbered(frame: pl.DataFrame, first: int) -> pl.DataFrame:
    """The frame with ``_row`` (Int64) in front, the first row numbered ``first``."""
    return frame.with_row_index(ROW, offset=first).with_columns(pl.col(ROW).cast(pl.Int64))


def slices(frame: pl.DataFrame, size: int) -> Iterator[pl.DataFrame]:
    """A frame held in memory, ``size`` rows at a time."""
    for start in range(0, max(frame.height, 1), size):
        yield frame.slice(start, size)


def lazy_batches(lazy: pl.LazyFrame, skip: set[int], size: int) -> Iterator[pl.DataFrame]:
    """A scan numbered from 1 and read ``size`` rows at a time, as text, without ``skip`` rows."""
    numbered_scan = lazy.with_row_index(ROW, offset=1)
    if skip:
        rows = pl.Series("skip", sorted(skip), dtype=pl.UInt32)
        numbered_scan = numbered_scan.filter(~pl.col(ROW).is_in(rows.implode()))
    for batch in numbered_scan.collect_batches(chunk_size=size):
        yield as_text(batch.with_columns(pl.col(ROW).cast(pl.Int64)), keep=(ROW,))


def selected(frames: Iterable[pl.DataFrame], columns: list[str] | None) -> Iterator[pl.DataFrame]:
    """The non-empty frames, limited to ``_row`` and ``columns`` (all when None)."""
    for frame in frames:
        if frame.height:
            yield (
                frame
                if columns is None
                else frame.select(ROW, *[c for c in frame.columns if c in columns])
            )
