"""The reader: encodings, delimiters, row numbers, ragged and blank rows, formats, chunks."""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import InputError
from pipeline.mapping import SourceSpec
from pipeline.sources import detect_encoding, open_source

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


# ---------------------------------------------------------------------- code pages

WESTERN = (
    "name,team,city\n"
    "Zoë Durand,Director\u2019s Office,Besançon\n"
    "Hélène Lefèvre,Sales,Nîmes\n"
    "Søren Kierkegaard,Ops,Århus\n"
    "Šimon Novák,IT,Brno\n"
    "Ñuño García,HR,Málaga\n"
)
CENTRAL = (
    "name,city\n"
    "Łukasz Wójcik,Łódź\n"
    "Małgorzata Żółć,Gdańsk\n"
    "Jiří Dvořák,České Budějovice\n"
    "Šárka Nováková,Plzeň\n"
    "Kovács Ödön,Győr\n"
    "Szűcs Éva,Kőszeg\n"
    "Ťažký Ľudovít,Košice\n"
)
BALTIC = (
    "name,city\n"
    "Žemaitė Ąžuolaitė,Šiauliai\n"
    "Rūta Mažeikienė,Vilnius\n"
    "Krišjānis Bērziņš,Rīga\n"
    "Ģirts Ķuzis,Liepāja\n"
    "Ēriks Ļeonovs,Daugavpils\n"
)


def rows_of(text: str) -> list[dict[str, object]]:
    lines = text.splitlines()
    header = lines[0].split(",")
    return [
        {"_row": i, **dict(zip(header, line.split(","), strict=True))}
        for i, line in enumerate(lines[1:], start=2)
    ]


@pytest.mark.parametrize(
    ("text", "encoding", "detected", "guessed", "samples"),
    [
        (WESTERN, "cp1252", "cp1252", True, ["Zoë", "Besançon", "Hélène"]),
        (CENTRAL, "cp1250", "cp1250", False, ["Łukasz", "Wójcik", "Łódź"]),
        (BALTIC, "cp1257", "cp1257", False, ["Žemaitė", "Ąžuolaitė", "Šiauliai"]),
        # iso8859-13 differs from cp1257 in its quote marks: those bytes decide
        (
            BALTIC + "„Žalgiris“ Kaunas,Kaunas\nJonas O\u2019Brien,Klaipėda\n",
            "iso8859-13",
            "iso8859-13",
            False,
            ["Žemaitė", "Ąžuolaitė", "Šiauliai"],
        ),
    ],
)
def test_single_byte_code_pages_are_told_apart(
    tmp_path: Path, text: str, encoding: str, detected: str, guessed: bool, samples: list[str]
) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(text.encode(encoding))
    with open_source(path) as reader:
        frame = pl.concat(list(reader.chunks()))
        info = reader.info
    assert (info.encoding, info.encoding_guessed, info.encoding_samples) == (
        detected,
        guessed,
        samples,
    )
    assert frame.to_dicts() == rows_of(text)
    expected = f"{detected} (guessed; e.g. {', '.join(samples)})" if guessed else detected
    assert info.describe_encoding() == expected


def test_cp1252_names_are_not_read_as_baltic(tmp_path: Path) -> None:
    # charset-normalizer's best guess for these bytes is a Baltic or Central European page
    text = "name\nZoë\nHélène\nSøren\nŠimon\nÑuño\nDirector\u2019s Office\n"
    path = tmp_path / "names.csv"
    path.write_bytes(text.encode("cp1252"))
    with open_source(path) as reader:
        assert reader.info.encoding == "cp1252"
        assert reader.info.encoding_samples == ["Zoë", "Hélène", "Søren"]
        names = pl.concat(list(reader.chunks()))["name"].to_list()
    assert names == ["Zoë", "Hélène", "Søren", "Šimon", "Ñuño", "Director\u2019s Office"]


def test_lines_of_utf8_and_cp1252_are_each_read_as_what_they_are(tmp_path: Path) -> None:
    path = tmp_path / "pasted.csv"
    path.write_bytes(
        "name,city\nCafé Zoë,Zürich\n".encode()
        + "Hélène,Besançon\nSøren,Århus\n".encode("cp1252")
        + "Łukasz,Łódź\n".encode()
    )
    with open_source(path) as reader:
        frame = pl.concat(list(reader.chunks()))
        info = reader.info
    assert (info.encoding, info.mixed_encoding, info.mixed_lines) == ("utf-8", "cp1252", 2)
    assert info.describe_encoding() == "utf-8, 2 lines in cp1252 (e.g. Hélène, Besançon, Søren)"
    assert frame.to_dicts() == [
        {"_row": 2, "name": "Café Zoë", "city": "Zürich"},
        {"_row": 3, "name": "Hélène", "city": "Besançon"},
        {"_row": 4, "name": "Søren", "city": "Århus"},
        {"_row": 5, "name": "Łukasz", "city": "Łódź"},
    ]


