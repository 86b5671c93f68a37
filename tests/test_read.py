"""The reader: encodings, delimiters, row numbers, ragged and blank rows, formats, chunks."""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import polars as pl
import pytest

from pipeline.errors import InputError
from pipeline.mapping import SourceSpec
from pipeline.read import detect_encoding, open_source

TEXT = "name,city\nZoë,Zürich\nRenée,Besançon\n"


def read_all(path: Path, spec: SourceSpec | None = None, chunk_size: int = 100_000) -> pl.DataFrame:
    with open_source(path, spec, chunk_size=chunk_size) as reader:
        chunks = list(reader.chunks())
    return pl.concat(chunks) if chunks else pl.DataFrame()


@pytest.mark.parametrize(
    ("encoding", "prefix", "detected"),
    [
        ("utf-8", b"", "utf-8"),
        ("utf-8", codecs.BOM_UTF8, "utf-8-sig"),
        ("utf-16-le", codecs.BOM_UTF16_LE, "utf-16"),
        ("cp1252", b"", "cp1252"),
    ],
)
def test_encodings_read_the_same(
    tmp_path: Path, encoding: str, prefix: bytes, detected: str
) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(prefix + TEXT.encode(encoding))
    with open_source(path) as reader:
        assert reader.info.encoding == detected
        assert reader.info.columns == ["name", "city"]
        frame = pl.concat(list(reader.chunks()))
    assert frame.to_dicts() == [
        {"_row": 2, "name": "Zoë", "city": "Zürich"},
        {"_row": 3, "name": "Renée", "city": "Besançon"},
    ]


def test_central_european_code_page_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "pl.csv"
    path.write_bytes("imię,miasto\nŁukasz,Łódź\nMałgorzata,Gdańsk\n".encode("cp1250"))
    frame = read_all(path)
    assert frame["miasto"].to_list() == ["Łódź", "Gdańsk"]


def test_declared_encoding_wins_and_bad_bytes_are_explained(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes("a\n\xe9t\xe9\n".encode("latin-1"))
    assert read_all(path, SourceSpec(encoding="latin-1"))["a"].to_list() == ["été"]
    with pytest.raises(InputError, match="not valid utf-8"):
        read_all(path, SourceSpec(encoding="utf-8"))


def test_detect_encoding_on_a_cut_character() -> None:
    assert detect_encoding("é".encode() * 10 + "é".encode()[:1]) == "utf-8"


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_sniffing(tmp_path: Path, delimiter: str) -> None:
    path = tmp_path / "f.csv"
    path.write_text(
        f"a{delimiter}b{delimiter}c\n1{delimiter}2,5{delimiter}3\n".replace(
            "2,5", "2.5" if delimiter == "," else "2,5"
        )
    )
    with open_source(path) as reader:
        assert reader.info.delimiter == delimiter
        assert reader.info.columns == ["a", "b", "c"]


def test_row_numbers_survive_quoted_newlines_blank_lines_and_ragged_rows(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(
        b"name,note,city\r\n"
        b'Ada,"two\r\nlines",London\r\n'  # row 2
        b"\r\n"  # row 3: blank, skipped
        b"Bob,short\r\n"  # row 4: ragged, too few
        b'Cy,"a, b",Paris,extra\r\n'  # row 5: ragged, too many
        b"Dee,,\r\n"  # row 6: empty cells are fine
        b'Eve,"say ""hi""",Rome\r\n'  # row 7
    )
    with open_source(path, chunk_size=2) as reader:
        frame = pl.concat(list(reader.chunks()))
        info = reader.info
    assert frame["_row"].to_list() == [2, 6, 7]
    assert frame.row(0, named=True) == {
        "_row": 2,
        "name": "Ada",
        "note": "two\r\nlines",
        "city": "London",
    }
    assert frame["note"].to_list()[2] == 'say "hi"'
    assert info.blank_rows == 1
    assert [(r.row, r.reason) for r in info.rejects] == [
        (4, "row has 2 fields, the header has 3"),
        (5, "row has 4 fields, the header has 3"),
    ]
    assert info.rejects[1].values == ("Cy", "a, b", "Paris", "extra")


def test_chunks_add_up(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("n\n" + "".join(f"{i}\n" for i in range(1000)))
    with open_source(path, chunk_size=64) as reader:
        chunks = list(reader.chunks())
    assert max(c.height for c in chunks) <= 64
    assert pl.concat(chunks)["_row"].to_list() == list(range(2, 1002))


def test_duplicate_and_missing_headers_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("email,name,email,\n1,2,3,4\n")
    with pytest.raises(InputError) as info:
        open_source(path)
    assert str(info.value) == (
        f"{path}: columns 1 and 3 are both named 'email'; rename one so the mapping can tell "
        f"them apart\n{path}: column 4 has no name in the header"
    )


def test_empty_and_unknown_files(tmp_path: Path) -> None:
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with pytest.raises(InputError, match="the file is empty"):
        open_source(empty)
    with pytest.raises(InputError, match="no such file"):
        open_source(tmp_path / "none.csv")
    odd = tmp_path / "data.bin"
    odd.write_text("a\n1\n")
    with pytest.raises(InputError, match=r"set source\.format"):
        open_source(odd)
    assert read_all(odd, SourceSpec(format="csv"))["a"].to_list() == ["1"]


def test_xlsx_as_text_with_spreadsheet_rows(tmp_path: Path) -> None:
    path = tmp_path / "f.xlsx"
    pl.DataFrame(
        {"name": ["Ada", "Bob"], "employees": [12, None], "vip": [True, False]}
    ).write_excel(path)
    frame = read_all(path)
    assert frame.to_dicts() == [
        {"_row": 2, "name": "Ada", "employees": "12", "vip": "true"},
        {"_row": 3, "name": "Bob", "employees": None, "vip": "false"},
    ]


def test_parquet_ndjson_and_json(tmp_path: Path) -> None:
    frame = pl.DataFrame({"name": ["Ada", "Bob"], "n": [1, 2], "tags": [["a", "b"], []]})
    frame.write_parquet(tmp_path / "f.parquet")
    frame.write_ndjson(tmp_path / "f.ndjson")
    (tmp_path / "f.json").write_text(json.dumps({"records": frame.to_dicts()}))
    for name in ("f.parquet", "f.ndjson", "f.json"):
        out = read_all(tmp_path / name, chunk_size=1)
        assert out["_row"].to_list() == [1, 2], name
        assert out["name"].to_list() == ["Ada", "Bob"], name
        assert out["n"].to_list() == ["1", "2"], name
        assert json.loads(out["tags"][0]) == ["a", "b"], name


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_chunks_of_some_columns_only(tmp_path: Path, fmt: str) -> None:
    frame = pl.DataFrame({"name": ["Ada", "Bob"], "city": ["Paris", "Oslo"], "n": ["1", "2"]})
    path = tmp_path / f"f.{fmt}"
    frame.write_csv(path) if fmt == "csv" else frame.write_parquet(path)
    with open_source(path) as reader:
        part = pl.concat(list(reader.chunks(["city"])))
        whole = pl.concat(list(reader.chunks()))
    assert part.columns == ["_row", "city"]
    assert part.to_dicts() == whole.select("_row", "city").to_dicts()
