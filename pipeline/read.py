"""Read: files -> polars frames of text, in chunks, each row with its source row number.

Everything is read as text (types come from the workspace). ``_row`` is the number a
person sees: the spreadsheet row for CSV / TSV / XLSX (the header is row 1), the
record number for Parquet / JSON / NDJSON. Memory stays flat: CSV, Parquet and NDJSON
are scanned lazily and handed out ``chunk_size`` rows at a time.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import os
import re
import stat
import tempfile
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import polars as pl
from charset_normalizer import from_bytes

from pipeline.errors import InputError
from pipeline.mapping import EXTENSIONS, SourceSpec

ROW = "_row"
SAMPLE_BYTES = 256 * 1024
DEFAULT_CHUNK = 100_000
csv.field_size_limit(1 << 30)


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


# Single-byte Latin code pages weighed against each other, in order of preference:
# cp1252 first (what Excel writes on Western Windows), then Central European, Baltic.
LATIN_PAGES = ("cp1252", "cp1250", "cp1257", "iso8859-2", "iso8859-13", "iso8859-15", "cp1254")
# The non-ASCII letters of each language written in those code pages (lower case). A
# word is plausible when one language holds all its non-ASCII letters.
LANGUAGES = {
    "fr": "àâæçéèêëîïôœùûüÿ",
    "es": "áéíñóúü",
    "pt": "áâãàçéêíóôõú",
    "it": "àèéìíîòóùú",
    "de": "äöüß",
    "nl": "áéíóúèëïöü",
    "da": "æøåé",
    "sv": "åäöé",
    "fi": "åäöšž",
    "is": "áðéíóúýþæö",
    "et": "äöõüšž",
    "ca": "àçèéíïòóúü",
    "cs": "áčďéěíňóřšťúůýž",
    "sk": "áäčďéíĺľňóôŕšťúýž",
    "pl": "ąćęłńóśźż",
    "hu": "áéíóöőúüű",
    "hr": "čćđšž",
    "ro": "ăâîșțşţ",
    "lt": "ąčęėįšųūž",
    "lv": "āčēģīķļņšūž",
    "tr": "çğıöşüâî",
    "sq": "çë",
}
_LATIN_LETTERS = frozenset("".join(LANGUAGES.values()))
_APOSTROPHES = frozenset("\u2019\u2018\u02bc")  # right, left single quote; modifier
_TOKEN = re.compile(r"[^\s!-/:-@\[-`{-~]+")
_NEUTRAL = frozenset("ªºµ")


class _NotUtf8(Exception):
    """The text handed to the structure scan is not UTF-8 after all."""


@dataclass(frozen=True)
class Encoding:
    """What detection found: the codec, whether it was a close guess, a few words read
    with it, and for a file mixing UTF-8 lines with another code page, that page."""

    name: str
    guessed: bool = False
    samples: tuple[str, ...] = ()
    line_page: str | None = None


def _script(ch: str) -> str:
    name = unicodedata.name(ch, "")
    word = name.split(" ", 1)[0]
    return "CJK" if word in ("CJK", "HIRAGANA", "KATAKANA", "HANGUL") else word


def _implausible(token: str) -> bool:
    """Whether a word holding non-ASCII characters cannot be what someone typed."""
    letters = [ch for ch in token if ch.isalpha() and ch not in _NEUTRAL]
    for i, ch in enumerate(token):
        if ord(ch) < 128 or (ch.isalpha() and ch not in _NEUTRAL) or ch in _APOSTROPHES:
            continue
        category = unicodedata.category(ch)
        before = i > 0 and token[i - 1].isalpha()
        after = i + 1 < len(token) and token[i + 1].isalpha()
        if category[0] == "C":
            return True  # a control character inside text
        if category in ("Sc",) and after:
            return True  # "£ukasz"
        if (category[0] == "S" or category == "No" or ch in _NEUTRAL) and before and after:
            return True  # "Ma³gorzata"
    for prev, ch in itertools.pairwise(letters):
        if prev.islower() and ch.isupper() and (ord(prev) > 127 or ord(ch) > 127):
            return True  # "ŁódŸ"
    wide = {low for ch in letters if ord(low := ch.lower()[:1]) > 127}  # İ: i + dot
    if not wide:
        return False
    scripts = {_script(ch) for ch in letters}
    if len(scripts) > 1:
        return True  # Latin and Cyrillic in one word
    if scripts != {"LATIN"}:
        return False
    if not wide <= _LATIN_LETTERS:
        return True
    return not any(wide <= set(chars) for chars in LANGUAGES.values())


def _words(text: str) -> dict[str, None]:
    return dict.fromkeys(t for t in _TOKEN.findall(text) if not t.isascii())


def _implausibility(text: str) -> int:
    """How many distinct words of the text cannot be right; C1 controls weigh most."""
    controls = sum(1 for ch in text if "\x80" <= ch <= "\x9f")
    return 1000 * controls + sum(1 for w in _words(text) if _implausible(w))


def _samples(text: str, count: int = 3) -> tuple[str, ...]:
    out: list[str] = []
    for word in _words(text):
        letters = "".join(ch for ch in word if ch.isalpha() or ch in _APOSTROPHES)
        if any(ord(ch) > 127 and ch.isalpha() for ch in letters) and letters not in out:
            out.append(letters)
            if len(out) == count:
                break
    return tuple(out)


def _single_byte(sample: bytes) -> Encoding:
    """The code page of a non-UTF-8 sample: cp1252 unless another reads clearly better."""
    scores: dict[str, int] = {}
    texts: dict[str, str] = {}
    for page in LATIN_PAGES:
        try:
            texts[page] = sample.decode(page)
        except UnicodeDecodeError:
            continue
        scores[page] = _implausibility(texts[page])
    if not scores or min(scores.values()) > 0:
        # no Latin page reads cleanly: let charset-normalizer propose (Cyrillic, Greek, CJK...)
        best = from_bytes(sample).best()
        if best is not None:
            other = _codec(best.encoding)
            if other not in scores:
                try:
                    texts[other] = sample.decode(other)
                    scores[other] = _implausibility(texts[other])
                except (UnicodeDecodeError, LookupError):
                    pass
    if not scores:
        return Encoding("cp1252")
    chosen = "cp1252" if "cp1252" in scores else min(scores, key=lambda p: scores[p])
    best_other = min(scores, key=lambda p: scores[p])
    if scores[best_other] < scores[chosen]:
        chosen = best_other
    close = any(
        texts[p] != texts[chosen] and scores[p] <= scores[chosen] + 1 for p in scores if p != chosen
    )
    return Encoding(chosen, guessed=close, samples=_samples(texts[chosen]))


def detect_encoding(sample: bytes, *, complete: bool = False) -> str:
    """The codec of a sample (see :func:`detect`)."""
    return detect(sample, complete=complete).name


def detect(sample: bytes, *, complete: bool = False) -> Encoding:
    """utf-8 (with or without BOM), utf-16 with BOM, a file mixing UTF-8 lines with lines
    of one code page, else the single-byte code page that reads best.

    ``complete`` says the sample is the whole file (a character cut at its end is then
    an error, not the edge of the sample).
    """
    if sample.startswith(codecs.BOM_UTF8):
        return Encoding("utf-8-sig")
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return Encoding("utf-16")
    wide = _utf16_without_bom(sample)
    if wide is not None:
        return Encoding(wide, guessed=True)
    try:
        sample.decode("utf-8")
        return Encoding("utf-8")
    except UnicodeDecodeError as exc:
        if not complete and exc.start >= len(sample) - 4:  # a character cut by the sample
            return Encoding("utf-8")
    lines = sample.split(b"\n")
    if not complete and len(lines) > 1:
        lines.pop()  # maybe cut by the end of the sample
    utf8 = 0
    others: list[bytes] = []
    for line in lines:
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
            utf8 += 1
        except UnicodeDecodeError:
            others.append(line)
    if utf8 and others:
        page = _single_byte(b"\n".join(others))
        if page.name in LATIN_PAGES:
            return Encoding("utf-8", page.guessed, page.samples, line_page=page.name)
    return _single_byte(sample)


def _utf16_without_bom(sample: bytes) -> str | None:
    """utf-16-le / -be when every other byte is NUL (ASCII text in UTF-16, no BOM)."""
    head = sample[: 1 << 14]
    if len(head) < 8:
        return None
    even, odd = head[0::2].count(0), head[1::2].count(0)
    half = len(head) // 2
    if odd >= 0.9 * half and even < 0.1 * half:
        return "utf-16-le"
    if even >= 0.9 * half and odd < 0.1 * half:
        return "utf-16-be"
    return None


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
        try:
            mode = self.path.stat().st_mode
        except FileNotFoundError:
            raise InputError(f"{self.path}: no such file") from None
        except OSError as exc:
            raise InputError(f"{self.path}: cannot open: {exc.strerror}") from None
        if stat.S_ISDIR(mode):
            raise InputError(f"{self.path}: is a folder, not a data file")
        if not stat.S_ISREG(mode):
            # a FIFO would block in open(), /dev/zero would never end
            raise InputError(f"{self.path}: not a regular file (a pipe, socket or device)")
        self.format = detect_format(self.path, self.spec.format)
        self._tmp: Path | None = None
        self._skip: set[int] = set()  # CSV: record indexes (row - 2) not to hand out
        self._skip_rows: set[int] = set()  # other formats: ``_row`` numbers not to hand out
        self.info = SourceInfo(self.path, self.format, [])
        try:
            self._open()
        except InputError:
            self.close()
            raise
        except (pl.exceptions.PolarsError, OSError, ValueError, RecursionError) as exc:
            self.close()
            raise InputError(
                f"{self.path}: cannot read the {self.format} file: {_one_line(exc)}"
            ) from None
        _check_headers(self.path, self.info.columns)

    def _open(self) -> None:
        if self.format in ("csv", "tsv"):
            self._open_csv()
        elif self.format == "xlsx":
            self._frame = self._read_xlsx()
        elif self.format == "parquet":
            self._lazy = pl.scan_parquet(self.path)
            self.info.columns = list(self._lazy.collect_schema().names())
        elif self.format == "ndjson":
            # every value as text (the mapping types them): the names from the whole file,
            # then a scan that reads each value, nested ones as JSON text
            names = self._ndjson_names()
            self._lazy = pl.scan_ndjson(self.path, schema=dict.fromkeys(names, pl.String))
            self.info.columns = names
        else:
            self._frame = self._read_json()
        if self.format == "parquet" or (
            self.format == "ndjson" and _holds(self.path, b"\\u0000")  # JSON escapes NUL
        ):
            self._find_nul_rows(self._lazy.with_row_index(ROW, offset=1))
        elif self.format in ("xlsx", "json"):
            self._find_nul_rows(self._frame.lazy())
            if self._skip_rows:
                self._frame = self._frame.filter(~pl.col(ROW).is_in(sorted(self._skip_rows)))

    def _ndjson_names(self) -> list[str]:
        """The keys of every NDJSON record, in the order they first appear."""
        try:
            return list(
                pl.scan_ndjson(self.path, infer_schema_length=None).collect_schema().names()
            )
        except pl.exceptions.PolarsError:
            pass  # types polars cannot reconcile (a struct, then a number): walk the lines
        names: dict[str, None] = {}
        with self.path.open(encoding="utf-8-sig", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(
                        f"{self.path}: line {number} is not valid JSON ({exc.msg})"
                    ) from None
                except RecursionError:
                    raise InputError(
                        f"{self.path}: line {number} is nested too deep to read"
                    ) from None
                if not isinstance(record, dict):
                    raise InputError(f"{self.path}: line {number} is not a JSON object")
                names.update(dict.fromkeys(record))
        return list(names)

    def _find_nul_rows(self, lazy: pl.LazyFrame) -> None:
        """Reject the records holding a NUL byte (Postgres refuses them), naming the column."""
        text = [c for c, t in lazy.collect_schema().items() if t == pl.String and c != ROW]
        if not text:
            return
        hits = lazy.filter(
            pl.any_horizontal(pl.col(c).str.contains("\x00", literal=True) for c in text)
        ).collect(engine="streaming")
        if hits.height == 0:
            return
        hits = _as_text(hits, keep=(ROW,))
        columns = [c for c in hits.columns if c != ROW]
        for record in hits.iter_rows(named=True):
            column = next(c for c in text if record[c] is not None and "\x00" in record[c])
            values = tuple("" if record[c] is None else str(record[c]) for c in columns)
            self.info.rejects.append(
                ReadReject(
                    int(record[ROW]),
                    f"column {column!r} holds a NUL byte (\\x00); remove it",
                    values,
                    column,
                )
            )
            self._skip_rows.add(int(record[ROW]))

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
            complete = not handle.read(1)
        if not sample.strip():
            raise InputError(f"{self.path}: the file is empty")
        if self.spec.encoding:
            try:
                codecs.lookup(self.spec.encoding)
                found = Encoding(self.spec.encoding)
            except LookupError:
                raise InputError(
                    f"{self.path}: unknown encoding {self.spec.encoding!r} in source.encoding"
                ) from None
        else:
            found = detect(sample, complete=complete)
        encoding = found.name
        self.info.encoding = encoding
        self.info.encoding_guessed = found.guessed
        self.info.encoding_samples = list(found.samples)
        cr_only = b"\r" in sample and b"\n" not in sample
        # UTF-8 over the sample but not further on (two exports pasted together): then
        # each line is read as what it is
        may_mix = (
            not self.spec.encoding
            and found.line_page is None
            and codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")
        )
        try:
            text_path = self.path
            if found.line_page is not None or cr_only or codecs.lookup(encoding).name != "utf-8":
                text_path = self._transcode(
                    encoding, line_page=found.line_page, cr_only=cr_only, may_mix=may_mix
                )
            self._scan_csv(text_path, encoding)
        except _NotUtf8:
            if not may_mix:
                raise InputError(
                    f"{self.path}: not valid {encoding}; set source.encoding in the mapping, "
                    "e.g. cp1252"
                ) from None
            page = self._page_of_other_lines()
            self.close()
            text_path = self._transcode(encoding, line_page=page.name, cr_only=cr_only)
            self.info.encoding_guessed = page.guessed
            self.info.encoding_samples = list(page.samples)
            self._scan_csv(text_path, encoding)

    def _scan_csv(self, text_path: Path, encoding: str) -> None:
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
            raise _NotUtf8 from None
        delimiter = self.spec.delimiter or (
            "\t" if self.format == "tsv" else sniff_delimiter(preview)
        )
        self.info.delimiter = delimiter
        self._csv_path = text_path
        self._scan_csv_structure(text_path, delimiter)

    def _page_of_other_lines(self) -> Encoding:
        """The code page of the lines that are not UTF-8 (a sample of them)."""
        others: list[bytes] = []
        size = 0
        with self.path.open("rb") as handle:
            for line in handle:
                if line.isascii():
                    continue
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    others.append(line)
                    size += len(line)
                    if size >= SAMPLE_BYTES:
                        break
        page = _single_byte(b"".join(others))
        if page.name not in LATIN_PAGES:
            raise InputError(
                f"{self.path}: some lines are UTF-8, others not; set source.encoding in the mapping"
            )
        return page

    def _transcode(
        self, encoding: str, *, line_page: str | None, cr_only: bool, may_mix: bool = False
    ) -> Path:
        """Copy the file to UTF-8 (streamed: memory stays flat) for polars to read.

        ``line_page``: the file mixes UTF-8 lines with lines of that code page; each
        line is decoded by what it is. ``cr_only``: lines end with a lone CR (classic
        Mac, some Excel exports); they are written with LF, which polars reads.
        """
        fd, name = tempfile.mkstemp(prefix="twenty-pipeline-", suffix=".csv")
        self._tmp = Path(name)
        try:
            with (
                self.path.open("rb") as src,
                os.fdopen(fd, "w", encoding="utf-8", newline="") as dst,
            ):
                if line_page is not None:
                    self.info.mixed_lines = _transcode_lines(
                        self.path, src, dst, line_page, cr_only=cr_only
                    )
                    self.info.mixed_encoding = line_page
                    return self._tmp
                decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
                offset = 0
                while block := src.read(1 << 20):
                    try:
                        text = decoder.decode(block)
                    except UnicodeDecodeError as exc:
                        if may_mix:
                            raise _NotUtf8 from None
                        raise InputError(
                            f"{self.path}: not valid {encoding} at byte {offset + exc.start}; "
                            "set source.encoding in the mapping"
                        ) from None
                    dst.write(text.replace("\r", "\n") if cr_only else text)
                    offset += len(block)
                try:
                    dst.write(decoder.decode(b"", final=True))
                except UnicodeDecodeError:
                    raise InputError(
                        f"{self.path}: not valid {encoding}: the file ends inside a character; "
                        "set source.encoding in the mapping"
                    ) from None
        except BaseException:
            self.close()
            raise
        return self._tmp

    def _scan_csv_structure(self, text_path: Path, delimiter: str) -> None:
        """Find the header, blank lines, ragged rows and NUL bytes before polars reads.

        polars pads short rows silently and cannot tell them from trailing empty
        cells, so the field count of every record is taken here and only the
        exceptions are kept. When every line is a well-formed record (the usual case:
        no quoted field spans lines, no stray quote) polars checks every line at once;
        otherwise the csv module walks the records and writes a clean copy for polars.
        """
        header = self._read_header(text_path, delimiter)
        self.info.columns = [h.strip() for h in header]
        width = len(header)
        has_nul = _holds(text_path, b"\x00")
        with text_path.open("rb") as handle:
            sample = handle.read(SAMPLE_BYTES)
        # polars reads each line as one field: a separator byte the text never holds
        marker = next(
            (m for m in ("\x1f", "\x1e", "\x1d", "\x01") if m.encode() not in sample), None
        )
        if marker is None:
            self._scan_with_csv_module(text_path, delimiter, has_nul)
            return
        quote = '"'
        sep = re.escape(delimiter)
        cell = f'(?:"(?:[^"]|"")*"|[^"{sep}]*)'
        line = pl.col("line")
        has_quote = line.str.contains(quote, literal=True)
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
                "line",
                has_quote.alias("quoted"),
                line.str.contains("\r", literal=True).alias("cr"),
                (line.str.count_matches(delimiter, literal=True) + 1).alias("fields"),
                (line.str.strip_chars() == "").alias("blank"),
                (line.str.contains("\x00", literal=True) if has_nul else pl.lit(False)).alias(
                    "nul"
                ),
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
            .with_columns(
                # separators inside quoted fields do not count
                pl.when(pl.col("quoted"))
                .then(
                    line.str.replace_all(f"{quote}[^{quote}]*{quote}", "").str.count_matches(
                        delimiter, literal=True
                    )
                    + 1
                )
                .otherwise(pl.col("fields"))
                .alias("fields"),
                # an odd count: a quoted field spans lines; a quote inside an unquoted
                # field ('12" pizza', '"A"B'): the csv module reads those as Excel does
                # a CR left in a line (polars drops the one of CRLF) ends a record for
                # the csv module and Excel, or sits in a quoted field: either way, walk
                (
                    (
                        pl.col("quoted")
                        & (
                            (line.str.count_matches(quote, literal=True) % 2 == 1)
                            | ~line.str.contains(f"^{cell}(?:{sep}{cell})*\r?$")
                        )
                    )
                    | pl.col("cr")
                ).alias("irregular"),
            )
            .filter(
                pl.col("irregular") | (pl.col("fields") != width) | pl.col("blank") | pl.col("nul")
            )
            .select("index", "irregular", "fields", "blank", "nul")
        )
        try:
            anomalies = odd.collect(engine="streaming")
        except pl.exceptions.PolarsError as exc:
            if "utf-8" in str(exc).lower() or "utf8" in str(exc).lower():
                raise _NotUtf8 from None
            raise InputError(
                f"{self.path}: cannot read: {_one_line(exc)}; if it is not UTF-8, set "
                "source.encoding in the mapping"
            ) from None
        if anomalies["irregular"].any():
            self._scan_with_csv_module(text_path, delimiter, has_nul)
            return
        blanks: list[int] = []
        wanted: dict[int, str] = {}
        for index, fields, blank, nul in anomalies.select(
            "index", "fields", "blank", "nul"
        ).iter_rows():
            record = int(index) - 1
            if blank:
                blanks.append(record)
            elif fields != width:
                wanted[record] = f"row has {fields} fields, the header has {width}"
            elif nul:
                wanted[record] = ""  # the reason names the column, once the fields are read
        self._set_rejects(text_path, delimiter, wanted, blanks)

    def _set_rejects(
        self, text_path: Path, delimiter: str, wanted: dict[int, str], blanks: list[int]
    ) -> None:
        rejects = self._reject_values(text_path, delimiter, wanted) if wanted else []
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

    def _scan_with_csv_module(self, text_path: Path, delimiter: str, has_nul: bool) -> None:
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
                    raise InputError(f"{self.path}: the file is empty") from None
                except (csv.Error, UnicodeDecodeError) as exc:
                    raise InputError(f"{self.path}: cannot read the header: {exc}") from None
                writer.writerow(header)
                self.info.columns = [h.strip() for h in header]
                width = len(header)
                blanks: list[int] = []
                wanted: dict[int, str] = {}
                offset = 0
                try:
                    # reading, counting and writing run in C: only odd records cost Python time
                    while block := list(islice(reader, 1 << 16)):
                        writer.writerows(block)
                        lengths = list(map(len, block))
                        counts = pl.Series(lengths, dtype=pl.Int32)
                        for index in (counts != width).arg_true().to_list():
                            count = lengths[index]
                            if count == 0:
                                blanks.append(offset + index)
                            else:
                                wanted[offset + index] = (
                                    f"row has {count} fields, the header has {width}"
                                )
                        if has_nul:
                            for index, record in enumerate(block):
                                if offset + index not in wanted and any(
                                    "\x00" in v for v in record
                                ):
                                    wanted[offset + index] = ""
                        offset += len(block)
                except UnicodeDecodeError:
                    raise _NotUtf8 from None
                except csv.Error as exc:
                    raise InputError(
                        f"{self.path}: malformed CSV near line {reader.line_num}: {exc}"
                    ) from None
        except BaseException:
            clean.unlink(missing_ok=True)
            raise
        self.close()  # any transcoded copy: the clean one replaces it
        self._tmp = clean
        self._csv_path = clean
        self._set_rejects(clean, delimiter, wanted, blanks)

    def _reject_values(
        self, text_path: Path, delimiter: str, wanted: dict[int, str]
    ) -> list[ReadReject]:
        """Read back every field of the rejected records, for the rejects file."""
        out = []
        header = self.info.columns
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
                    reason = f"column {column!r} holds a NUL byte (\\x00); remove it"
                out.append(ReadReject(index + 2, reason, tuple(record), column))
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
            raise InputError(f"{self.path}: cannot read the workbook: {_one_line(exc)}") from None
        except BaseException as exc:  # a panic inside the Rust reader (pyo3 PanicException)
            if type(exc).__name__ != "PanicException":
                raise
            raise InputError(f"{self.path}: cannot read the workbook: {_one_line(exc)}") from None
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
        except RecursionError:
            raise InputError(f"{self.path}: the JSON is nested too deep to read") from None
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            data = lists[0] if len(lists) == 1 else [data]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise InputError(f"{self.path}: expected a JSON array of objects")
        columns: dict[str, None] = {}
        for record in data:
            columns.update(dict.fromkeys(record))
        self.info.columns = list(columns)
        try:
            rows = {c: [_text(r.get(c)) for r in data] for c in columns}
        except RecursionError:
            raise InputError(f"{self.path}: a JSON value is nested too deep to read") from None
        frame = pl.DataFrame(rows, schema=dict.fromkeys(columns, pl.String))
        return frame.with_row_index(ROW, offset=1).with_columns(pl.col(ROW).cast(pl.Int64))

    def _lazy_chunks(self) -> Iterator[pl.DataFrame]:
        lazy = self._lazy.with_row_index(ROW, offset=1)
        if self._skip_rows:
            skip = pl.Series("skip", sorted(self._skip_rows), dtype=pl.UInt32)
            lazy = lazy.filter(~pl.col(ROW).is_in(skip.implode()))
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
        except (pl.exceptions.PolarsError, OSError, RecursionError) as exc:
            raise InputError(f"{self.path}: cannot read: {_one_line(exc)}") from None


def _transcode_lines(
    path: Path, src: BinaryIO, dst: TextIO, page: str, *, cr_only: bool = False
) -> int:
    """Write each line as UTF-8: a valid UTF-8 line as it is, any other read in ``page``.

    Returns how many lines were read in ``page``. ``cr_only``: lines end with a lone CR.
    """
    if cr_only:
        src = io.BytesIO(src.read().replace(b"\r", b"\n"))  # rare: a whole CR-only file
    count = 0
    for number, line in enumerate(src, start=1):
        if number == 1 and line.startswith(codecs.BOM_UTF8):
            line = line[len(codecs.BOM_UTF8) :]
        try:
            dst.write(line.decode("utf-8"))
        except UnicodeDecodeError:
            try:
                dst.write(line.decode(page))
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{path}: line {number} is neither UTF-8 nor {page} (byte {exc.start + 1} "
                    "of the line); set source.encoding in the mapping"
                ) from None
            count += 1
    return count


def _holds(path: Path, needle: bytes) -> bool:
    """Whether the file holds the byte (read in blocks: memory stays flat, C speed)."""
    with path.open("rb") as handle:
        return any(needle in block for block in iter(lambda: handle.read(1 << 22), b""))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


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
