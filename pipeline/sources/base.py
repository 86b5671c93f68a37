"""The source seam: what every source hands out, and the registry that opens one by format.

A source is anything that yields the rows to import as polars frames of text, each row
with the number a person would use to find it (``_row``): a file today, a Twenty
workspace object tomorrow. Each format is one module of this package that calls
:func:`register_source` when imported; the registry imports every module of the
package the first time a format is looked up, so a new format needs no edit elsewhere.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import polars as pl

from pipeline.errors import InputError
from pipeline.mapping import SourceSpec

ROW = "_row"
"""The row-number column every chunk starts with."""
DEFAULT_CHUNK = 100_000


@dataclass(frozen=True)
class ReadReject:
    """A row the reader could not take (ragged, a NUL byte), with every field it holds.

    ``values`` may hold more fields than the header has columns (a ragged row); a
    rejects writer must keep the extra ones. ``column`` names the cell at fault, if one.
    """

    row: int
    reason: str
    values: tuple[str, ...]
    column: str | None = None


@dataclass
class SourceInfo:
    """What was learnt while opening a source."""

    path: Path
    format: str
    columns: list[str]
    encoding: str | None = None
    delimiter: str | None = None
    blank_rows: int = 0
    rejects: list[ReadReject] = field(default_factory=list)
    # the encoding was chosen between close code pages (say so, with a few words read)
    encoding_guessed: bool = False
    encoding_samples: list[str] = field(default_factory=list)
    # lines read in a single-byte code page in a file otherwise UTF-8 (two exports pasted)
    mixed_lines: int = 0
    mixed_encoding: str | None = None

    def describe_encoding(self) -> str | None:
        """The encoding for people: "cp1252 (guessed; e.g. Zoë, Hélène, Søren)"."""
        if self.encoding is None:
            return None
        examples = ", ".join(self.encoding_samples)
        if self.mixed_lines:
            lines = "line" if self.mixed_lines == 1 else "lines"
            return f"{self.encoding}, {self.mixed_lines:,} {lines} in {self.mixed_encoding}" + (
                f" (e.g. {examples})" if examples else ""
            )
        if self.encoding_guessed:
            return f"{self.encoding} (guessed" + (f"; e.g. {examples})" if examples else ")")
        return self.encoding


class Source(Protocol):
    """An open source: its columns, its chunks, what reading it rejected.

    ``chunks`` yields frames of at most the chunk size: ``_row`` (Int64) first, then
    the columns asked for (all by default) as text. Rows the source could not take are
    in ``info.rejects`` and never in a chunk. ``close`` frees whatever the source holds
    (temporary copies, connections); a source is also a context manager.
    """

    path: Path
    format: str
    info: SourceInfo

    @property
    def columns(self) -> list[str]: ...

    def chunks(self, columns: list[str] | None = None) -> Iterator[pl.DataFrame]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class SourceOpener(Protocol):
    """What a format registers: a source class, or any callable of this shape."""

    def __call__(self, path: Path, spec: SourceSpec, *, chunk_size: int) -> Source: ...


@dataclass(frozen=True)
class _Registration:
    opener: SourceOpener
    extensions: tuple[str, ...]


_REGISTRY: dict[str, _Registration] = {}


def register_source(fmt: str, opener: SourceOpener, *, extensions: tuple[str, ...] = ()) -> None:
    """Make ``fmt`` openable; ``extensions`` (".csv") tell it from a file name.

    A format or an extension registered twice is a programming error, refused here
    rather than left to whichever module happened to be imported last.
    """
    if fmt in _REGISTRY:
        raise ValueError(f"source format {fmt!r} is already registered")
    lowered = tuple(e.lower() for e in extensions)
    for ext in lowered:
        if not ext.startswith("."):
            raise ValueError(f"extension {ext!r} of format {fmt!r} must start with a dot")
        owner = _owner_of(ext)
        if owner is not None:
            raise ValueError(f"extension {ext!r} is already registered by format {owner!r}")
    _REGISTRY[fmt] = _Registration(opener, lowered)


def unregister_source(fmt: str) -> None:
    """Forget a format (tests, plugins replacing a built-in one)."""
    _REGISTRY.pop(fmt, None)


def formats() -> tuple[str, ...]:
    """Every format that can be opened, in registration order."""
    _discover()
    return tuple(_REGISTRY)


def _owner_of(extension: str) -> str | None:
    return next((f for f, r in _REGISTRY.items() if extension in r.extensions), None)


@functools.cache
def _discover() -> None:
    """Import every module of this package once, so that each registers its format."""
    for module in sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])):
        importlib.import_module(f"{__package__}.{module}")


def detect_format(path: Path, declared: str | None) -> str:
    """The format declared in the mapping, else the one registered for the extension."""
    _discover()
    if declared:
        if declared not in _REGISTRY:
            raise InputError(
                f"{path}: unknown source format {declared!r}; expected one of "
                f"{', '.join(_REGISTRY)}"
            )
        return declared
    fmt = _owner_of(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"{path}: cannot tell the format from the extension {path.suffix!r}; "
            f"set source.format ({', '.join(_REGISTRY)}) in the mapping"
        )
    return fmt


def require_regular_file(path: Path) -> None:
    """Refuse what is not a regular file before anything opens it.

    A FIFO would block in open(), /dev/zero would never end.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{path}: is a folder, not a data file")
    if not stat.S_ISREG(mode):
        raise InputError(f"{path}: not a regular file (a pipe, socket or device)")


class SourceReader:
    """The source registered for a path's format, behind the name callers use.

    It adds nothing to the source it holds: it exists so that callers open any
    format the same way and type against one class.
    """

    def __init__(
        self, path: str | Path, spec: SourceSpec | None = None, *, chunk_size: int = DEFAULT_CHUNK
    ) -> None:
        self.path = Path(path)
        self.spec = spec or SourceSpec()
        self.chunk_size = chunk_size
        try:
            fmt = detect_format(self.path, self.spec.format)
        except InputError:
            if not self.spec.format:
                require_regular_file(self.path)  # a missing file says so first
            raise
        self.format = fmt
        self._source = _REGISTRY[fmt].opener(self.path, self.spec, chunk_size=chunk_size)

    @property
    def info(self) -> SourceInfo:
        """What was learnt while opening the source."""
        return self._source.info

    @property
    def columns(self) -> list[str]:
        """The source's columns, in order."""
        return self._source.columns

    def chunks(self, columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
        """Frames of at most ``chunk_size`` rows: ``_row`` then the columns, as text.

        ``columns`` limits the frames to those columns (a CSV is then parsed for them
        only); by default every column comes.
        """
        return self._source.chunks(columns)

    def close(self) -> None:
        """Free what the source holds (temporary copies)."""
        self._source.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_source(
    path: str | Path, spec: SourceSpec | None = None, *, chunk_size: int = DEFAULT_CHUNK
) -> SourceReader:
    """Open a source for reading by its declared format, else by its extension."""
    return SourceReader(path, spec, chunk_size=chunk_size)
