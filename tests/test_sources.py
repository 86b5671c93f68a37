"""The source and sink seams: the registry by format, one frame shape, atomic sinks."""

from __future__ import annotations

import csv
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

import polars as pl
import pytest

from pipeline import sinks
from pipeline.cells import unescape_frame
from pipeline.errors import InputError
from pipeline.mapping import SourceSpec
from pipeline.sinks import SinkError, open_sink
from pipeline.sources import (
    ROW,
    SourceInfo,
    SourceReader,
    formats,
    open_source,
    register_source,
    unregister_source,
)

# ---------------------------------------------------------------------- the registry


class PairsSource:
    """A toy format: one record a line, ``key=value`` pairs separated by ``;``."""

    format = "pairs"

    def __init__(self, path: Path, spec: SourceSpec, *, chunk_size: int) -> None:
        self.path = path
        self.chunk_size = chunk_size
        self.records = [
            dict(pair.split("=", 1) for pair in line.split(";"))
            for line in path.read_text().splitlines()
            if line
        ]
        names: dict[str, None] = {}
        for record in self.records:
            names.update(dict.fromkeys(record))
        self.info = SourceInfo(path, self.format, list(names))
        self.closed = False

    @property
    def columns(self) -> list[str]:
        return self.info.columns

    def chunks(self, columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
        wanted = [c for c in self.columns if columns is None or c in columns]
        for start in range(0, len(self.records), self.chunk_size):
            part = self.records[start : start + self.chunk_size]
            yield pl.DataFrame(
                {
                    ROW: list(range(start + 1, start + 1 + len(part))),
                    **{c: [r.get(c) for r in part] for c in wanted},
                },
                schema={ROW: pl.Int64, **dict.fromkeys(wanted, pl.String)},
            )

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@pytest.fixture
def pairs() -> Iterator[None]:
    register_source("pairs", PairsSource, extensions=(".pairs",))
    try:
        yield
    finally:
        unregister_source("pairs")


def _pairs_file(path: Path) -> Path:
    path.write_text("name=Ada;city=Paris\nname=Bob\ncity=Oslo;name=Cy\n")
    return path


EXPECTED_PAIRS = [
    {ROW: 1, "name": "Ada", "city": "Paris"},
    {ROW: 2, "name": "Bob", "city": None},
    {ROW: 3, "name": "Cy", "city": "Oslo"},
]


def test_a_registered_format_opens_by_its_extension(tmp_path: Path, pairs: None) -> None:
    path = _pairs_file(tmp_path / "people.pairs")
    with open_source(path, chunk_size=2) as reader:
        assert isinstance(reader, SourceReader)
        assert reader.format == "pairs"
        assert reader.info.columns == ["name", "city"]
        chunks = list(reader.chunks())
        inner = reader._source
    assert [c.height for c in chunks] == [2, 1]
    assert pl.concat(chunks).to_dicts() == EXPECTED_PAIRS
    assert isinstance(inner, PairsSource) and inner.closed


def test_a_registered_format_opens_when_declared(tmp_path: Path, pairs: None) -> None:
    path = _pairs_file(tmp_path / "people.txt")  # .txt alone would be read as CSV
    with open_source(path, SourceSpec(format="pairs")) as reader:
        assert pl.concat(list(reader.chunks(["city"]))).to_dicts() == [
            {ROW: r[ROW], "city": r["city"]} for r in EXPECTED_PAIRS
        ]
    assert "pairs" in formats()


def test_unregistered_format_is_forgotten(tmp_path: Path, pairs: None) -> None:
    unregister_source("pairs")
    with pytest.raises(InputError, match="cannot tell the format"):
        open_source(_pairs_file(tmp_path / "people.pairs"))


def test_unknown_formats_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "data.xyz"
    path.write_text("a\n1\n")
    with pytest.raises(InputError) as by_extension:
        open_source(path)
    with pytest.raises(InputError) as declared:
        open_source(path, SourceSpec(format="klingon"))
    for error in (by_extension, declared):
        assert "\n" not in str(error.value)
        assert str(error.value).startswith(f"{path}: ")
    assert "'.xyz'" in str(by_extension.value) and "set source.format" in str(by_extension.value)
    assert "unknown source format 'klingon'" in str(declared.value)
    assert "csv" in str(declared.value) and "parquet" in str(declared.value)


def test_a_missing_file_of_unknown_format_says_it_is_missing(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        open_source(tmp_path / "gone.xyz")
    assert str(info.value) == f"{tmp_path / 'gone.xyz'}: no such file"


def test_a_format_or_extension_is_registered_once(pairs: None) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_source("pairs", PairsSource)
    with pytest.raises(
        ValueError, match=r"extension '\.csv' is already registered by format 'csv'"
    ):
        formats()  # the built-in formats are loaded
        register_source("pairs2", PairsSource, extensions=(".CSV",))
    assert "pairs2" not in formats()


def test_every_built_in_format_is_registered() -> None:
    assert set(formats()) >= {"csv", "tsv", "xlsx", "json", "ndjson", "parquet"}


# ---------------------------------------------------------------------- one frame shape

DATA = pl.DataFrame(
    {
        "name": ["Zoë", "Bob", "Çelik"],
        "employees": ["12", None, "7"],
        "note": ["a, b", "line", "x"],
    }
)


def _write(frame: pl.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "csv":
        frame.write_csv(path)
    elif fmt == "tsv":
        frame.write_csv(path, separator="\t")
    elif fmt == "xlsx":
        frame.write_excel(path)
    elif fmt == "json":
        path.write_text(json.dumps(frame.to_dicts(), ensure_ascii=False))
    elif fmt == "ndjson":
        frame.write_ndjson(path)
    else:
        frame.write_parquet(path)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "xlsx", "json", "ndjson", "parquet"])
def test_every_format_yields_the_same_frame(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"people.{fmt}"
    _write(DATA, path, fmt)
    with open_source(path, chunk_size=2) as reader:
        assert reader.format == fmt
        assert reader.info.columns == DATA.columns
        chunks = list(reader.chunks())
    assert all(c.height <= 2 for c in chunks)
    frame = pl.concat(chunks)
    assert frame.schema == pl.Schema({ROW: pl.Int64, **dict.fromkeys(DATA.columns, pl.String)})
    first = 2 if fmt in ("csv", "tsv", "xlsx") else 1  # the header is row 1 of a sheet
    assert frame[ROW].to_list() == [first, first + 1, first + 2]
    expected = DATA if fmt not in ("csv", "tsv") else DATA.fill_null("")  # CSV: empty text
    assert frame.drop(ROW).to_dicts() == expected.to_dicts()


@pytest.fixture
def temporaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary folder of this test's own (other runs on the machine share /tmp)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.mark.parametrize(
    "body",
    [
        "name,city\nZoë,Zürich\n".encode("cp1252"),  # transcoded copy
        b'name,city\n"A"B,Oslo\n',  # a stray quote: the csv module writes a clean copy
        'name,city\n"A"B,Zürich\n'.encode("cp1252"),  # both, the clean one replacing the other
    ],
)
def test_temporary_copies_are_removed_on_close(
    tmp_path: Path, temporaries: Path, body: bytes
) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(body)
    with open_source(path) as reader:
        assert len(pl.concat(list(reader.chunks()))) == 1
        assert len(list(temporaries.iterdir())) == 1
    assert list(temporaries.iterdir()) == []


@pytest.mark.parametrize(
    ("body", "spec", "message"),
    [
        ("a,a\nZoë,1\n".encode("cp1252"), None, "both named 'a'"),
        ("a,b\nZoë,1\n".encode("cp1252"), SourceSpec(encoding="ascii"), "not valid ascii"),
    ],
)
def test_a_refused_file_leaves_no_temporary_copy(
    tmp_path: Path, temporaries: Path, body: bytes, spec: SourceSpec | None, message: str
) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(body)
    with pytest.raises(InputError, match=message):
        open_source(path, spec)
    assert list(temporaries.iterdir()) == []


# ---------------------------------------------------------------------- sinks

ROWS = pl.DataFrame(
    {
        "name": ["Ada", "=HYPERLINK(1)", "-3", "'=x", None],
        "n": [1, 2, 3, 4, 5],
        "ok": [True, False, None, True, False],
    }
)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_an_aborted_sink_leaves_nothing(tmp_path: Path, fmt: str) -> None:
    sink = open_sink(tmp_path / f"out.{fmt}", columns=ROWS.columns)
    sink.write(ROWS)
    assert not (tmp_path / f"out.{fmt}").exists()  # nothing published before close
    sink.abort()
    sink.close()  # closing after an abort publishes nothing
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_an_exception_mid_write_keeps_the_old_file(tmp_path: Path, fmt: str) -> None:
    target = tmp_path / f"out.{fmt}"
    target.write_bytes(b"the previous run's file")
    with pytest.raises(RuntimeError, match="boom"), open_sink(target, columns=["name"]) as sink:
        sink.write(ROWS)
        raise RuntimeError("boom")
    assert _leftovers(tmp_path) == [target.name]
    assert target.read_bytes() == b"the previous run's file"


def test_a_failing_write_aborts_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = open_sink(tmp_path / "out.csv", columns=["name"], label="rejects file")

    class FullDisk:
        def writerows(self, rows: object) -> None:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(sink, "_writer", FullDisk())
    with pytest.raises(SinkError) as info:
        sink.write(ROWS)
    assert str(info.value) == (
        f"cannot write the rejects file {tmp_path / 'out.csv'}: No space left on device"
    )
    assert _leftovers(tmp_path) == []


def test_a_sink_to_a_device_writes_in_place() -> None:
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    with pytest.raises(SinkError) as info, open_sink("/dev/full", "csv", columns=["name"]) as sink:
        sink.write(ROWS)
    assert str(info.value) == "cannot write the output file /dev/full: No space left on device"
    assert Path("/dev/full").is_char_device()


def test_csv_sink_escapes_formulas_as_cells_does(tmp_path: Path) -> None:
    path = tmp_path / "rejects.csv"
    with open_sink(path, columns=["=head", *ROWS.columns, "extra"]) as sink:
        sink.write(ROWS.head(3))
        sink.write(ROWS.tail(2))
    assert sink.count == 5
    with path.open(newline="", encoding="utf-8") as handle:
        lines = list(csv.reader(handle))
    assert lines == [
        ["'=head", "name", "n", "ok", "extra"],
        ["", "Ada", "1", "true", ""],
        ["", "'=HYPERLINK(1)", "2", "false", ""],
        ["", "'-3", "3", "", ""],
        ["", "''=x", "4", "true", ""],
        ["", "", "5", "false", ""],
    ]
    back = pl.read_csv(path, infer_schema=False)
    assert unescape_frame(back, ["name"])["name"].to_list() == [
        "Ada",
        "=HYPERLINK(1)",
        "-3",
        "'=x",
        None,
    ]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_typed_sinks_round_trip_through_polars(
    tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sinks, "PARQUET_PART_ROWS", 2)  # several spilled parts
    path = tmp_path / f"out.{fmt}"
    frame = ROWS.with_columns(tags=pl.Series([["a"], [], None, ["b", "c"], ["d"]]))
    with open_sink(path, columns=[*frame.columns, "missing"]) as sink:
        for start in range(0, frame.height, 2):
            sink.write(frame.slice(start, 2))
    back = pl.read_ndjson(path) if fmt == "jsonl" else pl.read_parquet(path)
    expected = frame.with_columns(missing=pl.lit(None, pl.String))
    assert back.columns == expected.columns
    assert back.drop("missing").to_dicts() == expected.drop("missing").to_dicts()
    assert back["missing"].to_list() == [None] * 5
    if fmt == "parquet":
        assert back.schema["n"] == pl.Int64 and back.schema["missing"] == pl.String
    assert _leftovers(tmp_path) == [path.name]


def test_an_empty_parquet_sink_has_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "none.parquet"
    with open_sink(path, columns=["a", "b"]):
        pass
    assert pl.read_parquet(path).schema == pl.Schema({"a": pl.String, "b": pl.String})


def test_a_parquet_batch_of_other_types_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    sink = open_sink(path, columns=["n"])
    sink.write(pl.DataFrame({"n": [1]}))
    with pytest.raises(SinkError, match="column types of the first one"):
        sink.write(pl.DataFrame({"n": ["not a number"]}))
    assert _leftovers(tmp_path) == []


def test_sink_formats(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        open_sink(tmp_path / "out.xlsx", columns=["a"])
    assert str(info.value).startswith(f"{tmp_path / 'out.xlsx'}: cannot tell the output format")
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="unknown output format 'xml'"):
        open_sink(tmp_path / "out.csv", "xml", columns=["a"])
    with open_sink(tmp_path / "out.data", "jsonl", columns=["a"]) as sink:
        sink.write(pl.DataFrame({"a": ["x"]}))
    assert (tmp_path / "out.data").read_text() == '{"a":"x"}\n'


def test_a_sink_through_a_symlink_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    link = tmp_path / "latest.csv"
    link.symlink_to(real)
    with open_sink(link, columns=["a"]) as sink:
        sink.write(pl.DataFrame({"a": ["new"]}))
    assert link.is_symlink() and real.read_text() == "a\nnew\n"
    assert _leftovers(tmp_path) == ["latest.csv", "real.csv"]


def test_rows_from_a_store_are_written_as_text_in_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sinks, "ROWS_PER_BATCH", 2)
    path = tmp_path / "success.csv"
    written: list[int] = []
    with open_sink(path, columns=["_row", "key", "outcome"], label="success ledger") as sink:
        original = sink._write
        monkeypatch.setattr(sink, "_write", lambda f: (written.append(f.height), original(f)))
        sink.write_rows((row, f"k{row}", None if row == 3 else "created") for row in (2, 3, 4))
    assert written == [2, 1]
    assert path.read_bytes() == b"_row,key,outcome\r\n2,k2,created\r\n3,k3,\r\n4,k4,created\r\n"


def test_a_sink_that_cannot_start_touches_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "ledgers"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(SinkError) as info:
        open_sink(blocker / "rejects.csv", columns=["a"], label="rejects file")
    assert str(info.value).startswith(f"cannot write the rejects file {blocker / 'rejects.csv'}: ")
    assert _leftovers(tmp_path) == ["ledgers"]
    assert blocker.read_text() == "a file where a folder should be"
