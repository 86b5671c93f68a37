"""Phone numbers on files shaped like a HubSpot contacts export (Western European + US)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import phonenumbers
import polars as pl
import pytest

from pipeline.config import Rate, Secret
from pipeline.errors import MappingError
from pipeline.fields import phone_plans as phones
from pipeline.fields.phone_plans import country_code, fast_phones
from pipeline.mapping import load_mapping, parse_mapping
from pipeline.mapping_check import check_mapping
from pipeline.normalize import Normalized, make_plan, normalize
from pipeline.runner import import_file
from pipeline.sandbox import Sandbox, SandboxOptions
from pipeline.standard import standard_schema
from pipeline.twenty import TwentyClient

SCHEMA = standard_schema()
COLUMNS = [
    "First Name",
    "Last Name",
    "Email",
    "Phone Number",
    "Mobile Phone Number",
    "Country/Region",
]
# (first, last, email, phone, mobile, country)
HUBSPOT = [
    ("Marie", "Curie", "marie@x.fr", "01 51 66 16 00", "06 12 34 56 78", "France"),
    ("Hans", "Berg", "hans@x.de", "030 4986975", "+49 151 23456789", "Germany"),
    ("Ada", "King", "ada@x.uk", "020 7946 0958", "07400 123456", "UK"),
    ("Grace", "Hopper", "grace@x.us", "(212) 555-1000", "+1 415 555 0132", "United States"),
    ("Pilar", "Ruiz", "pilar@x.es", "912 345 678", "+34 612 345 678", "Spain"),
    ("Jean", "Moulin", "jean@x.fr", "+33 1 51 66 16 00", None, "USA"),
    ("Otto", "Lang", "otto@x.de", "0049 30 4986975", "0151 23456789", "DE"),
    ("Nina", "Blank", "nina@x.io", "01 19 99 81 16", None, None),
    ("Lost", "Land", "lost@x.io", "06 12 34 56 78", None, "Narnia"),
    ("Far", "Away", "far@x.io", "+33 6 12 34 56 78", None, "Atlantis"),
]
FIELDS: dict[str, Any] = {
    "name.firstName": "First Name",
    "name.lastName": "Last Name",
    "emails.primaryEmail": "Email",
    "phones": {
        "column": "Phone Number",
        "country_column": "Country/Region",
        "default_country": "US",
    },
    "phones.additionalPhones": {
        "column": "Mobile Phone Number",
        "country_column": "Country/Region",
        "default_country": "US",
    },
}


def phone(number: str, country: str, calling: str) -> dict[str, str]:
    return {
        "primaryPhoneNumber": number,
        "primaryPhoneCountryCode": country,
        "primaryPhoneCallingCode": calling,
    }


def extra(number: str, country: str, calling: str) -> dict[str, str]:
    return {"number": number, "countryCode": country, "callingCode": calling}


def run(fields: dict[str, Any], rows: list[tuple[str | None, ...]] = HUBSPOT) -> Normalized:
    mapping = parse_mapping(
        {"object": "person", "key": ["emails.primaryEmail"], "fields": fields}, Path("t.yaml")
    )
    frame = pl.DataFrame(
        {
            "_row": list(range(2, len(rows) + 2)),
            **{c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)},
        },
        schema={"_row": pl.Int64, **dict.fromkeys(COLUMNS, pl.String)},
    )
    return normalize(frame, make_plan(mapping, SCHEMA, COLUMNS))


def by_email(result: Normalized) -> dict[str, Any]:
    return dict(
        zip(
            result.records["emails"].struct.field("primaryEmail").to_list(),
            result.records["phones"].to_list(),
            strict=True,
        )
    )


def reasons(result: Normalized) -> dict[int, str]:
    return dict(
        zip(result.rejects["_row"].to_list(), result.rejects["_reason"].to_list(), strict=True)
    )


def test_hubspot_export_with_country_column_primary_and_mobile() -> None:
    r = run(FIELDS)
    assert by_email(r) == {
        "marie@x.fr": {
            **phone("151661600", "FR", "+33"),
            "additionalPhones": [extra("612345678", "FR", "+33")],
        },
        "hans@x.de": {
            **phone("304986975", "DE", "+49"),
            "additionalPhones": [extra("15123456789", "DE", "+49")],
        },
        "ada@x.uk": {
            **phone("2079460958", "GB", "+44"),
            "additionalPhones": [extra("7400123456", "GB", "+44")],
        },
        "grace@x.us": {
            **phone("2125551000", "US", "+1"),
            "additionalPhones": [extra("4155550132", "US", "+1")],
        },
        "pilar@x.es": {
            **phone("912345678", "ES", "+34"),
            "additionalPhones": [extra("612345678", "ES", "+34")],
        },
        # written with its +country code: the row's country does not matter
        "jean@x.fr": {**phone("151661600", "FR", "+33"), "additionalPhones": None},
        "otto@x.de": {
            **phone("304986975", "DE", "+49"),
            "additionalPhones": [extra("15123456789", "DE", "+49")],
        },
        "far@x.io": {**phone("612345678", "FR", "+33"), "additionalPhones": None},
    }
    assert reasons(r) == {
        9: "Phone Number: '01 19 99 81 16' is not a valid phone number for US (no US number "
        "starts with 0); set default_country or country_column, or write it with its "
        "+country code",
        # an unknown country is not replaced by default_country: the number may be of it
        10: "Phone Number: '06 12 34 56 78' has no +country code and the row's Country/Region "
        "'Narnia' is not a country name; write the country as an ISO code (FR) or a name "
        "(France), or the number with its +country code",
    }


def test_default_us_no_longer_takes_european_numbers_as_american() -> None:
    fields = {
        "emails.primaryEmail": "Email",
        "phones": {"column": "Phone Number", "default_country": "US"},
    }
    rows = [
        (None, None, "fr@x.io", "01 51 66 16 00", None, None),
        (None, None, "de@x.io", "030 4986975", None, None),
        (None, None, "us@x.io", "212-555-1000", None, None),
        (None, None, "nl@x.io", "+31 20 123 4567", None, None),
    ]
    r = run(fields, rows)
    assert by_email(r) == {
        "us@x.io": phone("2125551000", "US", "+1"),
        "nl@x.io": phone("201234567", "NL", "+31"),
    }
    assert reasons(r) == {
        2: "Phone Number: '01 51 66 16 00' is not a valid phone number for US (no US number "
        "starts with 0); set default_country or country_column, or write it with its "
        "+country code",
        3: "Phone Number: '030 4986975' is not a valid phone number for US (no US number "
        "starts with 0); set default_country or country_column, or write it with its "
        "+country code",
    }


def test_invalid_for_the_rows_country_names_it() -> None:
    fields = {
        "emails.primaryEmail": "Email",
        "phones": {"column": "Phone Number", "country_column": "Country/Region"},
    }
    rows = [
        (None, None, "a@x.io", "0612", None, "France"),
        (None, None, "b@x.io", "(212) 555-1000", None, "Spain"),
        (None, None, "c@x.io", "+99 123 456", None, None),
        (None, None, "d@x.io", "06 12 34 56 78", None, None),
        (None, None, "e@x.io", "call me", None, "France"),
        (None, None, "f@x.io", "06 12 34 56 78", None, "Narnia"),
    ]
    r = run(fields, rows)
    assert r.records.height == 0
    assert reasons(r) == {
        2: "Phone Number: '0612' is not a valid phone number for FR (the row's Country/Region "
        "'France') (too short: FR numbers have 9 digits after the country code, this one has 4); "
        "check the number and the row's country, or write it with its +country code",
        3: "Phone Number: '(212) 555-1000' is not a valid phone number for ES (the row's "
        "Country/Region 'Spain') (too long: ES numbers have 9 digits after the country code, "
        "this one has 10); check the number and the row's country, or write it with its "
        "+country code",
        4: "Phone Number: '+99 123 456' starts with no known +country code",
        5: "Phone Number: '06 12 34 56 78' has no +country code and no country to read it "
        "with; set default_country or country_column, or write it with its +country code",
        6: "Phone Number: 'call me' is not a phone number",
        7: "Phone Number: '06 12 34 56 78' has no +country code and the row's Country/Region "
        "'Narnia' is not a country name; write the country as an ISO code (FR) or a "
        "name (France), or the number with its +country code",
    }


def test_primary_number_alone_stores_country_and_calling_code() -> None:
    fields = {
        "emails.primaryEmail": "Email",
        "phones.primaryPhoneNumber": {"column": "Phone Number", "default_country": "FR"},
    }
    r = run(fields, [(None, None, "a@x.io", "01 51 66 16 00", None, None)])
    assert by_email(r) == {"a@x.io": phone("151661600", "FR", "+33")}


def test_a_mapped_country_code_column_wins_over_the_implied_one() -> None:
    fields = {
        "emails.primaryEmail": "Email",
        "phones.primaryPhoneNumber": {"column": "Phone Number", "default_country": "FR"},
        "phones.primaryPhoneCountryCode": "Country/Region",
    }
    r = run(fields, [(None, None, "a@x.io", "01 51 66 16 00", None, "FR")])
    assert by_email(r) == {"a@x.io": phone("151661600", "FR", "+33")}
    r = run(fields, [(None, None, "a@x.io", "01 51 66 16 00", None, "MC")])
    assert by_email(r) == {"a@x.io": phone("151661600", "MC", "+33")}


def test_primary_and_split_mobiles_into_additional_phones() -> None:
    fields = {
        "emails.primaryEmail": "Email",
        "phones.primaryPhoneNumber": {"column": "Phone Number", "default_country": "DE"},
        "phones.additionalPhones": {
            "column": "Mobile Phone Number",
            "split": ";",
            "default_country": "DE",
        },
    }
    rows = [(None, None, "a@x.io", "030 4986975", "0151 23456789; +33 6 12 34 56 78", None)]
    r = run(fields, rows)
    assert by_email(r) == {
        "a@x.io": {
            **phone("304986975", "DE", "+49"),
            "additionalPhones": [
                extra("15123456789", "DE", "+49"),
                extra("612345678", "FR", "+33"),
            ],
        }
    }
    bad = run(fields, [(None, None, "a@x.io", "030 4986975", "0151 23456789; 12", None)])
    assert reasons(bad) == {
        2: "Mobile Phone Number: '12' is not a valid phone number for DE (too short: DE "
        "numbers have 4 to 15 digits after the country code, this one has 2); set default_country "
        "or country_column, or write it with its +country code"
    }


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("France", "FR"),
        ("united states", "US"),
        ("USA", "US"),
        ("U.S.A.", "US"),
        ("UK", "GB"),
        ("United Kingdom", "GB"),
        ("Germany", "DE"),
        ("Deutschland", "DE"),
        ("Allemagne", "DE"),
        ("États-Unis", "US"),
        ("Reino Unido", "GB"),
        ("us", "US"),
        ("España", "ES"),
        ("Spain", "ES"),
        ("the Netherlands", "NL"),
        ("Côte d'Ivoire", "CI"),
        ("fr", "FR"),
        ("Narnia", None),
        ("", None),
    ],
)
def test_country_names(text: str, iso: str | None) -> None:
    assert country_code(text) == iso


def test_fast_path_takes_the_everyday_forms_without_the_library() -> None:
    raw = pl.Series(
        ["01 51 66 16 00", "030 4986975", "020 7946 0958", "(212) 555-1000", "+34 912 345 678"]
    )
    home = pl.Series(["FR", "DE", "GB", "US", None])
    fast = fast_phones(raw, home)
    assert fast["ok"].to_list() == [True] * 5
    assert fast["n"].to_list() == [
        "151661600",
        "304986975",
        "2079460958",
        "2125551000",
        "912345678",
    ]
    assert fast["c"].to_list() == ["FR", "DE", "GB", "US", "ES"]


@pytest.mark.parametrize("one_pass", [0, 100])
def test_fast_path_accepts_only_what_phonenumbers_calls_valid(
    one_pass: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every number the vectorized path keeps is the one phonenumbers gives, exactly
    (regions checked by groups, and all in one pass)."""
    monkeypatch.setattr(phones, "ONE_PASS_REGIONS", one_pass)
    rng = random.Random(7)
    regions = ["US", "CA", "FR", "DE", "GB", "ES", "IT", "JE", "RU", "KZ", "NL", "CH", "AU", "MX"]
    values: list[str] = []
    homes: list[str | None] = []
    for region in regions:
        for kind in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE):
            example = phonenumbers.example_number_for_type(region, kind)
            assert example is not None
            national = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL)
            intl = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
            for home in [*regions[:8], None]:
                values += [national, intl]
                homes += [home, home]
    prefixes = ["", "+", "0", "1", "+1", "+44", "+33", "+7", "011", "00"]
    for _ in range(5000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(5, 13)))
        values.append(rng.choice(prefixes) + digits)
        homes.append(rng.choice([*regions, None]))
    fast = fast_phones(pl.Series(values), pl.Series(homes, dtype=pl.String))
    accepted = 0
    for text, home, ok, n, c, k in zip(values, homes, *fast.get_columns(), strict=True):
        if not ok:
            continue
        accepted += 1
        # without a country "00" is read as the international prefix (the library refuses)
        as_written = "+" + text[2:] if home is None and text.startswith("00") else text
        number = phonenumbers.parse(as_written, home)
        assert phonenumbers.is_valid_number(number), (text, home)
        assert (n, c, k) == (
            phonenumbers.national_significant_number(number),
            phonenumbers.region_code_for_number(number),
            f"+{number.country_code}",
        ), (text, home)
    assert accepted > 300


