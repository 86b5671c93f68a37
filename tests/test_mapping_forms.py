"""Mapping forms that migrations from another CRM need: several columns for one field,
time zones for naive date-times, rows skipped by a condition, values dropped not rows."""

from __future__ import annotations

import pytest

from pipeline.errors import MappingError
from tests.test_normalize import reasons, run, values


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
