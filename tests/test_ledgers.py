"""The CSV files the tool writes: formula cells escaped, and the rejects round trip.

The standard workflow of a loader: import, open rejects.csv, fix the rows, import the
fixed rejects file with the same mapping. Its ledger columns must be ignored, and its
escaped cells must read back as they were.
"""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.cells import escape, unescape_frame
from pipeline.errors import InputError
from pipeline.sandbox import Sandbox
from tests.test_import import ledger, people, project, run_import, sandbox

__all__ = ["project", "sandbox"]  # fixtures shared with test_import


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ('=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),
        ("+33 1 42 68 53 00", "'+33 1 42 68 53 00"),
        ("-5", "'-5"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("'=already", "''=already"),
        ("it's fine", "it's fine"),
        ("'quoted'", "'quoted'"),
        ("", ""),
    ],
)
def test_formula_cells_are_escaped(value: str, written: str) -> None:
    assert escape(value) == written


@settings(max_examples=300, derandomize=True)
@given(st.text(alphabet="'=+-@\t\rab ", max_size=8))
def test_escape_then_unescape_gives_the_value_back(value: str) -> None:
    frame = pl.DataFrame({"c": [escape(value)]})
    assert unescape_frame(frame, ["c"])["c"].to_list() == [value]


def _write_csv(path: Path, rows: list[list[str]], delimiter: str = ";") -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, delimiter=delimiter).writerows(rows)


async def test_fixed_rejects_file_imports_with_the_same_mapping(
    project: Path, sandbox: Sandbox
) -> None:
    await run_import(project, sandbox, "companies")
    first = await run_import(project, sandbox, "people")
    assert first.rejected == 6
    rejects_path = project / "state" / "people" / "rejects.csv"
    with rejects_path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    header = rows[0]
    assert header[-5:] == ["_row", "_stage", "_column", "_value", "_reason"]
    by_row = {r[header.index("_row")]: r for r in rows[1:]}
    # Row 9 lacks a top-level domain in its e-mail, row 10 its e-mail: fix both by hand.
    fixed = []
    for number, email in (("9", "richard@piedpiper.com"), ("10", "gavin@hooli.com")):
        line = list(by_row[number])
        line[header.index("E-mail")] = email
        line[header.index("Company Website")] = "stark.com"
        fixed.append(line)
    # a phone the rejects writer escaped ('+1 …) must come back as +1 …
    assert any(cell.startswith("'+1 650") for cell in fixed[0])
    fixed_path = project / "fixed.csv"
    with fixed_path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([header, *fixed])

    again = await run_import(project, sandbox, "people", source=fixed_path)
    assert (again.rows_read, again.created, again.rejected) == (2, 2, 0)
    stored = people(sandbox)
    richard = stored["richard@piedpiper.com"]
    assert richard["phones"]["primaryPhoneNumber"] == "6505550100"
    assert richard["phones"]["primaryPhoneCallingCode"] == "+1"
    assert richard["jobTitle"] == "CEO"
    assert stored["gavin@hooli.com"]["name"] == {"firstName": "Gavin", "lastName": "Belson"}


async def test_formula_cells_are_escaped_in_import_ledgers(project: Path, sandbox: Sandbox) -> None:
    await run_import(project, sandbox, "companies")
    source = project / "evil.csv"
    _write_csv(
        source,
        [
            [
                "First Name",
                "Last Name",
                "E-mail",
                "Phone",
                "Job Title",
                "City",
                "Company Website",
                "LinkedIn",
            ],
            ["=cmd|' /C calc'!A0", "X", "=evil@acme.com", "=2+5", "", "", "acme.com", ""],
            ["@SUM(1+1)", "Y", "+ok@acme.com", "", "-CEO", "", "acme.com", ""],
        ],
    )
    report = await run_import(project, sandbox, "people", source=source)
    assert (report.created, report.rejected) == (1, 1)
    raw = (project / "state" / "people" / "rejects.csv").read_text(encoding="utf-8")
    assert "'=cmd|' /C calc'!A0" in raw and "'=evil@acme.com" in raw
    assert "\n=" not in raw and ",=" not in raw
    (success,) = ledger(project, "people", "success")
    assert success["key"] == "'+ok@acme.com"
    # the value stored in the workspace is the one in the file
    assert people(sandbox)["+ok@acme.com"]["name"]["firstName"] == "@SUM(1+1)"
    assert people(sandbox)["+ok@acme.com"]["jobTitle"] == "-CEO"


async def test_ragged_row_keeps_every_field_in_the_rejects_file(
    project: Path, sandbox: Sandbox
) -> None:
    await run_import(project, sandbox, "companies")
    source = project / "ragged.csv"
    source.write_text(
        "First Name;Last Name;E-mail;Phone;Job Title;City;Company Website;LinkedIn\n"
        "Ann;Lee;ann@acme.com;;;;acme.com;\n"
        "Bo;Ek;bo@acme.com;;CTO;Oslo;acme.com;;extra one;extra two\n",
        encoding="utf-8",
    )
    report = await run_import(project, sandbox, "people", source=source)
    assert (report.created, report.rejected) == (1, 1)
    (line,) = ledger(project, "people", "rejects")
    assert line["_row"] == "3" and line["_stage"] == "read"
    assert line["_value"] == (
        '["Bo", "Ek", "bo@acme.com", "", "CTO", "Oslo", "acme.com", "", "extra one", "extra two"]'
    )


async def test_a_mapping_reading_a_ledger_column_is_refused(
    project: Path, sandbox: Sandbox
) -> None:
    mapping = project / "mappings" / "odd.yaml"
    mapping.write_text(
        "version: 1\nobject: person\nkey: [emails.primaryEmail]\n"
        "fields:\n  emails.primaryEmail: E-mail\n  jobTitle: _reason\n",
        encoding="utf-8",
    )
    source = project / "odd.csv"
    source.write_text("E-mail,_reason\na@b.com,x\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"'_reason'.*own ledger columns"):
        await run_import(project, sandbox, "odd", source=source)


async def test_ledgers_lost_to_a_kill_after_the_last_batch_are_written_again(
    project: Path, sandbox: Sandbox
) -> None:
    """kill -9 between the run's end in the store and its ledgers: the re-run writes them."""
    await run_import(project, sandbox, "companies")
    success, rejects = (
        ledger(project, "companies", "success"),
        ledger(project, "companies", "rejects"),
    )
    for name in ("success.csv", "rejects.csv"):
        (project / "state" / "companies" / name).unlink()
    report = await run_import(project, sandbox, "companies")
    assert report.already_done
    assert ledger(project, "companies", "success") == success
    assert ledger(project, "companies", "rejects") == rejects
    assert report.created == len(success) and report.rejected == len(rejects)
