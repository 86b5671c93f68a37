"""Read: files -> polars frames of text, in chunks, each row with its source row number.

Everything is read as text (types come from the workspace). ``_row`` is the number a
person sees: the spreadsheet row for CSV / TSV / XLSX (the header is row 1), the
record number for Parquet / JSON / NDJSON. Memory stays flat: CSV, Parquet and NDJSON
are scanned lazily and handed out ``chunk_size`` rows at a time.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import polars as pl
from charset_normalizer import from_bytes

from pipeline.errors import InputError
from pipeline.mapping import EXTENSIONS, SourceSpec

ROW = "_row"
SINGLE_BYTE_WESTERN = frozenset(
    {
        "latin-1",
        "iso8859-1",
        "ascii",
        "cp1252",
        "cp1250",
        "cp1257",
        "iso8859-2",
        "iso8859-15",
        "mac-roman",
    }
)
SINGLE_BYTE = SINGLE_BYTE_WESTERN | {"cp852", "cp850", "cp1254", "iso8859-9", "mac-latin2"}
SAMPLE_BYTES = 256 * 1024
DEFAULT_CHUNK = 100_000
csv.field_size_limit(1 << 30)


@dataclass(frozen=True)
class ReadReject:
    """A row the reader could not take (ragged), with what it holds."""

    row: int
    reason: str
    values: tuple[str, ...]


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


def detect_format(path: Path, declared: str | None) -> str:
    """The format declared in the mapping, else from the extension."""
    if declared:
        return declared
    fmt = EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"{path}: cannot tell the format from the extension {path.suffix!r}; "
            "set source.format (csv, tsv, xlsx, parquet, json, ndjson) in the mapping"
        )
    return fmt


def detect_encoding(sample: bytes) -> str:
    """utf-8 (with or without BOM), utf-16 with BOM, else charset-normalizer's best guess."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        sample.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(sample) - 4:  # a character cut by the end of the sample
            return "utf-8"
    matches = from_bytes(sample)
    best = matches.best()
    name = _codec(best.encoding) if best is not None else "cp1252"
    if name not in SINGLE_BYTE_WESTERN:
        return name
    # Short samples leave the single-byte code pages close. Read the bytes each way
    # charset-normalizer found plausible and keep the reading with the most letters
    # (cp1250 "Łódź" reads as "£ódŸ" in cp1252). Ties go to cp1252, what Excel on
    # Western Windows writes (it also has the curly quotes and euro sign latin-1 lacks).
    candidates = ["cp1252", *(c for m in matches if (c := _codec(m.encoding)) in SINGLE_BYTE)]

    def letters(encoding: str) -> int:
        try:
            text = sample.decode(encoding)
        except UnicodeDecodeError:
            return -1
        return sum(1 for ch in text if ord(ch) > 127 and ch.isalpha())

    return max(dict.fromkeys(candidates), key=letters)


def _codec(name: str) -> str:
    return codecs.lookup(name).name


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


