"""Encodings of text sources: which codec a file is in, and a UTF-8 copy for polars.

polars reads UTF-8 only, and exports from Excel, old CRMs and accounting tools come in
whatever code page their machine used. Detection weighs the close Latin code pages by
how plausible the words they read are (a person's name is not "Ma³gorzata"), and tells
the caller when the choice was close so the summary can show a few words read with it.
Transcoding streams, so memory stays flat whatever the file's size.
"""

from __future__ import annotations

import codecs
import io
import itertools
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from charset_normalizer import from_bytes

from pipeline.errors import InputError

SAMPLE_BYTES = 256 * 1024
"""How much of a file detection and sniffing look at."""

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


class NotUtf8(Exception):
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


def page_of_other_lines(path: Path) -> Encoding:
    """The code page of the lines of a file that are not UTF-8 (a sample of them).

    For a file whose sample was UTF-8 but whose later lines are not: two exports pasted
    together, each line is then read as what it is.
    """
    others: list[bytes] = []
    size = 0
    with path.open("rb") as handle:
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
            f"{path}: some lines are UTF-8, others not; set source.encoding in the mapping"
        )
    return page


@dataclass(frozen=True)
class Transcoded:
    """A temporary UTF-8 copy of a file, and how many of its lines were in a code page."""

    path: Path
    mixed_lines: int = 0


def transcode(
    path: Path, encoding: str, *, line_page: str | None, cr_only: bool, may_mix: bool = False
) -> Transcoded:
    """Copy the file to a temporary UTF-8 file (streamed: memory stays flat) for polars.

    ``line_page``: the file mixes UTF-8 lines with lines of that code page; each line
    is decoded by what it is. ``cr_only``: lines end with a lone CR (classic Mac, some
    Excel exports); they are written with LF, which polars reads. ``may_mix``: a
    decoding error raises :class:`NotUtf8` (the caller then looks for mixed lines)
    rather than an error for the user. The copy is removed if the copy fails.
    """
    fd, name = tempfile.mkstemp(prefix="twenty-pipeline-", suffix=".csv")
    copy = Path(name)
    try:
        with path.open("rb") as src, os.fdopen(fd, "w", encoding="utf-8", newline="") as dst:
            if line_page is not None:
                count = _transcode_lines(path, src, dst, line_page, cr_only=cr_only)
                return Transcoded(copy, count)
            _transcode_stream(path, src, dst, encoding, cr_only=cr_only, may_mix=may_mix)
    except BaseException:
        copy.unlink(missing_ok=True)
        raise
    return Transcoded(copy)


def _transcode_stream(
    path: Path, src: BinaryIO, dst: TextIO, encoding: str, *, cr_only: bool, may_mix: bool
) -> None:
    """Decode the whole file in one codec, block by block."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset = 0
    while block := src.read(1 << 20):
        try:
            text = decoder.decode(block)
        except UnicodeDecodeError as exc:
            if may_mix:
                raise NotUtf8 from None
            raise InputError(
                f"{path}: not valid {encoding} at byte {offset + exc.start}; "
                "set source.encoding in the mapping"
            ) from None
        dst.write(text.replace("\r", "\n") if cr_only else text)
        offset += len(block)
    try:
        dst.write(decoder.decode(b"", final=True))
    except UnicodeDecodeError:
        raise InputError(
            f"{path}: not valid {encoding}: the file ends inside a character; "
            "set source.encoding in the mapping"
        ) from None


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
