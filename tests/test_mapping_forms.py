"""Mapping forms that migrations from another CRM need: several columns for one field,
time zones for naive date-times, rows skipped by a condition, values dropped not rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import MappingError
from pipeline.normalize import Normalized
from pipeline.sandbox import Sandbox
from tests.test_import import ledger, people, project, run_import, sandbox
from tests.test_normalize import reasons, run, values

__all__ = ["project", "sandbox"]


def opp(fields: dict[str, Any], rows: dict[str, list[Any]], **extra: Any) -> Normalized:
    n = len(next(iter(rows.values())))
    deals = {"deal": [f"d{i}" for i in range(n)], **rows}
    return run("opportunity", {"name": "deal", **fields}, deals, key=["name"], **extra)


def test_the_first_non_empty_of_several_columns() -> None:
    r = run(
        "person",
        {
            "emails": "e",
            "phones": {"column": ["work", "mobile", "home"], "default_country": "FR"},
        },
        {
            "e": ["a@x.io", "b@x.io", "c@x.io", "d@x.io"],
            "work": ["06 12 34 56 78", "  ", "N/A", None],
            "mobile": [None, "07 81 22 33 44", None, "12"],
            "home": ["01 00 00 00 01", None, "01 23 45 67 89", None],
        },
        source={"null_values": ["", "N/A"]},
    )
    assert [v["primaryPhoneNumber"] if v else None for v in values(r, "phones")] == [
        "612345678",  # work, though home is filled too
        "781223344",  # work blank: mobile
        "123456789",  # work a null token, mobile empty: home
    ]
    assert reasons(r) == {
        5: "work / mobile / home: '12' is not a valid phone number for FR (too short: FR "
        "numbers have 9 digits after the country code, this one has 2); set default_country "
        "or country_column, or write it with its +country code"
    }


def test_several_columns_must_all_exist_and_be_names() -> None:
    with pytest.raises(MappingError) as err:
        run("person", {"emails": "e", "jobTitle": {"column": ["t", 3]}}, {"e": ["a@x.io"]})
    assert "column must be a column name, or a list of them (the first non-empty)" in str(err.value)


def test_naive_date_times_are_read_in_the_mapping_time_zone() -> None:
    r = opp(
        {"closeDate": "when", "createdAt": {"column": "made", "timezone": "UTC"}},
        {
            "when": [
                "2024-03-07 14:05",  # Paris winter time: UTC+1
                "2024-07-01 09:00",  # summer time: UTC+2
                "2024-10-27 02:30",  # clocks back: happens twice, the first is taken
                "2024-03-31 02:30",  # clocks forward: never happened
                "2024-03-07T14:05:00Z",  # an offset of its own is kept
                "2024-03-07T14:05:00-05:00",
            ],
            "made": ["2024-03-07 14:05"] * 6,
        },
        timezone="Europe/Paris",
    )
    assert values(r, "closeDate") == [
        "2024-03-07T13:05:00.000Z",
        "2024-07-01T07:00:00.000Z",
        "2024-10-27T00:30:00.000Z",
        "2024-03-07T14:05:00.000Z",
        "2024-03-07T19:05:00.000Z",
    ]
    assert set(values(r, "createdAt")) == {"2024-03-07T14:05:00.000Z"}  # its own zone
    assert reasons(r) == {
        5: "when: '2024-03-31 02:30' does not exist in Europe/Paris (the clocks went "
        "forward that night)"
    }


def test_a_date_format_is_read_in_the_zone_too() -> None:
    r = opp(
        {"closeDate": {"column": "when", "date_format": "%d/%m/%Y %H:%M"}},
        {"when": ["07/03/2024 14:05"]},
        timezone="America/New_York",
    )
    assert values(r, "closeDate") == ["2024-03-07T19:05:00.000Z"]


def test_an_unknown_time_zone_is_a_mapping_error() -> None:
    with pytest.raises(MappingError) as err:
        opp({"closeDate": {"column": "when", "timezone": "Europe/Pariss"}}, {"when": ["x"]})
    assert "timezone 'Europe/Pariss' is not a known time zone" in str(err.value)


@pytest.mark.parametrize("name", ["localtime", "Factory"])
def test_a_tzdata_file_polars_does_not_know_is_a_mapping_error(name: str) -> None:
    """zoneinfo reads these files, polars' zone table has no such zone: refused at load,
    not a ComputeError in the middle of the run."""
    with pytest.raises(MappingError) as err:
        opp({"closeDate": {"column": "when", "timezone": name}}, {"when": ["2024-01-01"]})
    assert f"timezone {name!r} is not a known time zone" in str(err.value)


def test_rows_that_do_not_meet_where_are_skipped_not_rejected() -> None:
    r = run(
        "person",
        {"emails": "e"},
        {
            "e": ["a@x.io", "b@x.io", "not an e-mail", "d@x.io", "e@x.io"],
            "IsDeleted": ["0", "1", "1", None, "true"],
            "Stage": ["lead", "lead", "lead", "other", "lead"],
        },
        where=[
            {"column": "IsDeleted", "not_in": ["1", "true"]},
            {"column": "Stage", "in": ["lead", "customer"]},
        ],
    )
    assert values(r, "emails") == [{"primaryEmail": "a@x.io"}]
    assert reasons(r) == {}  # row 4's bad e-mail is not judged: the row is skipped
    assert dict(r.skipped.select("_row", "_reason").iter_rows()) == {
        3: "skipped: the row does not meet where: IsDeleted is none of '1', 'true'",
        4: "skipped: the row does not meet where: IsDeleted is none of '1', 'true'",
        5: "skipped: the row does not meet where: Stage is one of 'lead', 'customer'",
        6: "skipped: the row does not meet where: IsDeleted is none of '1', 'true'",
    }


def test_where_is_checked_when_the_mapping_is_read() -> None:
    with pytest.raises(MappingError) as err:
        run("person", {"emails": "e"}, {"e": ["a@x.io"]}, where={"column": "x", "like": "y"})
    assert "where on 'x' takes one of in, not_in, not_empty, empty" in str(err.value)


def test_a_where_column_the_file_lacks_is_a_mapping_error() -> None:
    with pytest.raises(MappingError) as err:
        run(
            "person",
            {"emails": "e"},
            {"e": ["a@x.io"]},
            where={"column": "IsDeleted", "not_in": ["1"]},
        )
    assert "where: the source has no column 'IsDeleted'" in str(err.value)


async def test_a_bad_value_is_dropped_and_listed_and_its_row_loads(
    project: Path, sandbox: Sandbox
) -> None:
    """on_invalid: drop_value: the contact loads without its invalid phone and malformed
    LinkedIn URL; each value is a value_dropped line of rejects.csv; a bad key still
    rejects its row; exit code 3 so that someone looks."""
    (project / "mappings" / "contacts.yaml").write_text(
        "version: 1\nobject: person\nkey: [emails.primaryEmail]\non_invalid: drop_value\n"
        "fields:\n  emails.primaryEmail: email\n  name.firstName: first\n"
        "  phones: {column: phone, default_country: FR}\n"
        "  linkedinLink.primaryLinkUrl: linkedin\n"
        "  jobTitle: {column: title, on_invalid: reject_row}\n",
        encoding="utf-8",
    )
    source = project / "contacts.csv"
    source.write_text(
        "email,first,phone,linkedin,title\n"
        "zoe@x.io,Zoë,12,linkedin.com/in/zoe,CTO\n"
        "ann@x.io,Ann,06 12 34 56 78,http://exa mple.com,Buyer\n"
        "not-an-email,Bob,06 12 34 56 79,,\n"
        "cy@x.io,Cy,abc,linkedin.com/in/cy,Boss\n",
        encoding="utf-8",
    )
    report = await run_import(project, sandbox, "contacts", source=source)
    assert (report.created, report.rejected, report.values_dropped) == (3, 1, 3)
    assert report.exit_code == 3
    stored = people(sandbox)
    assert stored["zoe@x.io"]["name"]["firstName"] == "Zoë"
    assert stored["zoe@x.io"]["phones"]["primaryPhoneNumber"] in ("", None)
    assert stored["zoe@x.io"]["linkedinLink"]["primaryLinkUrl"] == "https://linkedin.com/in/zoe"
    assert stored["ann@x.io"]["phones"]["primaryPhoneNumber"] == "612345678"
    assert stored["ann@x.io"]["linkedinLink"]["primaryLinkUrl"] in ("", None)
    assert stored["ann@x.io"]["jobTitle"] == "Buyer"
    lines = ledger(project, "contacts", "rejects")
    assert [(r["_row"], r["_stage"], r["_column"], r["_value"]) for r in lines] == [
        ("2", "value_dropped", "phone", "12"),
        ("3", "value_dropped", "linkedin", "http://exa mple.com"),
        ("4", "normalize", "email", "not-an-email"),
        ("5", "value_dropped", "phone", "abc"),
    ]
    assert lines[0]["email"] == "zoe@x.io" and lines[0]["first"] == "Zoë"
    assert lines[0]["_reason"].startswith("'12' is not a valid phone number for FR")
    success = {r["key"]: r["outcome"] for r in ledger(project, "contacts", "success")}
    assert success == {"zoe@x.io": "created", "ann@x.io": "created", "cy@x.io": "created"}


def test_validate_counts_the_values_it_would_drop(project: Path) -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    mapping = project / "mappings" / "drop.yaml"
    mapping.write_text(
        "version: 1\nobject: person\nkey: [emails.primaryEmail]\non_invalid: drop_value\n"
        "fields:\n  emails.primaryEmail: email\n  phones: {column: phone, default_country: FR}\n",
        encoding="utf-8",
    )
    source = project / "drop.csv"
    source.write_text("email,phone\na@x.io,12\nb@x.io,06 12 34 56 78\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["validate", str(mapping), str(source), "--offline"], env={"TWENTY_SANDBOX": "1"}
    )
    assert result.exit_code == 3, result.output
    assert "  valid:    2" in result.output
    assert "  values dropped from valid rows: 1 (on_invalid)" in result.output
    assert "phone: value dropped (on_invalid)" in result.output


async def test_the_source_creation_date_is_kept(project: Path, sandbox: Sandbox) -> None:
    (project / "mappings" / "dated.yaml").write_text(
        "version: 1\nobject: person\nkey: [emails.primaryEmail]\ntimezone: America/New_York\n"
        "fields:\n  emails.primaryEmail: email\n  createdAt: {column: Create Date}\n",
        encoding="utf-8",
    )
    source = project / "dated.csv"
    source.write_text("email,Create Date\nzoe@x.io,2019-05-02 09:30\n", encoding="utf-8")
    report = await run_import(project, sandbox, "dated", source=source)
    # Twenty's answer cannot say "created" once createdAt is sent: a read per batch does
    assert (report.created, report.updated, report.outcome_reads) == (1, 0, 1)
    assert people(sandbox)["zoe@x.io"]["createdAt"] == "2019-05-02T13:30:00.000Z"
    again = await run_import(project, sandbox, "dated", source=source, restart=True)
    assert (again.created, again.updated) == (0, 1)


async def test_country_column_names_in_several_languages_and_unknown_ones(
    project: Path, sandbox: Sandbox
) -> None:
    """A country the column names wins; a blank cell falls back to default_country; a
    name that is no country is never replaced by the default (the number may be of it)."""
    (project / "mappings" / "phones.yaml").write_text(
        "version: 1\nobject: person\nkey: [emails.primaryEmail]\nfields:\n"
        "  emails.primaryEmail: Email\n"
        "  phones: {column: Phone, country_column: Country, default_country: FR}\n",
        encoding="utf-8",
    )
    source = project / "phones.csv"
    source.write_text(
        "Email,Phone,Country\na@x.com,06 12 34 56 78,France\nb@x.com,030 4986975,Deutschland\n"
        "c@x.com,(415) 555-0132,us\nd@x.com,06 12 34 56 79,\ne@x.com,06 12 34 56 70,Narnia\n"
        "f@x.com,+44 20 7946 0958,Atlantis\ng@x.com,06 12 34 56 71,États-Unis\n",
        encoding="utf-8",
    )
    report = await run_import(project, sandbox, "phones", source=source)
    assert (report.created, report.rejected, report.exit_code) == (5, 2, 3)
    stored = {
        k: (
            v["phones"]["primaryPhoneNumber"],
            v["phones"]["primaryPhoneCallingCode"],
            v["phones"]["primaryPhoneCountryCode"],
        )
        for k, v in people(sandbox).items()
    }
    assert stored == {
        "a@x.com": ("612345678", "+33", "FR"),
        "b@x.com": ("304986975", "+49", "DE"),
        "c@x.com": ("4155550132", "+1", "US"),
        "d@x.com": ("612345679", "+33", "FR"),
        "f@x.com": ("2079460958", "+44", "GB"),
    }
    reasons_by_row = {r["_row"]: r["_reason"] for r in ledger(project, "phones", "rejects")}
    assert reasons_by_row["6"] == (
        "Phone: '06 12 34 56 70' has no +country code and the row's Country 'Narnia' is not "
        "a country name; write the country as an ISO code (FR) or a name (France), or the "
        "number with its +country code"
    )
    assert reasons_by_row["8"].startswith(
        "Phone: '06 12 34 56 71' is not a valid phone number for US"
    )


def test_an_unknown_country_drops_the_number_under_drop_value() -> None:
    r = run(
        "person",
        {
            "emails.primaryEmail": "email",
            "phones": {"column": "phone", "country_column": "country", "on_invalid": "drop_value"},
        },
        {"email": ["a@x.com"], "phone": ["06 12 34 56 78"], "country": ["Narnia"]},
    )
    assert reasons(r) == {}
    assert r.dropped is not None
    assert r.dropped.select("_column", "_value").rows() == [("phone", "06 12 34 56 78")]
    assert "the row's country 'Narnia' is not a country name" in r.dropped["_reason"][0]


def test_the_import_summary_says_which_where_skipped_the_rows(project: Path) -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    mapping = project / "mappings" / "staged.yaml"
    mapping.write_text(
        "version: 1\nobject: person\nkey: [emails.primaryEmail]\n"
        'where: {column: "Lifecycle Stage", not_in: [other]}\n'
        "fields:\n  emails.primaryEmail: email\n",
        encoding="utf-8",
    )
    source = project / "staged.csv"
    source.write_text("email,Lifecycle Stage\na@x.io,lead\nb@x.io,other\n", encoding="utf-8")
    state = ["--state-dir", str(project / "state"), "--quiet"]
    result = CliRunner().invoke(
        cli, ["import", str(mapping), str(source), "--sandbox", str(project / "ws.sqlite"), *state]
    )
    assert result.exit_code == 0, result.output
    assert "  skipped            1 (where: Lifecycle Stage is none of 'other')" in result.output
