"""Sinks: the writing side of the pipeline (ledgers today, export tomorrow), one shape.

A sink takes polars frames a batch at a time and writes them as they come, so memory
stays flat whatever the row count. The file is written under a temporary name in the
target's own folder and renamed into place on :meth:`Sink.close`, so a reader (a
person, a cron job picking up exports) never sees half a file: it is whole or absent.
:meth:`Sink.abort`, or an exception inside ``with open_sink(...)``, removes the
temporary file and leaves the target as it was.

A target that exists and is not a regular file (``/dev/stdout``, a FIFO, ``/dev/full``)
is written in place: it cannot be renamed over, and there is nothing to keep whole.

CSV cells that a spreadsheet would run as formulas are escaped by
:mod:`pipeline.cells`, as every CSV the tool writes is.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import os
import secrets
import shutil
import stat
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import polars as pl

from pipeline.cells import escape_row
from pipeline.errors import InputError, PipelineError
from pipeline.sources.frames import as_text, one_line

ROWS_PER_BATCH = 10_000
"""Rows :meth:`Sink.write_rows` gathers into one frame."""
PARQUET_PART_ROWS = 65_536
"""Rows a Parquet sink holds in memory before spilling them to a part file."""


class SinkError(PipelineError):
    """A file the tool writes could not be written; nothing partial is left behind."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


class Sink(ABC):
    """A file being written batch by batch, renamed into place on close.

    ``columns`` fixes the columns and their order: a frame's missing columns are
    written empty, its extra ones are dropped. ``label`` names the file in errors
    ("cannot write the rejects file …"). ``count`` is the number of rows written.
    """

    format = ""

    def __init__(self, path: Path, columns: Sequence[str], *, label: str = "output file") -> None:
        self.path = path
        self.columns = list(columns)
        self.label = label
        self.count = 0
        self._done = False
        self._in_place = False
        self._temporary: Path | None = None  # what abort removes: never the target itself
        try:
            self._target = path.resolve() if path.is_symlink() else path  # the link stays
            if self._target.exists():
                self._in_place = not stat.S_ISREG(self._target.stat().st_mode)
            if not self._in_place:
                self._temporary = _temporary_name(self._target)
            self._partial = self._temporary or self._target
            self._target.parent.mkdir(parents=True, exist_ok=True)
            self._start()
        except OSError as exc:
            self._release()
            self._discard()
            raise self._failed(exc) from None
        except BaseException:
            self._release()
            self._discard()
            raise

    @abstractmethod
    def _start(self) -> None:
        """Create ``self._partial`` and write what comes before the rows (a header)."""

    @abstractmethod
    def _write(self, frame: pl.DataFrame) -> None:
        """Write rows already limited to ``columns``, in order."""

    @abstractmethod
    def _finish(self) -> None:
        """Write what comes after the rows and close the partial file (flushed, synced)."""

    @abstractmethod
    def _release(self) -> None:
        """Close whatever is open without finishing it (abort); never raises."""

    def write(self, frame: pl.DataFrame) -> None:
        """Append the frame's rows; a failure aborts the sink and raises :class:`SinkError`."""
        if self._done:
            raise ValueError(f"{self.path}: the sink is closed")
        if frame.height == 0:
            return
        missing = [pl.lit(None, pl.String).alias(c) for c in self.columns if c not in frame.columns]
        if missing:
            frame = frame.with_columns(missing)
        try:
            self._write(frame.select(self.columns))
        except OSError as exc:
            self.abort()
            raise self._failed(exc) from None
        except BaseException:
            self.abort()
            raise
        self.count += frame.height

    def write_rows(self, rows: Iterable[Sequence[object]]) -> None:
        """Append rows given in ``columns`` order (a store's rows), as text, batch by batch."""
        schema = dict.fromkeys(self.columns, pl.String)
        pending = iter(rows)
        while batch := list(itertools.islice(pending, ROWS_PER_BATCH)):
            self.write(pl.DataFrame(batch, schema=schema, orient="row", strict=False))

    def close(self) -> None:
        """Finish the file and rename it into place (whole, or absent on failure)."""
        if self._done:
            return
        try:
            self._finish()
            if not self._in_place:
                os.replace(self._partial, self._target)
        except OSError as exc:
            self.abort()
            raise self._failed(exc) from None
        except BaseException:
            self.abort()
            raise
        self._done = True

    def abort(self) -> None:
        """Give up: remove the temporary file, leave the target as it was."""
        if self._done:
            return
        self._done = True
        self._release()
        self._discard()

    def _discard(self) -> None:
        if self._temporary is not None:
            with contextlib.suppress(OSError):  # never created (its folder may not exist)
                self._temporary.unlink(missing_ok=True)

    def _failed(self, exc: OSError) -> SinkError:
        return SinkError(
            f"cannot write the {self.label} {self.path}: {exc.strerror or exc}", self.path
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
        else:
            self.abort()


def _temporary_name(target: Path) -> Path:
    """A hidden name beside the target: the rename then stays on one file system."""
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")


def _open_partial(path: Path, in_place: bool) -> int:
    """A descriptor on the partial file; a new one is created exclusively (umask applies)."""
    if in_place:
        return os.open(path, os.O_WRONLY | os.O_TRUNC)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)


