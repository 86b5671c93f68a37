"""CSV and TSV: encoding, delimiter, structure, then a lazy polars scan in chunks.

``_row`` is the spreadsheet row (the header is row 1). Opening finds the encoding (and
transcodes to a temporary UTF-8 copy when polars cannot read the file as it is), the
delimiter, and the rows to reject or skip (see :mod:`pipeline.sources.csvscan`); the
chunks are then read lazily, parsing only the columns asked for.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import polars as pl

from pipeline.errors import InputError
from pipeline.sources.base import ROW, register_source
from pipeline.sources.csvscan import scan_structure
from pipeline.sources.encoding import (
    SAMPLE_BYTES,
    Encoding,
    NotUtf8,
    detect,
    page_of_other_lines,
    transcode,
)
from pipeline.sources.files import FileSource


def sniff_delimiter(text: str) -> str:
    """The delimiter of a CSV sample: one of , ; tab |, by csv.Sniffer, else a count."""
    lines = [line for line in text.splitlines()[:50] if line.strip()]
    sample = "\n".join(lines)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        header = lines[0] if lines else ""
        counts = {d: header.count(d) for d in ",;\t|"}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","


def _is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")


class CsvSource(FileSource):
    """A delimited text file; the delimiter is the mapping's, else sniffed."""

    format = "csv"
    default_delimiter: str | None = None

    def _open(self) -> None:
        with self.path.open("rb") as handle:
            sample = handle.read(SAMPLE_BYTES)
            complete = not handle.read(1)
        if not sample.strip():
            raise InputError(f"{self.path}: the file is empty")
        found = self._encoding(sample, complete)
        encoding = found.name
        self.info.encoding = encoding
        self.info.encoding_guessed = found.guessed
        self.info.encoding_samples = list(found.samples)
        cr_only = b"\r" in sample and b"\n" not in sample
        # UTF-8 over the sample but not further on (two exports pasted together): then
        # each line is read as what it is
        may_mix = not self.spec.encoding and found.line_page is None and _is_utf8(encoding)
        try:
            text_path = self.path
            if found.line_page is not None or cr_only or codecs.lookup(encoding).name != "utf-8":
                text_path = self._transcode(
                    encoding, line_page=found.line_page, cr_only=cr_only, may_mix=may_mix
                )
            self._scan(text_path, encoding)
        except NotUtf8:
            if not may_mix:
                raise InputError(
                    f"{self.path}: not valid {encoding}; set source.encoding in the mapping, "
                    "e.g. cp1252"
                ) from None
            page = page_of_other_lines(self.path)
            self.close()
            text_path = self._transcode(encoding, line_page=page.name, cr_only=cr_only)
            self.info.encoding_guessed = page.guessed
            self.info.encoding_samples = list(page.samples)
            self._scan(text_path, encoding)

    def _encoding(self, sample: bytes, complete: bool) -> Encoding:
        """The mapping's encoding (checked to exist), else the one detected."""
        if not self.spec.encoding:
            return detect(sample, complete=complete)
        try:
            codecs.lookup(self.spec.encoding)
        except LookupError:
            raise InputError(
                f"{self.path}: unknown encoding {self.spec.encoding!r} in source.encoding"
            ) from None
        return Encoding(self.spec.encoding)

    def _transcode(
        self, encoding: str, *, line_page: str | None, cr_only: bool, may_mix: bool = False
    ) -> Path:
        """A UTF-8 copy of the file, owned (and removed on close) by this source."""
        copy = transcode(self.path, encoding, line_page=line_page, cr_only=cr_only, may_mix=may_mix)
        self._keep_temporary(copy.path)
        if line_page is not None:
            self.info.mixed_lines = copy.mixed_lines
            self.info.mixed_encoding = line_page
        return copy.path

    def _scan(self, text_path: Path, encoding: str) -> None:
        """The delimiter, the columns and the rows to reject, from the UTF-8 text."""
        try:
            head = text_path.open(
                encoding="utf-8-sig" if text_path == self.path else "utf-8", newline=""
            )
            with head:
                preview = head.read(SAMPLE_BYTES)
        except UnicodeDecodeError as exc:
            if self.spec.encoding:
                raise InputError(
                    f"{self.path}: not valid {encoding} ({exc.reason} at byte "
                    f"{exc.start}); set source.encoding in the mapping, e.g. cp1252"
                ) from None
            raise NotUtf8 from None
        delimiter = self.spec.delimiter or self.default_delimiter or sniff_delimiter(preview)
        self.info.delimiter = delimiter
        structure = scan_structure(self.path, text_path, delimiter)
        if structure.copied:
            self._keep_temporary(structure.text_path)  # the clean copy replaces any other
        self._csv_path = structure.text_path
        self._skip = structure.skip
        self.info.columns = structure.columns
        self.info.blank_rows = structure.blank_rows
        self.info.rejects = structure.rejects

    def _chunks(self, columns: list[str] | None) -> Iterator[pl.DataFrame]:
        """Parse only the columns asked for, skipping the blank and rejected records."""
        names = [f"c{i}" for i in range(len(self.info.columns))]
        renames = dict(zip(names, self.info.columns, strict=True))
        keep = [n for n in names if columns is None or renames[n] in columns]
        lazy = pl.scan_csv(
            self._csv_path,
            has_header=False,
            skip_rows=1,
            separator=self.info.delimiter or ",",
            schema=dict.fromkeys(names, pl.String),
            truncate_ragged_lines=True,
            missing_columns="insert",
            extra_columns="ignore",  # a long ragged row first: it is rejected, not read
            empty_string_is_null=False,
            row_index_name="_index",
            encoding="utf8",
        )
        skip = pl.Series("skip", sorted(self._skip), dtype=pl.UInt32)
        lazy = lazy.select("_index", *keep)  # polars then parses only these columns
        rows = 0
        for batch in lazy.collect_batches(chunk_size=self.chunk_size):
            frame = batch.filter(~pl.col("_index").is_in(skip.implode()))
            if frame.height == 0:
                continue
            rows += frame.height
            yield frame.select(
                (pl.col("_index").cast(pl.Int64) + 2).alias(ROW),
                *[pl.col(n).alias(renames[n]) for n in keep],
            )
        if rows == 0 and not self._skip and self._records_after_header():
            raise InputError(
                f"{self.path}: the file holds more than a header but no data row could be "
                "read; check its line endings and delimiter (source.delimiter in the mapping)"
            )

    def _records_after_header(self) -> bool:
        """Whether the CSV holds a non-blank record after its header (the csv module's view)."""
        with self._csv_path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter=self.info.delimiter or ",")
            try:
                next(reader, None)
                return any(any(v.strip() for v in record) for record in islice(reader, 1000))
            except csv.Error:
                return True


class TsvSource(CsvSource):
    """Tab-separated text: the delimiter is a tab unless the mapping says otherwise."""

    format = "tsv"
    default_delimiter = "\t"


register_source("csv", CsvSource, extensions=(".csv", ".txt"))
register_source("tsv", TsvSource, extensions=(".tsv", ".tab"))