def write_mapping(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return path


def test_mapping_checks_for_phone_options(tmp_path: Path) -> None:
    path = write_mapping(
        tmp_path,
        "object: person\nkey: [emails.primaryEmail]\nfields:\n"
        "  emails.primaryEmail: Email\n"
        "  phones: {column: Phone Number, default_country: ZZ}\n"
        "  jobTitle: {column: Title, country_column: Country/Region}\n",
    )
    with pytest.raises(MappingError) as err:
        check_mapping(load_mapping(path), SCHEMA)
    assert str(err.value).splitlines() == [
        f"{path}:5: field 'phones': default_country 'ZZ' is not a country code, e.g. US"
    ]
    path = write_mapping(
        tmp_path,
        "object: person\nkey: [emails.primaryEmail]\nfields:\n"
        "  emails.primaryEmail: Email\n"
        "  phones: {column: Phone Number}\n"
        "  phones.additionalPhones: Mobile Phone Number\n"
        "  jobTitle: {column: Title, country_column: Country/Region}\n",
    )
    with pytest.raises(MappingError) as err:
        check_mapping(
            load_mapping(path), SCHEMA, ["Email", "Phone Number", "Mobile Phone Number", "Title"]
        )
    assert str(err.value).splitlines() == [
        f"{path}:7: field 'jobTitle': country_column only applies to PHONES fields",
        f"{path}:7: field 'jobTitle': the source has no column 'Country/Region'",
    ]


def test_whole_phones_and_its_primary_number_still_clash(tmp_path: Path) -> None:
    path = write_mapping(
        tmp_path,
        "object: person\nkey: [emails.primaryEmail]\nfields:\n"
        "  emails.primaryEmail: Email\n"
        "  phones: Phone Number\n"
        "  phones.primaryPhoneNumber: Mobile Phone Number\n",
    )
    with pytest.raises(MappingError) as err:
        check_mapping(load_mapping(path), SCHEMA)
    assert str(err.value).splitlines() == [
        f"{path}:6: field 'phones.primaryPhoneNumber': maps the same field as 'phones'"
    ]


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    box = Sandbox(tmp_path / "ws.sqlite", SandboxOptions(throttle=False))
    yield box  # type: ignore[misc]
    box.close()


async def test_hubspot_export_imports_phones_into_the_sandbox(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    source = tmp_path / "hubspot.csv"
    quoted = [",".join(f'"{c}"' for c in COLUMNS)]
    quoted += [",".join(f'"{v}"' if v is not None else "" for v in row) for row in HUBSPOT]
    source.write_text("\n".join(quoted) + "\n", encoding="utf-8")
    mapping = write_mapping(
        tmp_path,
        "object: person\nkey: [emails.primaryEmail]\n"
        f"source: {{path: {source.name}}}\nfields:\n"
        "  name.firstName: First Name\n"
        "  emails.primaryEmail: Email\n"
        "  phones: {column: Phone Number, country_column: Country/Region, default_country: US}\n"
        "  phones.additionalPhones: {column: Mobile Phone Number, "
        "country_column: Country/Region, default_country: US}\n",
    )
    client = TwentyClient(
        base_url="http://sandbox",
        api_key=Secret(sandbox.api_key),
        rate=Rate(10_000, 1),
        transport=httpx.ASGITransport(app=sandbox.app),
    )
    async with client:
        report = await import_file(load_mapping(mapping), client, state_dir=tmp_path / "state")
    assert (report.rows_read, report.loaded, report.rejected) == (10, 8, 2)
    page = sandbox.engine.find_many(sandbox.engine.object("person"), limit=50)
    stored = {p["emails"]["primaryEmail"]: p["phones"] for p in page.records}
    assert stored["hans@x.de"] == {
        **phone("304986975", "DE", "+49"),
        "additionalPhones": [extra("15123456789", "DE", "+49")],
    }
    assert stored["jean@x.fr"]["primaryPhoneNumber"] == "151661600"
    assert stored["jean@x.fr"]["primaryPhoneCallingCode"] == "+33"
