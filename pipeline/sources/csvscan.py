"""The structure of a UTF-8 CSV before polars reads it: header, blank lines, ragged rows, NULs.

polars pads short rows silently and cannot tell them from trailing empty cells, so the
field count of every record is taken here and only the exceptions are kept. When every
line is a well-formed record (the usual case: no quoted field spans lines, no stray
quote) polars checks every line at once, in one vectorised pass; otherwise the csv
module walks the records (as Excel reads them: a quote inside an unquoted field is
literal) and writes a clean copy for polars to read.
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from pipeline.errors import InputError
from pipeline.sources.base import ReadReject
from pipeline.sources.encoding import SAMPLE_BYTES, NotUtf8
from pipeline.sources.frames import holds, nul_reason, one_line

if TYPE_CHECKING:
    from _csv import Writer as CsvWriter

csv.field_size_limit(1 << 30)

_MARKERS = ("\x1f", "\x1e", "\x1d", "\x01")
"""Separators polars may split lines on to read each line whole: bytes text never holds."""
_QUOTE = '"'


@dataclass(frozen=True)
class Structure:
    """What the scan found.

    ``text_path`` is the file to read the records from: the one scanned, or a clean
    copy the caller then owns (``copied``). ``skip`` holds the record indexes (row - 2)
    not to hand out: the blank lines and the rejected rows.
    """

    text_path: Path
    copied: bool
    columns: list[str]
    skip: frozenset[int]
    blank_rows: int
    rejects: list[ReadReject]


@dataclass
class _Findings:
    """Records found odd so far: blank ones, and the rejected ones with their reason.

    An empty reason stands for a NUL byte: it names the column once the fields are read.
    """

    blanks: list[int]
    wanted: dict[int, str]


def scan_structure(origin: Path, text_path: Path, delimiter: str) -> Structure:
    """Scan ``text_path`` (UTF-8, maybe with a BOM); ``origin`` is the file the user named.

    Raises :class:`NotUtf8` when the text turns out not to be UTF-8 past the sample.
    """
    header = read_header(origin, text_path, delimiter)
    width = len(header)
    has_nul = holds(text_path, b"\x00")
    with text_path.open("rb") as handle:
        sample = handle.read(SAMPLE_BYTES)
    marker = next((m for m in _MARKERS if m.encode() not in sample), None)
    if marker is None:
        return _walk_with_csv_module(origin, text_path, delimiter, has_nul)
    anomalies = _collect(origin, _anomalies(text_path, delimiter, marker, width, has_nul))
    if anomalies["irregular"].any():
        return _walk_with_csv_module(origin, text_path, delimiter, has_nul)
    found = _Findings([], {})
    for index, fields, blank, nul in anomalies.select(
        "index", "fields", "blank", "nul"
    ).iter_rows():
        record = int(index) - 1
        if blank:
            found.blanks.append(record)
        elif fields != width:
            found.wanted[record] = f"row has {fields} fields, the header has {width}"
        elif nul:
            found.wanted[record] = ""
    columns = [h.strip() for h in header]
    return _structure(text_path, delimiter, columns, found, copied=False)


def read_header(origin: Path, text_path: Path, delimiter: str) -> list[str]:
    """The first record, as the csv module reads it."""
    with text_path.open(encoding="utf-8-sig", newline="") as handle:
        try:
            return next(csv.reader(handle, delimiter=delimiter))
        except StopIteration:
            raise InputError(f"{origin}: the file is empty") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputError(f"{origin}: cannot read the header: {exc}") from None


def _anomalies(
    text_path: Path, delimiter: str, marker: str, width: int, has_nul: bool
) -> pl.LazyFrame:
    """The lines after the header that are blank, ragged, hold a NUL, or are irregular.

    polars reads each line as one field (split on ``marker``); a cheap count of the
    delimiters picks the few lines that may need the costly checks.
    """
    line = pl.col("line")
    lines = pl.scan_csv(
        text_path,
        has_header=False,
        separator=marker,
        quote_char=None,
        schema={"line": pl.String},
        truncate_ragged_lines=True,
        empty_string_is_null=False,
        encoding="utf8",
    )
    return (
        lines.with_row_index("index")
        .select(
            "index",
            "line",
            line.str.contains(_QUOTE, literal=True).alias("quoted"),
            line.str.contains("\r", literal=True).alias("cr"),
            (line.str.count_matches(delimiter, literal=True) + 1).alias("fields"),
            (line.str.strip_chars() == "").alias("blank"),
            (line.str.contains("\x00", literal=True) if has_nul else pl.lit(False)).alias("nul"),
        )
        .filter(pl.col("index") > 0)
        # the costly checks below run on the few lines that may need them only
        .filter(
            pl.col("quoted")
            | pl.col("cr")
            | (pl.col("fields") != width)
            | pl.col("blank")
            | pl.col("nul")
        )
        .with_columns(_fields_outside_quotes(delimiter), _irregular(delimiter))
        .filter(pl.col("irregular") | (pl.col("fields") != width) | pl.col("blank") | pl.col("nul"))
        .select("index", "irregular", "fields", "blank", "nul")
    )


def _fields_outside_quotes(delimiter: str) -> pl.Expr:
    """The field count of a line, separators inside quoted fields not counting."""
    line = pl.col("line")
    return (
        pl.when(pl.col("quoted"))
        .then(
            line.str.replace_all(f"{_QUOTE}[^{_QUOTE}]*{_QUOTE}", "").str.count_matches(
                delimiter, literal=True
            )
            + 1
        )
        .otherwise(pl.col("fields"))
        .alias("fields")
    )


def _irregular(delimiter: str) -> pl.Expr:
    """Whether a line must be read by the csv module rather than counted.

    An odd count of quotes: a quoted field spans lines. A quote inside an unquoted
    field ('12" pizza', '"A"B'): the csv module reads those as Excel does. A CR left in
    a line (polars drops the one of CRLF) ends a record for the csv module and Excel,
    or sits in a quoted field: either way, walk.
    """
    line = pl.col("line")
    sep = re.escape(delimiter)
    cell = f'(?:"(?:[^"]|"")*"|[^"{sep}]*)'
    odd_quotes = line.str.count_matches(_QUOTE, literal=True) % 2 == 1
    not_cells = ~line.str.contains(f"^{cell}(?:{sep}{cell})*\r?$")
    return ((pl.col("quoted") & (odd_quotes | not_cells)) | pl.col("cr")).alias("irregular")


def _collect(origin: Path, anomalies: pl.LazyFrame) -> pl.DataFrame:
    try:
        return anomalies.collect(engine="streaming")
    except pl.exceptions.PolarsError as exc:
        if "utf-8" in str(exc).lower() or "utf8" in str(exc).lower():
            raise NotUtf8 from None
        raise InputError(
            f"{origin}: cannot read: {one_line(exc)}; if it is not UTF-8, set "
            "source.encoding in the mapping"
        ) from None


def _walk_with_csv_module(
    origin: Path, text_path: Path, delimiter: str, has_nul: bool
) -> Structure:
    """The header, blank lines and ragged rows, by the csv module (any CSV).

    The records are written again as plain CSV to a temporary copy, which polars
    then reads: a quote inside an unquoted field is literal, as in Excel.
    """
    fd, name = tempfile.mkstemp(prefix="twenty-pipeline-", suffix=".csv")
    clean = Path(name)
    try:
        with (
            text_path.open(encoding="utf-8-sig", newline="") as handle,
            os.fdopen(fd, "w", encoding="utf-8", newline="") as out,
        ):
            reader = csv.reader(handle, delimiter=delimiter)
            # CRLF: the writer then quotes any field holding a CR or an LF
            writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
            try:
                header = next(reader)
            except StopIteration:
                raise InputError(f"{origin}: the file is empty") from None
            except (csv.Error, UnicodeDecodeError) as exc:
                raise InputError(f"{origin}: cannot read the header: {exc}") from None
            writer.writerow(header)
            found = _Findings([], {})
            try:
                _copy_records(reader, writer, len(header), has_nul, found)
            except UnicodeDecodeError:
                raise NotUtf8 from None
            except csv.Error as exc:
                raise InputError(
                    f"{origin}: malformed CSV near line {reader.line_num}: {exc}"
                ) from None
        columns = [h.strip() for h in header]
        return _structure(clean, delimiter, columns, found, copied=True)
    except BaseException:
        clean.unlink(missing_ok=True)
        raise


def _copy_records(
    reader: Iterator[list[str]],
    writer: CsvWriter,
    width: int,
    has_nul: bool,
    found: _Findings,
) -> None:
    """Copy every record, noting the blank, ragged and NUL-holding ones in ``found``.

    Reading, counting and writing run in C: only odd records cost Python time.
    """
    offset = 0
    while block := list(islice(reader, 1 << 16)):
        writer.writerows(block)
        lengths = list(map(len, block))
        counts = pl.Series(lengths, dtype=pl.Int32)
        for index in (counts != width).arg_true().to_list():
            count = lengths[index]
            if count == 0:
                found.blanks.append(offset + index)
            else:
                found.wanted[offset + index] = f"row has {count} fields, the header has {width}"
        if has_nul:
            for index, record in enumerate(block):
                if offset + index not in found.wanted and any("\x00" in v for v in record):
                    found.wanted[offset + index] = ""
        offset += len(block)


def _structure(
    text_path: Path, delimiter: str, columns: list[str], found: _Findings, *, copied: bool
) -> Structure:
    rejects = _reject_values(text_path, delimiter, columns, found.wanted) if found.wanted else []
    return Structure(
        text_path=text_path,
        copied=copied,
        columns=columns,
        skip=frozenset({r.row - 2 for r in rejects} | set(found.blanks)),
        blank_rows=len(found.blanks),
        rejects=rejects,
    )


def _reject_values(
    text_path: Path, delimiter: str, header: list[str], wanted: dict[int, str]
) -> list[ReadReject]:
    """Read back every field of the rejected records, for the rejects file."""
    out = []
    with text_path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        next(reader, None)
        for index, record in enumerate(reader):
            reason = wanted.get(index)
            if reason is None:
                continue
            column = None
            if not reason:
                at = next((i for i, v in enumerate(record) if "\x00" in v), 0)
                column = header[at] if at < len(header) else f"field {at + 1}"
                reason = nul_reason(column)
            out.append(ReadReject(index + 2, reason, tuple(record), column))
            if len(out) == len(wanted):
                break
        return out