class SourceReader:
    """Opens one source file and hands out chunks of text columns plus ``_row``."""

    def __init__(
        self, path: str | Path, spec: SourceSpec | None = None, *, chunk_size: int = DEFAULT_CHUNK
    ) -> None:
        self.path = Path(path)
        self.spec = spec or SourceSpec()
        self.chunk_size = chunk_size
        if not self.path.exists():
            raise InputError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise InputError(f"{self.path}: is a folder, not a data file")
        self.format = detect_format(self.path, self.spec.format)
        self._tmp: Path | None = None
        self.info = SourceInfo(self.path, self.format, [])
        if self.format in ("csv", "tsv"):
            self._open_csv()
        elif self.format == "xlsx":
            self._frame = self._read_xlsx()
        elif self.format == "parquet":
            self._lazy = pl.scan_parquet(self.path)
            self.info.columns = list(self._lazy.collect_schema().names())
        elif self.format == "ndjson":
            self._lazy = pl.scan_ndjson(self.path, infer_schema_length=1000)
            self.info.columns = list(self._lazy.collect_schema().names())
        else:
            self._frame = self._read_json()
        _check_headers(self.path, self.info.columns)

    def close(self) -> None:
        """Remove any temporary transcoded copy."""
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def __enter__(self) -> SourceReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ CSV

    def _open_csv(self) -> None:
        with self.path.open("rb") as handle:
            sample = handle.read(SAMPLE_BYTES)
        if not sample.strip():
            raise InputError(f"{self.path}: the file is empty")
        encoding = self.spec.encoding or detect_encoding(sample)
        self.info.encoding = encoding
        text_path = self.path
        if codecs.lookup(encoding).name not in ("utf-8",):
            text_path = self._transcode(encoding)
        try:
            head = text_path.open(
                encoding="utf-8-sig" if text_path == self.path else "utf-8", newline=""
            )
            with head:
                preview = head.read(SAMPLE_BYTES)
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{self.path}: not valid {encoding} ({exc.reason} at byte "
                f"{exc.start}); set source.encoding in the mapping, e.g. cp1252"
            ) from None
        delimiter = self.spec.delimiter or (
            "\t" if self.format == "tsv" else sniff_delimiter(preview)
        )
        self.info.delimiter = delimiter
        self._csv_path = text_path
        self._scan_csv_structure(text_path, delimiter)

    def _transcode(self, encoding: str) -> Path:
        """Copy the file to UTF-8 (streamed: memory stays flat) for polars to read."""
        fd, name = tempfile.mkstemp(prefix="twenty-pipeline-", suffix=".csv")
        self._tmp = Path(name)
        decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
        try:
            with (
                self.path.open("rb") as src,
                os.fdopen(fd, "w", encoding="utf-8", newline="") as dst,
            ):
                offset = 0
                while block := src.read(1 << 20):
                    try:
                        dst.write(decoder.decode(block))
                    except UnicodeDecodeError as exc:
                        raise InputError(
                            f"{self.path}: not valid {encoding} at byte {offset + exc.start}; "
                            "set source.encoding in the mapping"
                        ) from None
                    offset += len(block)
                dst.write(decoder.decode(b"", final=True))
        except BaseException:
            self.close()
            raise
        return self._tmp

    def _scan_csv_structure(self, text_path: Path, delimiter: str) -> None:
        """Find the header, blank lines and ragged rows before polars reads the data.

        polars pads short rows silently and cannot tell them from trailing empty
        cells, so the field count of every record is taken here and only the
        exceptions are kept. When no quoted field spans lines (the usual case) a line
        is a record, and polars counts the fields of every line at once; otherwise
        the csv module walks the records.
        """
        header = self._read_header(text_path, delimiter)
        self.info.columns = [h.strip() for h in header]
        width = len(header)
        with text_path.open("rb") as handle:
            sample = handle.read(SAMPLE_BYTES)
        # polars reads each line as one field: a separator byte the text never holds
        marker = next(
            (m for m in ("\x1f", "\x1e", "\x1d", "\x01") if m.encode() not in sample), None
        )
        if marker is None:
            self._scan_with_csv_module(text_path, delimiter)
            return
        quote = '"'
        line = pl.col("line")
        odd = (
            pl.scan_csv(
                text_path,
                has_header=False,
                separator=marker,
                quote_char=None,
                schema={"line": pl.String},
                truncate_ragged_lines=True,
                empty_string_is_null=False,
                encoding="utf8",
            )
            .with_row_index("index")
            .select(
                "index",
                (line.str.count_matches(quote, literal=True) % 2 == 1).alias("open_quote"),
                (
                    line.str.replace_all(f"{quote}[^{quote}]*{quote}", "").str.count_matches(
                        delimiter, literal=True
                    )
                    + 1
                ).alias("fields"),
                (line.str.strip_chars() == "").alias("blank"),
            )
            .filter(pl.col("open_quote") | (pl.col("fields") != width) | pl.col("blank"))
            .filter(pl.col("index") > 0)
        )
        try:
            anomalies = odd.collect(engine="streaming")
        except pl.exceptions.ComputeError as exc:
            raise InputError(
                f"{self.path}: cannot read: {exc}; if it is not UTF-8, set "
                "source.encoding in the mapping"
            ) from None
        if anomalies["open_quote"].any():
            # a quoted field spans lines: lines are not records, walk the records instead
            self._scan_with_csv_module(text_path, delimiter)
            return
        blanks: list[int] = []
        rejects: list[ReadReject] = []
        for index, fields, blank in anomalies.select("index", "fields", "blank").iter_rows():
            record = int(index) - 1
            if blank:
                blanks.append(record)
            else:
                rejects.append(
                    ReadReject(record + 2, f"row has {fields} fields, the header has {width}", ())
                )
        if rejects:
            rejects = self._ragged_values(text_path, delimiter, rejects)
        self._skip = {r.row - 2 for r in rejects} | set(blanks)
        self.info.blank_rows = len(blanks)
        self.info.rejects = rejects

    def _read_header(self, text_path: Path, delimiter: str) -> list[str]:
        with text_path.open(encoding="utf-8-sig", newline="") as handle:
            try:
                return next(csv.reader(handle, delimiter=delimiter))
            except StopIteration:
                raise InputError(f"{self.path}: the file is empty") from None
            except (csv.Error, UnicodeDecodeError) as exc:
                raise InputError(f"{self.path}: cannot read the header: {exc}") from None

    def _scan_with_csv_module(self, text_path: Path, delimiter: str) -> None:
        """The header, blank lines and ragged rows, by the csv module (any CSV)."""
        encoding = "utf-8-sig"
        with text_path.open(encoding=encoding, newline="") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            try:
                header = next(reader)
            except StopIteration:
                raise InputError(f"{self.path}: the file is empty") from None
            except (csv.Error, UnicodeDecodeError) as exc:
                raise InputError(f"{self.path}: cannot read the header: {exc}") from None
            self.info.columns = [h.strip() for h in header]
            width = len(header)
            blanks: list[int] = []
            rejects: list[ReadReject] = []
            offset = 0
            try:
                # map(len, reader) runs in C: only the rare odd record costs Python time.
                while block := list(islice(map(len, reader), 1 << 20)):
                    counts = pl.Series(block, dtype=pl.Int32)
                    odd = (counts != width).arg_true().to_list()
                    for index in odd:
                        count = block[index]
                        if count == 0:
                            blanks.append(offset + index)
                        else:
                            rejects.append(
                                ReadReject(
                                    offset + index + 2,
                                    f"row has {count} fields, the header has {width}",
                                    (),
                                )
                            )
                    offset += len(block)
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{self.path}: not valid UTF-8 ({exc.reason}); set "
                    "source.encoding in the mapping, e.g. cp1252"
                ) from None
            except csv.Error as exc:
                raise InputError(
                    f"{self.path}: malformed CSV near line {reader.line_num}: {exc}"
                ) from None
        if rejects:
            rejects = self._ragged_values(text_path, delimiter, rejects)
        self._skip = {r.row - 2 for r in rejects} | set(blanks)
        self.info.blank_rows = len(blanks)
        self.info.rejects = rejects

    def _ragged_values(
        self, text_path: Path, delimiter: str, rejects: list[ReadReject]
    ) -> list[ReadReject]:
        """Read back what the ragged records hold, for the rejects file."""
        wanted = {r.row - 2: r for r in rejects}
        out = []
        with text_path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            next(reader, None)
            for index, record in enumerate(reader):
                found = wanted.get(index)
                if found is not None:
                    out.append(ReadReject(found.row, found.reason, tuple(record)))
                    if len(out) == len(wanted):
                        break
        return out

    def _csv_chunks(self, wanted: list[str] | None) -> Iterator[pl.DataFrame]:
        names = [f"c{i}" for i in range(len(self.info.columns))]
        renames = dict(zip(names, self.info.columns, strict=True))
        keep = [n for n in names if wanted is None or renames[n] in wanted]
        lazy = pl.scan_csv(
            self._csv_path,
            has_header=False,
            skip_rows=1,
            separator=self.info.delimiter or ",",
            schema=dict.fromkeys(names, pl.String),
            truncate_ragged_lines=True,
            missing_columns="insert",
            empty_string_is_null=False,
            row_index_name="_index",
            encoding="utf8",
        )
        skip = pl.Series("skip", sorted(self._skip), dtype=pl.UInt32)
        lazy = lazy.select("_index", *keep)  # polars then parses only these columns
        for batch in lazy.collect_batches(chunk_size=self.chunk_size):
            frame = batch.filter(~pl.col("_index").is_in(skip.implode()))
            if frame.height == 0:
                continue
            yield frame.select(
                (pl.col("_index").cast(pl.Int64) + 2).alias(ROW),
                *[pl.col(n).alias(renames[n]) for n in keep],
            )

    # ------------------------------------------------------------------ other formats

    def _read_xlsx(self) -> pl.DataFrame:
        try:
            frame = pl.read_excel(
                self.path,
                sheet_name=self.spec.sheet,
                has_header=True,
                infer_schema_length=0,
                engine="calamine",
            )
        except Exception as exc:
            raise InputError(f"{self.path}: cannot read the workbook: {exc}") from None
        self.info.columns = [str(c).strip() for c in frame.columns]
        frame = frame.rename(dict(zip(frame.columns, self.info.columns, strict=True)))
        return (
            _as_text(frame).with_row_index(ROW, offset=2).with_columns(pl.col(ROW).cast(pl.Int64))
        )

    def _read_json(self) -> pl.DataFrame:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8-sig"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{self.path}: not valid JSON: {exc}") from None
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            data = lists[0] if len(lists) == 1 else [data]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise InputError(f"{self.path}: expected a JSON array of objects")
        columns: dict[str, None] = {}
        for record in data:
            columns.update(dict.fromkeys(record))
        self.info.columns = list(columns)
        rows = {c: [_text(r.get(c)) for r in data] for c in columns}
        frame = pl.DataFrame(rows, schema=dict.fromkeys(columns, pl.String))
        return frame.with_row_index(ROW, offset=1).with_columns(pl.col(ROW).cast(pl.Int64))

    def _lazy_chunks(self) -> Iterator[pl.DataFrame]:
        lazy = self._lazy.with_row_index(ROW, offset=1)
        for batch in lazy.collect_batches(chunk_size=self.chunk_size):
            yield _as_text(batch.with_columns(pl.col(ROW).cast(pl.Int64)), keep=(ROW,))

    # ------------------------------------------------------------------ public

    def chunks(self, columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
        """Frames of at most ``chunk_size`` rows: ``_row`` then the columns, as text.

        ``columns`` limits the frames to those columns (a CSV is then parsed for them
        only); by default every column comes.
        """
        try:
            if self.format in ("csv", "tsv"):
                yield from self._csv_chunks(columns)
                return
            if self.format in ("parquet", "ndjson"):
                frames: Iterator[pl.DataFrame] = self._lazy_chunks()
            else:
                frames = (
                    self._frame.slice(start, self.chunk_size)
                    for start in range(0, max(self._frame.height, 1), self.chunk_size)
                )
            for chunk in frames:
                if chunk.height:
                    yield (
                        chunk
                        if columns is None
                        else chunk.select(ROW, *[c for c in chunk.columns if c in columns])
                    )
        except pl.exceptions.ComputeError as exc:
            raise InputError(f"{self.path}: cannot read: {exc}") from None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _as_text(frame: pl.DataFrame, keep: tuple[str, ...] = ()) -> pl.DataFrame:
    """Every column as text; nested values as JSON."""
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
        elif dtype == pl.Boolean:
            exprs.append(pl.col(name).cast(pl.String).alias(name))
        else:
            exprs.append(pl.col(name).cast(pl.String).alias(name))
    return frame.select(exprs)


def _check_headers(path: Path, columns: list[str]) -> None:
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


def open_source(
    path: str | Path, spec: SourceSpec | None = None, *, chunk_size: int = DEFAULT_CHUNK
) -> SourceReader:
    """Open a source for reading (see :class:`SourceReader`)."""
    return SourceReader(path, spec, chunk_size=chunk_size)