def test_utf8_is_not_a_guess(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text(TEXT, encoding="utf-8")
    with open_source(path) as reader:
        assert (reader.info.encoding_guessed, reader.info.mixed_lines) == (False, 0)
        assert reader.info.describe_encoding() == "utf-8"


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom(tmp_path: Path, codec: str) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(TEXT.encode(codec))
    with open_source(path) as reader:
        assert reader.info.encoding == codec
        assert pl.concat(list(reader.chunks()))["name"].to_list() == ["Zoë", "Renée"]


# ---------------------------------------------------------------------- line endings, quotes


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252"])
def test_cr_only_line_endings(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "mac.csv"
    path.write_bytes('name;city\rZoë;Paris\rBob;"Oslo\rcentre"\r\rCy;Rome\r'.encode(encoding))
    with open_source(path) as reader:
        frame = pl.concat(list(reader.chunks()))
        assert reader.info.blank_rows == 1
    assert frame.to_dicts() == [
        {"_row": 2, "name": "Zoë", "city": "Paris"},
        {"_row": 3, "name": "Bob", "city": "Oslo\ncentre"},
        {"_row": 5, "name": "Cy", "city": "Rome"},
    ]


def test_a_lone_cr_inside_a_line_ends_a_record(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"a,b\n1,2\r3,4\n5,6\n")
    assert read_all(path).to_dicts() == [
        {"_row": 2, "a": "1", "b": "2"},
        {"_row": 3, "a": "3", "b": "4"},
        {"_row": 4, "a": "5", "b": "6"},
    ]


def test_data_that_yields_no_row_is_an_error(tmp_path: Path) -> None:
    # the header ends with a CR, the rest with LF: polars sees one line, the csv module two
    path = tmp_path / "f.csv"
    path.write_bytes(b"a,b\r1,2\n")
    with pytest.raises(InputError) as info:
        read_all(path)
    assert str(info.value) == (
        f"{path}: the file holds more than a header but no data row could be read; "
        "check its line endings and delimiter (source.delimiter in the mapping)"
    )


def test_header_only_and_blank_only_files_give_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"a,b\n")
    assert read_all(path).height == 0
    path.write_bytes(b"a,b\n\n\n")
    assert read_all(path).height == 0


def test_stray_quotes_are_literal_as_in_excel(tmp_path: Path) -> None:
    path = tmp_path / "menu.csv"
    path.write_bytes(b'item,size\n12" pizza,large\n"A"B,small\nplain,"quoted, with comma"\n')
    assert read_all(path, chunk_size=2).to_dicts() == [
        {"_row": 2, "item": '12" pizza', "size": "large"},
        {"_row": 3, "item": "AB", "size": "small"},
        {"_row": 4, "item": "plain", "size": "quoted, with comma"},
    ]


def test_stray_quote_with_ragged_row_keeps_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b'a,b\n5" disk,1\nx,y,z,w\nlast,2\n')
    with open_source(path) as reader:
        frame = pl.concat(list(reader.chunks()))
        rejects = reader.info.rejects
    assert frame.to_dicts() == [
        {"_row": 2, "a": '5" disk', "b": "1"},
        {"_row": 4, "a": "last", "b": "2"},
    ]
    assert [(r.row, r.reason, r.values) for r in rejects] == [
        (3, "row has 4 fields, the header has 2", ("x", "y", "z", "w"))
    ]


def test_ragged_rows_keep_every_field_on_the_fast_path(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"a,b\n1,2,3,4,5\n6\n7,8\n")
    with open_source(path) as reader:
        assert [r.values for r in reader.info.rejects] == [("1", "2", "3", "4", "5"), ("6",)]
        assert pl.concat(list(reader.chunks()))["_row"].to_list() == [4]


# ---------------------------------------------------------------------- NUL bytes


@pytest.mark.parametrize("multiline", [False, True])
def test_a_nul_byte_rejects_its_row_naming_the_column(tmp_path: Path, multiline: bool) -> None:
    path = tmp_path / "f.csv"
    note = '"two\nlines"' if multiline else "fine"
    path.write_bytes(f"id,notes\n1,{note}\n2,bad\x00value\n3,ok\n".encode())
    with open_source(path) as reader:
        frame = pl.concat(list(reader.chunks()))
        rejects = reader.info.rejects
    assert frame["id"].to_list() == ["1", "3"]
    assert [(r.row, r.reason, r.values, r.column) for r in rejects] == [
        (3, "column 'notes' holds a NUL byte (\\x00); remove it", ("2", "bad\x00value"), "notes")
    ]


