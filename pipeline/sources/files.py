"""The common life of a file source: refuse what is not a file, open, check, chunk, clean up.

Every file format shares the same edges: a FIFO or a folder is refused before it is
opened, any library error while opening or reading becomes one line naming the file,
the header is checked for unnamed or repeated columns, and a temporary copy (a
transcoded CSV) is removed on close or on any failure. A format only says how to open
(:meth:`FileSource._open`) and how to hand out frames (:meth:`FileSource._chunks`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

import polars as pl

from pipeline.errors import InputError
from pipeline.mapping import SourceSpec
from pipeline.sources.base import DEFAULT_CHUNK, ROW, SourceInfo, require_regular_file
from pipeline.sources.frames import (
    check_headers,
    lazy_batches,
    nul_rejects,
    one_line,
    selected,
    slices,
)

OPEN_ERRORS = (pl.exceptions.PolarsError, OSError, ValueError, RecursionError)
"""What a reading library raises on a file it cannot read (told to the user in one line)."""


class FileSource(ABC):
    """A source read from one file; subclasses give the format."""

    format = ""

    def __init__(self, path: Path, spec: SourceSpec, *, chunk_size: int = DEFAULT_CHUNK) -> None:
        self.path = path
        self.spec = spec
        self.chunk_size = chunk_size
        require_regular_file(path)
        self.info = SourceInfo(path, self.format, [])
        self._temporary: Path | None = None
        try:
            self._open()
            check_headers(path, self.info.columns)
        except InputError:
            self.close()
            raise
        except OPEN_ERRORS as exc:
            self.close()
            raise InputError(
                f"{path}: cannot read the {self.format} file: {one_line(exc)}"
            ) from None
        except BaseException:
            self.close()
            raise

    @abstractmethod
    def _open(self) -> None:
        """Read what the chunks need: at least ``info.columns``."""

    @abstractmethod
    def _chunks(self, columns: list[str] | None) -> Iterator[pl.DataFrame]:
        """The frames (see :meth:`chunks`), library errors left to the caller."""

    @property
    def columns(self) -> list[str]:
        """The columns of the file, in order."""
        return self.info.columns

    def chunks(self, columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
        """Frames of at most ``chunk_size`` rows: ``_row`` then the columns, as text."""
        try:
            yield from self._chunks(columns)
        except (pl.exceptions.PolarsError, OSError, RecursionError) as exc:
            raise InputError(f"{self.path}: cannot read: {one_line(exc)}") from None

    def _keep_temporary(self, path: Path) -> None:
        """Own a temporary file from now on (any earlier one is removed)."""
        if path != self._temporary:
            self.close()
        self._temporary = path

    def close(self) -> None:
        """Remove any temporary copy."""
        if self._temporary is not None:
            self._temporary.unlink(missing_ok=True)
            self._temporary = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class FrameSource(FileSource):
    """A file read whole into memory (a workbook, a JSON array), then sliced."""

    def _open(self) -> None:
        frame = self._read()
        rejects = nul_rejects(frame.lazy())
        if rejects:
            frame = frame.filter(~pl.col(ROW).is_in([r.row for r in rejects]))
        self.info.rejects.extend(rejects)
        self._frame = frame

    @abstractmethod
    def _read(self) -> pl.DataFrame:
        """The whole file as text with ``_row``; sets ``info.columns``."""

    def _chunks(self, columns: list[str] | None) -> Iterator[pl.DataFrame]:
        return selected(slices(self._frame, self.chunk_size), columns)


class LazySource(FileSource):
    """A file scanned lazily (Parquet, NDJSON): memory stays flat, rows numbered from 1."""

    def _open(self) -> None:
        self._lazy = self._scan()
        self._skip_rows: set[int] = set()
        if self._may_hold_nul():
            rejects = nul_rejects(self._lazy.with_row_index(ROW, offset=1))
            self.info.rejects.extend(rejects)
            self._skip_rows = {r.row for r in rejects}

    @abstractmethod
    def _scan(self) -> pl.LazyFrame:
        """The scan of the file; sets ``info.columns``."""

    def _may_hold_nul(self) -> bool:
        """Whether looking for NUL bytes is worth a pass over the file."""
        return True

    def _chunks(self, columns: list[str] | None) -> Iterator[pl.DataFrame]:
        return selected(lazy_batches(self._lazy, self._skip_rows, self.chunk_size), columns)
