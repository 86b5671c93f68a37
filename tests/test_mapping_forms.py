"""Mapping forms that migrations from another CRM need: several columns for one field,
time zones for naive date-times, rows skipped by a condition, values dropped not rows."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.errors import MappingError
from pipeline.normalize import Normalized
from tests.test_normalize import reasons, run, values


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