# ---------------------------------------------------------------------- hostile files


def test_non_regular_files_are_refused_before_opening(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)  # open() would block until a writer came
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(InputError) as info:
            open_source(path, SourceSpec(format="csv"))
        assert str(info.value) == f"{path}: not a regular file (a pipe, socket or device)"


def test_ndjson_values_are_text_whatever_their_type_and_line(tmp_path: Path) -> None:
    lines = [json.dumps({"id": i, "extra": i}) for i in range(1500)]
    lines.append(json.dumps({"id": "X-1", "extra": "now text", "tags": ["a", {"b": 1}]}))
    lines.append(json.dumps({"id": 7.5, "extra": {"deep": [1, 2]}, "tags": None}))
    path = tmp_path / "f.ndjson"
    path.write_text("\n".join(lines) + "\n")
    with open_source(path, chunk_size=1000) as reader:
        assert reader.info.columns == ["id", "extra", "tags"]
        frame = pl.concat(list(reader.chunks()))
    assert frame.height == 1502
    assert frame.row(0, named=True) == {"_row": 1, "id": "0", "extra": "0", "tags": None}
    assert frame.tail(2).to_dicts() == [
        {"_row": 1501, "id": "X-1", "extra": "now text", "tags": '["a", {"b": 1}]'},
        {"_row": 1502, "id": "7.5", "extra": '{"deep": [1, 2]}', "tags": None},
    ]