def _finish_handle(handle: IO[str] | IO[bytes], in_place: bool) -> None:
    """Flush and close; a regular file is synced first so the rename publishes whole data."""
    handle.flush()
    if not in_place:
        os.fsync(handle.fileno())
    handle.close()


def _close_quietly(handle: IO[str] | IO[bytes] | None) -> None:
    if handle is None:
        return
    with contextlib.suppress(OSError):  # aborting: the partial file is removed anyway
        handle.close()


class CsvSink(Sink):
    """UTF-8 CSV with a header row; every cell as text, formula-looking ones escaped."""

    format = "csv"

    _text: IO[str] | None = None

    def _start(self) -> None:
        fd = _open_partial(self._partial, self._in_place)
        self._text = os.fdopen(fd, "w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._text)
        self._writer.writerow(escape_row(self.columns))

    def _write(self, frame: pl.DataFrame) -> None:
        self._writer.writerows(escape_row(row) for row in as_text(frame).iter_rows())

    def _finish(self) -> None:
        if self._text is not None:
            _finish_handle(self._text, self._in_place)

    def _release(self) -> None:
        _close_quietly(self._text)


class JsonlSink(Sink):
    """One JSON object a line; values keep their types (nested ones stay nested)."""

    format = "jsonl"

    _handle: IO[bytes] | None = None

    def _start(self) -> None:
        self._handle = os.fdopen(_open_partial(self._partial, self._in_place), "wb")

    def _write(self, frame: pl.DataFrame) -> None:
        assert self._handle is not None
        frame.write_ndjson(self._handle)

    def _finish(self) -> None:
        if self._handle is not None:
            _finish_handle(self._handle, self._in_place)

    def _release(self) -> None:
        _close_quietly(self._handle)


class ParquetSink(Sink):
    """Parquet; the first batch fixes each column's type (a null-only column is text).

    Parquet is written whole at the end, so batches are spilled to Arrow IPC part
    files in a hidden folder beside the target and streamed into the Parquet file on
    close: memory holds one part at most.
    """

    format = "parquet"

    def _start(self) -> None:
        self._parts_dir = _temporary_name(self._target).with_suffix(".parts")
        self._parts_dir.mkdir()
        self._parts: list[Path] = []
        self._buffer: list[pl.DataFrame] = []
        self._buffered = 0
        self._schema: pl.Schema | None = None

    def _write(self, frame: pl.DataFrame) -> None:
        if self._schema is None:
            frame = frame.with_columns(
                pl.col(c).cast(pl.String) for c, t in frame.schema.items() if t == pl.Null
            )
            self._schema = frame.schema
        else:
            try:
                frame = frame.cast(self._schema)
            except pl.exceptions.PolarsError as exc:
                raise SinkError(
                    f"cannot write the {self.label} {self.path}: a batch does not have the "
                    f"column types of the first one ({one_line(exc)})",
                    self.path,
                ) from None
        self._buffer.append(frame)
        self._buffered += frame.height
        if self._buffered >= PARQUET_PART_ROWS:
            self._spill()

    def _spill(self) -> None:
        if not self._buffer:
            return
        part = self._parts_dir / f"{len(self._parts):06d}.arrow"
        pl.concat(self._buffer).write_ipc(part)
        self._parts.append(part)
        self._buffer, self._buffered = [], 0

    def _finish(self) -> None:
        self._spill()
        if self._parts:
            pl.scan_ipc(self._parts).sink_parquet(self._partial)
        else:
            pl.DataFrame(schema=dict.fromkeys(self.columns, pl.String)).write_parquet(self._partial)
        if not self._in_place:
            with self._partial.open("rb+") as handle:
                os.fsync(handle.fileno())
        shutil.rmtree(self._parts_dir, ignore_errors=True)

    def _release(self) -> None:
        self._buffer = []
        parts = getattr(self, "_parts_dir", None)
        if parts is not None:
            shutil.rmtree(parts, ignore_errors=True)


SINKS: dict[str, type[Sink]] = {"csv": CsvSink, "jsonl": JsonlSink, "parquet": ParquetSink}
_EXTENSIONS = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def sink_format(path: Path, fmt: str | None = None) -> str:
    """The declared format, else the one the extension names."""
    if fmt is not None:
        if fmt not in SINKS:
            raise InputError(
                f"{path}: unknown output format {fmt!r}; expected one of {', '.join(SINKS)}"
            )
        return fmt
    chosen = _EXTENSIONS.get(path.suffix.lower())
    if chosen is None:
        raise InputError(
            f"{path}: cannot tell the output format from the extension {path.suffix!r}; "
            f"name the file {', '.join(_EXTENSIONS)}, or give the format"
        )
    return chosen


def open_sink(
    path: str | Path,
    fmt: str | None = None,
    *,
    columns: Sequence[str],
    label: str = "output file",
) -> Sink:
    """A sink writing ``columns`` to ``path`` in ``fmt`` (by default from the extension)."""
    target = Path(path)
    return SINKS[sink_format(target, fmt)](target, columns, label=label)
