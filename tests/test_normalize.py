"""The normalizer, type by type and rule by rule, plus properties that must always hold."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.fields.composites import normalize_email, normalize_url
from pipeline.mapping import parse_mapping
from pipeline.normalize import (
    ID_NAMESPACE,
    Normalized,
    make_plan,
    normalize,
    to_payloads,
)
from pipeline.standard import standard_schema

SCHEMA = standard_schema()


def run(obj: str, fields: dict[str, Any], rows: dict[str, list[Any]], **extra: Any) -> Normalized:
    """Normalize ``rows`` (column -> values) with a mapping built from ``fields``."""
    data = {"object": obj, "fields": fields, **extra}
    mapping = parse_mapping(data, Path("test.yaml"))
    n = len(next(iter(rows.values())))
    frame = pl.DataFrame(
        {"_row": list(range(2, n + 2)), **rows},
        schema={"_row": pl.Int64, **dict.fromkeys(rows, pl.String)},
    )
    plan = make_plan(mapping, SCHEMA, list(rows))
    return normalize(frame, plan)


def values(result: Normalized, column: str) -> list[Any]:
    return result.records[column].to_list()


def reasons(result: Normalized) -> dict[int, str]:
    return dict(
        zip(result.rejects["_row"].to_list(), result.rejects["_reason"].to_list(), strict=True)
    )


def opp(fields: dict[str, Any], rows: dict[str, list[Any]], n: int = 1) -> Normalized:
    n = len(next(iter(rows.values()))) if rows else n
    return run(
        "opportunity",
        {"name": "deal", **fields},
        {"deal": [f"d{i}" for i in range(n)], **rows},
        key=["name"],
    )


# ------------------------------------------------------------------ numbers, booleans


def test_numbers_with_thousands_and_decimal_comma() -> None:
    r = run(
        "company",
        {"domainName": "d", "employees": "n"},
        {"d": ["a.com", "b.com", "c.com", "e.com"], "n": ["1,200", " 35 ", "1 000", "12a"]},
    )
    assert values(r, "employees") == [1200.0, 35.0, 1000.0]
    assert reasons(r) == {5: "n: '12a' is not a number"}
    eu = run(
        "company",
        {"domainName": "d", "employees": {"column": "n", "decimal": ","}},
        {"d": ["a.com"], "n": ["1.234,5"]},
    )
    assert values(eu, "employees") == [1234.5]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("yes", True),
        ("Y", True),
        ("x", True),
        ("TRUE", True),
        ("1", True),
        ("no", False),
        ("n", False),
        ("0", False),
        ("False", False),
    ],
)
def test_boolean_tokens(text: str, value: bool) -> None:
    r = run(
        "company", {"domainName": "d", "idealCustomerProfile": "b"}, {"d": ["a.com"], "b": [text]}
    )
    assert values(r, "idealCustomerProfile") == [value]


def test_boolean_nonsense_is_rejected() -> None:
    r = run(
        "company",
        {"domainName": "d", "idealCustomerProfile": "b"},
        {"d": ["a.com"], "b": ["maybe"]},
    )
    assert reasons(r) == {2: "b: 'maybe' is not a yes/no value"}


# ------------------------------------------------------------------ dates


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("2025-01-13", "2025-01-13T00:00:00.000Z"),
        ("2025-01-13T10:30:00+02:00", "2025-01-13T08:30:00.000Z"),
        ("2025-01-13 10:30:00", "2025-01-13T10:30:00.000Z"),
        ("13/01/2025", "2025-01-13T00:00:00.000Z"),
        ("01/13/2025", "2025-01-13T00:00:00.000Z"),
        ("05/05/2025", "2025-05-05T00:00:00.000Z"),
        ("Jan 13, 2025", "2025-01-13T00:00:00.000Z"),
        ("13 January 2025", "2025-01-13T00:00:00.000Z"),
    ],
)
def test_unambiguous_dates(text: str, iso: str) -> None:
    r = opp({"closeDate": "c"}, {"c": [text]})
    assert values(r, "closeDate") == [iso]


def test_ambiguous_date_is_refused_with_a_hint() -> None:
    r = opp({"closeDate": "c"}, {"c": ["03/04/2025"]})
    assert reasons(r) == {
        2: "c: '03/04/2025' is ambiguous (day/month or month/day?); set "
        'date_format, e.g. "%d/%m/%Y"'
    }


def test_explicit_date_format_and_impossible_dates() -> None:
    r = opp(
        {"closeDate": {"column": "c", "date_format": "%d/%m/%Y"}},
        {"c": ["03/04/2025", "31/02/2025"]},
    )
    assert values(r, "closeDate") == ["2025-04-03T00:00:00.000Z"]
    assert reasons(r) == {3: "c: '31/02/2025' does not match date_format '%d/%m/%Y'"}
    bad = opp({"closeDate": "c"}, {"c": ["2024-02-30", "soon", "2024"]})
    assert set(reasons(bad)) == {2, 3, 4}


# ------------------------------------------------------------------ money


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("0.1", 100_000),
        ("12,345.678901", 12_345_678_901),
        ("$1,000", 1_000_000_000),
        ("-3.5", -3_500_000),
        ("19.99", 19_990_000),
        ("0.000001", 1),
        ("123456789012.34", 123_456_789_012_340_000),
    ],
)
def test_currency_units_to_exact_micros(text: str, micros: int) -> None:
    r = opp({"amount": {"column": "a", "currency": "eur"}}, {"a": [text]})
    assert values(r, "amount") == [{"amountMicros": micros, "currencyCode": "EUR"}]


def test_currency_rejects_and_currency_column() -> None:
    r = opp(
        {"amount": {"column": "a", "currency_column": "c"}},
        {"a": ["1.2M", "1.1234567", "10", "5"], "c": ["USD", "USD", "euro", "nok"]},
    )
    assert reasons(r) == {
        2: "a: '1.2M' is not an amount",
        3: "a: '1.1234567' has more than 6 decimals",
        4: "c: the currency is not a 3-letter code like EUR",
    }
    assert values(r, "amount") == [{"amountMicros": 5_000_000, "currencyCode": "NOK"}]


def test_decimal_comma_money() -> None:
    r = opp({"amount": {"column": "a", "currency": "EUR", "decimal": ","}}, {"a": ["1.250.000,50"]})
    assert values(r, "amount") == [{"amountMicros": 1_250_000_500_000, "currencyCode": "EUR"}]


# ------------------------------------------------------------------ emails, phones, links


def test_emails_lowered_and_checked() -> None:
    r = run(
        "person",
        {"emails.primaryEmail": "e", "emails.additionalEmails": {"column": "o", "split": ";"}},
        {"e": ["Ada@Example.COM", "bad@@x", "ok@x.io"], "o": ["A@B.io; c@d.io", None, "no"]},
    )
    assert values(r, "emails") == [
        {"primaryEmail": "ada@example.com", "additionalEmails": ["a@b.io", "c@d.io"]}
    ]
    assert reasons(r)[3].startswith("e: 'bad@@x' is not a valid email address")
    assert reasons(r)[4].startswith("o: 'no' is not a valid email address")


def test_unusual_but_valid_address_goes_through_the_library() -> None:
    r = run("person", {"emails": "e"}, {"e": ["user+tag@xn--bcher-kva.example"]})
    assert values(r, "emails") == [{"primaryEmail": "user+tag@xn--bcher-kva.example"}]


def test_phones_with_default_country() -> None:
    r = run(
        "person",
        {"emails": "e", "phones": {"column": "p", "default_country": "FR"}},
        {
            "e": ["a@x.io", "b@x.io", "c@x.io", "d@x.io"],
            "p": ["06 12 34 56 78", "+44 20 7946 0958", "12", None],
        },
    )
    assert values(r, "phones") == [
        {
            "primaryPhoneNumber": "612345678",
            "primaryPhoneCountryCode": "FR",
            "primaryPhoneCallingCode": "+33",
        },
        {
            "primaryPhoneNumber": "2079460958",
            "primaryPhoneCountryCode": "GB",
            "primaryPhoneCallingCode": "+44",
        },
        None,
    ]
    assert reasons(r) == {
        4: "p: '12' is not a valid phone number for FR (too short: FR numbers have 9 digits "
        "after the country code, this one has 2); set default_country or country_column, or write "
        "it with its +country code"
    }


def test_additional_phones() -> None:
    r = run(
        "person",
        {
            "emails": "e",
            "phones.additionalPhones": {"column": "p", "split": "/", "default_country": "US"},
        },
        {"e": ["a@x.io"], "p": ["(415) 555-0132 / +33 6 12 34 56 78"]},
    )
    assert values(r, "phones") == [
        {
            "additionalPhones": [
                {"number": "4155550132", "countryCode": "US", "callingCode": "+1"},
                {"number": "612345678", "countryCode": "FR", "callingCode": "+33"},
            ]
        }
    ]


@pytest.mark.parametrize(
    "text", ["ACME.com/", "https://acme.com", "HTTPS://Acme.COM/", "acme.com", "http://acme.com/"]
)
def test_links_variants_share_a_key(text: str) -> None:
    r = run("company", {"domainName": "d"}, {"d": [text]})
    expected = "http://acme.com" if text.lower().startswith("http://") else "https://acme.com"
    assert values(r, "_key") == [expected]


def test_link_paths_keep_their_case_and_bad_links_are_rejected() -> None:
    r = run(
        "person",
        {"emails": "e", "linkedinLink": "l"},
        {"e": ["a@x.io", "b@x.io"], "l": ["LinkedIn.com/in/AdaL/", "not a url"]},
    )
    assert values(r, "linkedinLink") == [{"primaryLinkUrl": "https://linkedin.com/in/AdaL"}]
    assert reasons(r) == {3: "l: 'not a url' is not a web address"}


# ------------------------------------------------------------------ names, options, misc


def test_full_name_from_one_column() -> None:
    r = run(
        "person",
        {"emails": "e", "name": "n"},
        {
            "e": ["a@x.io", "b@x.io", "c@x.io"],
            "n": ["Ada Lovelace", "Lovelace, Ada", "Jean Claude Van Damme"],
        },
    )
    assert values(r, "name") == [
        {"firstName": "Ada", "lastName": "Lovelace"},
        {"firstName": "Ada", "lastName": "Lovelace"},
        {"firstName": "Jean", "lastName": "Claude Van Damme"},
    ]


def test_select_by_table_label_and_value() -> None:
    r = opp(
        {"stage": {"column": "s", "values": {"Closed won": "CUSTOMER"}}},
        {"s": ["closed WON", "Proposal", "screening", "Lost"]},
    )
    assert values(r, "stage") == ["CUSTOMER", "PROPOSAL", "SCREENING"]
    assert reasons(r) == {
        5: "s: 'Lost' is not an option of stage (NEW, SCREENING, MEETING, "
        "PROPOSAL, CUSTOMER); map it with values:"
    }


def test_constants_templates_defaults_transforms_required() -> None:
    r = run(
        "person",
        {
            "emails": {"column": "e", "required": True},
            "city": {"value": "Paris"},
            "jobTitle": {"template": "{role} at {team}"},
            "name.lastName": {"column": "l", "transform": ["title", {"regex": [r"\s+Jr\.?$", ""]}]},
            "name.firstName": {"column": "f", "default": "Unknown"},
        },
        {
            "e": ["a@x.io", None],
            "role": ["CTO", "CEO"],
            "team": ["R&D", None],
            "l": ["  de la FONTAINE jr.", "x"],
            "f": [None, "Bo"],
        },
    )
    assert values(r, "city") == ["Paris"]
    assert values(r, "jobTitle") == ["CTO at R&D"]
    assert values(r, "name") == [{"firstName": "Unknown", "lastName": "De La Fontaine"}]
    assert reasons(r) == {3: "e: required, but empty"}


def test_null_tokens() -> None:
    r = run(
        "person",
        {"emails": "e", "city": "c"},
        {"e": ["a@x.io"], "c": ["N/A"]},
        source={"null_values": ["N/A"]},
    )
    assert values(r, "city") == [None]


def test_empty_key_is_rejected_once() -> None:
    r = run("person", {"emails": "e", "city": "c"}, {"e": [None, "bad"], "c": ["x", "y"]})
    got = reasons(r)
    assert got[2] == (
        "e: empty, and it is the key (emails.primaryEmail): without it the record "
        "could not be matched on re-runs"
    )
    assert "key" not in got[3] and got[3].startswith("e: 'bad' is not a valid email")


def test_derived_ids_are_deterministic_uuid5() -> None:
    r = opp({}, {})
    first = values(r, "id")
    again = values(opp({}, {}), "id")
    assert first == again
    assert first[0] == str(uuid.uuid5(ID_NAMESPACE, "opportunity\x1fd0"))


def test_relation_lookups_are_normalized_like_their_target() -> None:
    r = run(
        "person",
        {"emails": "e", "company": {"column": "c", "lookup": "domainName.primaryLinkUrl"}},
        {"e": ["a@x.io"], "c": ["ACME.com/"]},
    )
    assert values(r, "__lookup__companyId") == ["https://acme.com"]
    by_id = run(
        "person",
        {"emails": "e", "company": {"column": "c", "lookup": "id"}},
        {"e": ["a@x.io", "b@x.io"], "c": ["0F8FAD5B-D9CB-469F-A165-70867728950E", "nope"]},
    )
    assert values(by_id, "companyId") == ["0f8fad5b-d9cb-469f-a165-70867728950e"]
    assert reasons(by_id) == {3: "c: 'nope' is not a UUID"}


def test_multi_select_array_rating_uuid_json_richtext() -> None:
    from pipeline.sandbox.standard import standard_metadata
    from pipeline.schema import Field, SelectOption, WorkspaceSchema

    objects, fields = standard_metadata()
    note_id = next(o["id"] for o in objects if o["nameSingular"] == "note")
    extra = [
        {
            "objectMetadataId": note_id,
            "name": "tags",
            "type": "MULTI_SELECT",
            "options": [
                {"value": "HOT", "label": "Hot"},
                {"value": "VIP", "label": "Very important"},
            ],
        },
        {"objectMetadataId": note_id, "name": "aliases", "type": "ARRAY"},
        {
            "objectMetadataId": note_id,
            "name": "score",
            "type": "RATING",
            "options": [{"value": f"RATING_{i}", "label": str(i)} for i in range(1, 6)],
        },
        {"objectMetadataId": note_id, "name": "ref", "type": "UUID"},
        {"objectMetadataId": note_id, "name": "meta", "type": "RAW_JSON"},
    ]
    from pipeline.schema import parse_schema

    schema: WorkspaceSchema = parse_schema(objects, fields + extra)
    del Field, SelectOption
    mapping = parse_mapping(
        {
            "object": "note",
            "key": ["title"],
            "fields": {
                "title": "t",
                "tags": {"column": "g", "split": "|"},
                "aliases": {"column": "a", "split": ","},
                "score": "s",
                "ref": "r",
                "meta": "m",
                "bodyV2": "b",
            },
        },
        Path("x.yaml"),
    )
    frame = pl.DataFrame(
        {
            "_row": [2, 3],
            "t": ["n1", "n2"],
            "g": ["hot | Very Important", "x"],
            "a": ["a, b", None],
            "s": ["4", "RATING_2"],
            "r": ["0f8fad5b-d9cb-469f-a165-70867728950e", None],
            "m": ['{"k": 1}', "{bad"],
            "b": ["# Title", "Text"],
        }
    )
    result = normalize(frame, make_plan(mapping, schema, frame.columns[1:]))
    assert result.records.height == 1 and result.skipped.height == 0
    assert values(result, "tags") == [["HOT", "VIP"]]
    assert values(result, "aliases") == [["a", "b"]]
    assert values(result, "score") == ["RATING_4"]
    assert values(result, "meta") == ['{"k": 1}']
    assert values(result, "bodyV2") == [{"markdown": "# Title"}]
    assert "g: 'x' has a value that is not an option of tags" in reasons(result)[3]
    assert "m: '{bad' is not valid JSON" in reasons(result)[3]


def test_payloads_leave_nulls_out() -> None:
    r = run(
        "person",
        {"emails": "e", "city": "c", "name.firstName": "f", "name.lastName": "l"},
        {"e": ["a@x.io"], "c": [None], "f": ["Ada"], "l": [None]},
    )
    assert to_payloads(r.records) == [
        {"emails": {"primaryEmail": "a@x.io"}, "name": {"firstName": "Ada"}}
    ]


# ------------------------------------------------------------------ properties

ANY_TEXT = st.one_of(st.none(), st.text(max_size=40))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(ANY_TEXT, ANY_TEXT, ANY_TEXT, ANY_TEXT, ANY_TEXT, ANY_TEXT),
        min_size=1,
        max_size=8,
    )
)
def test_normalization_never_raises_and_accounts_for_every_row(rows: list[tuple[Any, ...]]) -> None:
    columns = ["e", "p", "d", "n", "a", "s"]
    data = {c: [row[i] for row in rows] for i, c in enumerate(columns)}
    r = run(
        "opportunity",
        {
            "name": "e",
            "amount": {"column": "n", "currency": "USD"},
            "closeDate": "d",
            "stage": "s",
            "pointOfContact": {"column": "p", "lookup": "emails.primaryEmail"},
            "company": {"column": "a", "lookup": "domainName.primaryLinkUrl"},
        },
        data,
        key=["name"],
    )
    assert r.records.height + r.rejects.height == len(rows)
    assert r.rejects["_reason"].null_count() == 0
    to_payloads(r.records)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_link_normalization_is_idempotent(text: str) -> None:
    once = normalize_url(pl.Series([text], dtype=pl.String))
    twice = normalize_url(once)
    assert once.to_list() == twice.to_list() or once[0] is None


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.emails(), st.text(max_size=40)))
def test_email_normalization_is_idempotent(text: str) -> None:
    once = normalize_email(pl.Series([text], dtype=pl.String)).value
    if once[0] is None:
        return
    twice = normalize_email(once).value
    assert once.to_list() == twice.to_list()