def _truncated_xlsx(path: Path) -> None:
    pl.DataFrame({"a": list(range(100))}).write_excel(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("bad.parquet", lambda p: p.write_bytes(b"PAR1 not really"), "cannot read the parquet"),
        ("cut.xlsx", _truncated_xlsx, "cannot read the workbook"),
        ("junk.xlsx", lambda p: p.write_bytes(b"PK\x03\x04" + b"\x00" * 64), "workbook"),
        ("deep.json", lambda p: p.write_text("[" * 100_000 + "]" * 100_000), "nested too deep"),
        ("deep2.json", lambda p: p.write_text('[{"a": ' + "[" * 100_000), "JSON"),
        ("bad.json", lambda p: p.write_text('{"a": [1,'), "not valid JSON"),
        ("bad.ndjson", lambda p: p.write_text('{"a": 1}\n{"a":\n'), "line 2 is not valid JSON"),
        ("deep.ndjson", lambda p: p.write_text("[" * 100_000 + "\n"), "line 1 is nested too deep"),
        ("list.ndjson", lambda p: p.write_text('{"a": 1}\n[1]\n'), "line 2 is not a JSON object"),
        ("bin.ndjson", lambda p: p.write_bytes(b'{"a": "\xff"}\n'), "cannot read"),
    ],
)
def test_corrupt_files_give_one_line(
    tmp_path: Path, name: str, make: Callable[[Path], object], message: str
) -> None:
    path = tmp_path / name
    make(path)
    with pytest.raises(InputError) as info:
        read_all(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ")
    assert message in text
    assert "\n" not in text


@settings(max_examples=200, derandomize=True, deadline=None)
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_never_crash_the_csv_reader(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "any.csv"
        path.write_bytes(data)
        with contextlib.suppress(InputError):  # anything else fails the test
            read_all(path)


CSVISH = st.lists(
    st.sampled_from([b",", b";", b'"', b"\r", b"\n", b"\x00", b"a", b"\xe9", b"\xc3\xa9", b" "]),
    max_size=80,
).map(b"".join)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(data=CSVISH)
def test_csv_like_bytes_never_crash_the_reader(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "any.csv"
        path.write_bytes(b"a,b\n" + data)
        try:
            frame = read_all(path)
        except InputError:
            return
        if frame.height:
            assert frame.columns[0] == "_row"
            assert frame["_row"].is_sorted()
            assert frame["_row"].min() >= 2


CSV_TOKENS = st.sampled_from([",", '"', "\r", "\n", "\r\n", "a", "é", " ", "b1"])


def _whitespace(record: tuple[str, ...] | list[str]) -> bool:
    return len(record) == 1 and not record[0].strip()


@settings(max_examples=200, derandomize=True, deadline=None)
@given(body=st.lists(CSV_TOKENS, max_size=60).map("".join))
def test_csv_reads_as_the_csv_module_does(body: str) -> None:
    """Rows, row numbers and ragged rows as the csv module (and Excel) see the records."""
    text = "a,b\n" + body
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "any.csv"
        path.write_bytes(text.encode())
        try:
            with open_source(path, chunk_size=3) as reader:
                rows = [row for chunk in reader.chunks() for row in chunk.rows()]
                info = reader.info
        except InputError as exc:
            assert "no data row could be read" in str(exc)
            return
    if info.delimiter != ",":
        return
    records = list(csv.reader(io.StringIO(text, newline="")))[1:]
    assert rows == [(i, *r) for i, r in enumerate(records, start=2) if len(r) == 2]
    assert [r.values for r in info.rejects if not _whitespace(r.values)] == [
        tuple(r) for r in records if len(r) not in (0, 2) and not _whitespace(r)
    ]


def test_a_cp1252_line_after_the_sampled_utf8_is_read_as_cp1252(tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    rows = "".join(f"{i},Zoë Dupont\n" for i in range(20_000))  # more than the sample
    path.write_bytes(
        codecs.BOM_UTF8 + b"id,name\n" + rows.encode() + "99,Hélène\n".encode("cp1252")
    )
    with open_source(path) as reader:
        frame = pl.concat(list(reader.chunks()))
        info = reader.info
    assert info.columns == ["id", "name"]
    assert (info.encoding, info.mixed_encoding, info.mixed_lines) == ("utf-8-sig", "cp1252", 1)
    assert frame.height == 20_001
    assert frame.row(0) == (2, "0", "Zoë Dupont")
    assert frame.row(-1) == (20_002, "99", "Hélène")


def test_unknown_declared_encoding(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("a\n1\n")
    with pytest.raises(InputError) as info:
        open_source(path, SourceSpec(encoding="klingon"))
    assert str(info.value) == f"{path}: unknown encoding 'klingon' in source.encoding"


def test_ndjson_whose_types_polars_cannot_reconcile_is_read_as_text(tmp_path: Path) -> None:
    path = tmp_path / "f.ndjson"
    path.write_text('{"a": {"x": 1}}\n{"a": 5}\n\n{"a": [1, {"y": 2}], "b": true}\n{"a": "s"}\n')
    assert read_all(path).to_dicts() == [
        {"_row": 1, "a": '{"x": 1}', "b": None},
        {"_row": 2, "a": "5", "b": None},
        {"_row": 3, "a": '[1, {"y": 2}]', "b": "true"},
        {"_row": 4, "a": "s", "b": None},
    ]


@pytest.mark.parametrize("fmt", ["parquet", "ndjson", "json", "xlsx"])
def test_nul_bytes_reject_their_row_in_every_format(tmp_path: Path, fmt: str) -> None:
    frame = pl.DataFrame({"id": ["1", "2", "3"], "notes": ["fine", "bad\x00value", None]})
    path = tmp_path / f"f.{fmt}"
    if fmt == "parquet":
        frame.write_parquet(path)
    elif fmt == "ndjson":
        frame.write_ndjson(path)
    elif fmt == "json":
        path.write_text(json.dumps(frame.to_dicts()))
    else:
        frame.write_excel(path)
    first = 2 if fmt == "xlsx" else 1
    with open_source(path, chunk_size=1) as reader:
        out = pl.concat(list(reader.chunks()))
        rejects = reader.info.rejects
    assert out.to_dicts() == [
        {"_row": first, "id": "1", "notes": "fine"},
        {"_row": first + 2, "id": "3", "notes": None},
    ]
    assert [(r.row, r.reason, r.values, r.column) for r in rejects] == [
        (
            first + 1,
            "column 'notes' holds a NUL byte (\\x00); remove it",
            ("2", "bad\x00value"),
            "notes",
        )
    ]


@pytest.mark.parametrize(
    ("text", "encoding", "detected"),
    [
        (
            "имя,город\nИван Петров,Москва\nОльга Смирнова,Санкт-Петербург\n",  # noqa: RUF001
            "cp1251",
            "cp1251",
        ),
        (
            "όνομα,πόλη\nΓιώργος Παπαδόπουλος,Αθήνα\nΜαρία Νικολάου,Θεσσαλονίκη\n",  # noqa: RUF001
            "cp1253",
            "cp1253",
        ),
        (
            "ad,şehir\nŞükrü Öztürk,İstanbul\nAyşe Yılmaz,Ağrı\nGüneş Çağlar,Muğla\n",  # noqa: RUF001
            "cp1254",
            "cp1254",
        ),
        ("名前,都市\n山田太郎,東京\n佐藤花子,大阪\n", "shift_jis", "cp932"),
    ],
)
def test_other_scripts_and_code_pages(
    tmp_path: Path, text: str, encoding: str, detected: str
) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(text.encode(encoding))
    with open_source(path) as reader:
        assert reader.info.encoding == detected
        frame = pl.concat(list(reader.chunks()))
    assert frame.to_dicts() == rows_of(text)
