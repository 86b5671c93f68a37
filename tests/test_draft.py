"""``init-mapping`` on HubSpot exports and hostile headers, against the sandbox.

Each draft must name every column (mapped, or in a comment with the reason), never
guess a select value, parse to exactly the intended YAML, and pass ``validate``.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.draft import option_table
from pipeline.schema import Field, SelectOption
from pipeline.yaml_text import yaml_scalar as _scalar
from pipeline.yaml_text import yaml_str as _yaml_str

HUBSPOT = Path(__file__).resolve().parent / "data" / "hubspot"
STAGE_OPTIONS = "options: NEW, SCREENING, MEETING, PROPOSAL, CUSTOMER"


def invoke(tmp: Path, *args: str) -> Any:
    return CliRunner().invoke(
        cli, [*args, f"--sandbox={tmp / 'ws.sqlite'}", "--state-dir", str(tmp / "state")]
    )


def draft(tmp: Path, source: Path, obj: str) -> tuple[str, Path]:
    """Run init-mapping into a file beside the source; return the text and the file."""
    out = tmp / f"{source.stem}.yaml"
    result = invoke(tmp, "init-mapping", str(source), "--object", obj, "-o", str(out))
    assert result.exit_code == 0, result.output
    return out.read_text(encoding="utf-8"), out


def headers_of(source: Path) -> list[str]:
    with source.open(encoding="utf-8", newline="") as handle:
        return [h.strip() for h in next(csv.reader(handle))]


def reasons(text: str) -> dict[str, str]:
    """Column -> reason, from the draft's "Columns not mapped" comments."""
    out = {}
    for line in text.splitlines():
        if line.startswith('#   "'):
            quoted, _, why = line[4:].partition('": ')
            out[yaml.safe_load(quoted + '"')] = why
    return out


def assert_every_column_appears(text: str, source: Path) -> None:
    data = yaml.safe_load(text)
    mapped = set()
    for spec in data["fields"].values():
        mapped.add(spec if isinstance(spec, str) else spec["column"])
    explained = set(reasons(text))
    assert mapped.isdisjoint(explained)
    assert mapped | explained == set(headers_of(source))


@pytest.fixture
def hubspot(tmp_path: Path) -> Path:
    for name in ("contacts.csv", "companies.csv", "deals.csv"):
        shutil.copy(HUBSPOT / name, tmp_path / name)
    return tmp_path


def test_hubspot_contacts(hubspot: Path) -> None:
    text, out = draft(hubspot, hubspot / "contacts.csv", "person")
    data = yaml.safe_load(text)
    assert data["key"] == ["emails.primaryEmail"]
    assert data["fields"] == {
        "name.firstName": "First Name",
        "name.lastName": "Last Name",
        "emails.primaryEmail": "Email",
        "phones": {
            "column": "Phone Number",
            "country_column": "Country/Region",
            "default_country": "US",
        },
        "jobTitle": "Job Title",
        "city": "City",
        "createdAt": "Create Date",
    }
    assert_every_column_appears(text, hubspot / "contacts.csv")
    why = reasons(text)
    assert why["Record ID"].startswith(
        "no field of person holds it; create a unique TEXT field such as hubspotId"
    )
    assert why["Mobile Phone Number"] == (
        'phones is mapped from "Phone Number"; a second number goes into the record\'s '
        "additional phones"
    )
    assert (
        '#     suggestion: phones.additionalPhones: {column: "Mobile Phone Number"}'
    ) in text.splitlines()
    assert why["Country/Region"] == (
        "no field of person matches it; create a field of type TEXT to keep it; "
        "the phones mapping reads it as each row's country (country_column)"
    )
    assert why["LinkedIn Company Page"] == (
        "it describes the company, not the person: map it in a mapping into company"
    )
    assert why["Associated Company IDs"].startswith(
        "a relation to company by its HubSpot id needs a unique field on company"
    )
    assert why["Contact owner"] == "person has no owner field; create a TEXT field to keep it"
    checked = invoke(hubspot, "validate", str(out))
    assert checked.exit_code == 0, checked.output
    assert "contacts.csv: 6 rows read" in checked.output


def test_hubspot_companies(hubspot: Path) -> None:
    text, out = draft(hubspot, hubspot / "companies.csv", "company")
    data = yaml.safe_load(text)
    assert data["key"] == ["domainName.primaryLinkUrl"]
    assert data["fields"] == {
        "name": "Company name",
        "domainName.primaryLinkUrl": "Company Domain Name",
        "address.addressCity": "City",
        "address.addressCountry": "Country/Region",
        "employees": "Number of Employees",
        "annualRecurringRevenue": {"column": "Annual Revenue", "currency": "USD"},
        "linkedinLink.primaryLinkUrl": "LinkedIn Company Page",
        "createdAt": "Create Date",
    }
    assert_every_column_appears(text, hubspot / "companies.csv")
    why = reasons(text)
    assert sorted(why) == ["Company owner", "Industry", "Phone Number", "Record ID"]
    assert why["Phone Number"] == (
        "no field of company matches it; create a field of type PHONES to keep it"
    )
    checked = invoke(hubspot, "validate", str(out))
    assert checked.exit_code == 0, checked.output
    assert "companies.csv: 6 rows read" in checked.output


HUBSPOT_STAGES = (
    "appointmentscheduled",
    "closedlost",
    "closedwon",
    "contractsent",
    "decisionmakerboughtin",
    "presentationscheduled",
    "qualifiedtobuy",
)


def test_hubspot_deals_stage_table_guesses_nothing(hubspot: Path) -> None:
    text, out = draft(hubspot, hubspot / "deals.csv", "opportunity")
    data = yaml.safe_load(text)
    assert data["fields"] == {
        "name": "Deal Name",
        "stage": {
            "column": "Deal Stage",
            "values": {"Meetings": "MEETING", "Proposal": "PROPOSAL", "screening": "SCREENING"},
        },
        "amount": {"column": "Amount", "currency": "USD"},
        "closeDate": "Close Date",
        "createdAt": "Create Date",
    }
    lines = text.splitlines()
    start = lines.index("  stage:")
    assert lines[start : start + 13] == [
        "  stage:",
        '    column: "Deal Stage"',
        "    values:  # labels of the first 200 rows; replace each ? with an option and "
        "uncomment it",
        '      "Meetings": MEETING  # close to MEETING (93; next 59)',
        '      "Proposal": PROPOSAL  # same as the option',
        '      "screening": SCREENING  # same as the option',
        *(f'      # "{stage}": ?  # {STAGE_OPTIONS}' for stage in HUBSPOT_STAGES),
    ]
    assert_every_column_appears(text, hubspot / "deals.csv")
    assert sorted(reasons(text)) == [
        "Associated Company IDs",
        "Associated Contact IDs",
        "Deal owner",
        "Pipeline",
        "Record ID",
    ]
    # validate refuses each row whose stage is left unmapped, and names the options.
    checked = invoke(hubspot, "validate", str(out), "--json")
    assert checked.exit_code == 3, checked.output
    report = json.loads(checked.stdout)
    assert (report["rows"], report["valid"], report["rejected"]) == (10, 3, 7)
    with open(report["rejects_file"], encoding="utf-8", newline="") as handle:
        rejected = {int(r["_row"]): r["_reason"] for r in csv.DictReader(handle)}
    stage_of_row = {
        2: "closedwon",
        3: "contractsent",
        4: "appointmentscheduled",
        5: "closedlost",
        6: "qualifiedtobuy",
        7: "presentationscheduled",
        8: "decisionmakerboughtin",
    }
    assert rejected == {
        row: f"Deal Stage: '{stage}' is not an option of stage "
        "(NEW, SCREENING, MEETING, PROPOSAL, CUSTOMER); map it with values:"
        for row, stage in stage_of_row.items()
    }


def test_filled_in_stage_table_validates(hubspot: Path) -> None:
    text, out = draft(hubspot, hubspot / "deals.csv", "opportunity")
    filled = {"closedwon": "CUSTOMER", "closedlost": "NEW", "contractsent": "PROPOSAL"}
    for label, value in filled.items():
        text = text.replace(f'      # "{label}": ?', f'      "{label}": {value}')
    out.write_text(text, encoding="utf-8")
    checked = invoke(hubspot, "validate", str(out), "--json")
    report = json.loads(checked.stdout)
    assert (report["rows"], report["valid"], report["rejected"]) == (10, 6, 4)


STAGE = Field(
    "stage",
    "SELECT",
    "Stage",
    options=(
        SelectOption("CLOSED_WON", "Closed won"),
        SelectOption("CLOSED_LOST", "Closed lost"),
        SelectOption("MEETING", "Meeting"),
    ),
)


def test_option_table_maps_exact_and_unambiguous_labels_only() -> None:
    table = option_table(["closed won", "Closed-Lost", "closedwon", "closed", "Meetings"], STAGE)
    assert [(label, value) for label, value, _ in table] == [
        ("closed won", "CLOSED_WON"),  # the option's label
        ("Closed-Lost", "CLOSED_LOST"),  # the option's value, but for case and punctuation
        ("closedwon", "CLOSED_WON"),
        ("closed", None),  # as close to won as to lost: left for the user
        ("Meetings", "MEETING"),
    ]
    assert table[3][2] == "options: CLOSED_WON, CLOSED_LOST, MEETING"


HOSTILE = {
    "First Name\nobject: company": ["Ada", "Ren"],
    "Last\nName": ["Lovelace", "Yamada"],
    "Email": ["ada@example.com", "ren@example.jp"],
    "# Job: Title": ["CTO", "CEO"],
    'E-mail "work"': ["ada@work.example.com", ""],
    "City\twork": ["London", "Tokyo"],
    "  Prénom  ": ["Ada", "Ren"],
    "Notes\u2028key: [x]": ["n", "m"],
    "Ref\x85id": ["1", "2"],
    "Back\\slash": ["b", "c"],
    "{flow}: [a, b]": ["x", "y"],
    "'single' - dash": ["x", "y"],
    "bell\x07": ["z", "y"],
    "Zoë 🚀": ["s", "t"],
}


def test_hostile_headers_stay_inside_their_strings(tmp_path: Path) -> None:
    source = tmp_path / "hostile.csv"
    with source.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HOSTILE)
        writer.writerows(zip(*HOSTILE.values(), strict=True))
    text, out = draft(tmp_path, source, "person")
    assert yaml.safe_load(text) == {
        "version": 1,
        "object": "person",
        "source": {"path": "hostile.csv", "format": "csv"},
        "key": ["emails.primaryEmail"],
        "on_duplicate_key": "last",
        "fields": {
            "name.lastName": "Last\nName",
            "emails.primaryEmail": "Email",
            "jobTitle": "# Job: Title",
            "name.firstName": "Prénom",
        },
    }
    # Every other header is in a comment, escaped, on its own line.
    explained = reasons(text)
    assert set(explained) == {h.strip() for h in HOSTILE} - {
        "Last\nName",
        "Email",
        "# Job: Title",
        "Prénom",
    }
    assert '#   "First Name\\nobject: company": ' in text
    assert '#   "Notes\\u2028key: [x]": ' in text
    assert '#   "Ref\\x85id": ' in text
    assert '#   "bell\\x07": ' in text
    assert all(line.isprintable() for line in text.splitlines())
    checked = invoke(tmp_path, "validate", str(out))
    assert checked.exit_code == 0, checked.output
    assert "hostile.csv: 2 rows read" in checked.output


def test_hostile_option_labels_are_escaped(tmp_path: Path) -> None:
    source = tmp_path / "stages.csv"
    labels = ["closed\nwon: CUSTOMER", 'Meeting "1"', "# new", "proposal"]
    with source.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Deal Name", "Deal Stage"])
        writer.writerows([f"Deal {i}", label] for i, label in enumerate(labels))
    text, out = draft(tmp_path, source, "opportunity")
    assert yaml.safe_load(text)["fields"]["stage"] == {
        "column": "Deal Stage",
        "values": {"# new": "NEW", 'Meeting "1"': "MEETING", "proposal": "PROPOSAL"},
    }
    assert f'      # "closed\\nwon: CUSTOMER": ?  # {STAGE_OPTIONS}' in text.splitlines()
    checked = invoke(tmp_path, "validate", str(out), "--json")
    report = json.loads(checked.stdout)
    assert (report["rows"], report["valid"], report["rejected"]) == (4, 3, 1)


@pytest.mark.parametrize(
    "text",
    [
        "plain",
        'a "b" c',
        "back\\slash",
        "new\nline",
        "tab\there",
        "nel\x85",
        "ls\u2028ps\u2029",
        "bom\ufeff",
        "nul\x00",
        "del\x7f",
        "é ✓ 🚀",
        " spaced ",
        "#: [{}]",
    ],
)
def test_yaml_str_round_trips_on_one_line(text: str) -> None:
    quoted = _yaml_str(text)
    assert quoted.isprintable()
    assert yaml.safe_load(f"k: {quoted}  # c") == {"k": text}
    assert yaml.safe_load(f"# {quoted}\nk: 1") == {"k": 1}


def test_the_suggested_additional_phones_line_validates_beside_phones(
    hubspot: Path,
) -> None:
    text, out = draft(hubspot, hubspot / "contacts.csv", "person")
    text = text.replace(
        "  jobTitle:", '  phones.additionalPhones: {column: "Mobile Phone Number"}\n  jobTitle:'
    )
    out.write_text(text, encoding="utf-8")
    checked = invoke(hubspot, "validate", str(out))
    assert checked.exit_code == 0, checked.output


def test_option_table_rating_numbers_and_odd_option_values() -> None:
    rating = Field(
        "score",
        "RATING",
        "Score",
        options=tuple(SelectOption(f"RATING_{i}", "★" * i) for i in range(1, 4)),
    )
    assert [(lab, val) for lab, val, _ in option_table(["2", "RATING_3", "7"], rating)] == [
        ("2", "RATING_2"),
        ("RATING_3", "RATING_3"),
        ("7", None),
    ]
    assert _scalar("CLOSED_WON") == "CLOSED_WON"
    assert _scalar("YES") == '"YES"'  # YAML 1.1 would read it as true
    assert _scalar("A: b") == '"A: b"'


def add_id_field(tmp: Path, *objects: str) -> None:
    """A unique TEXT field hubspotId on each of ``objects`` of the sandbox workspace."""
    from pipeline.sandbox import Sandbox

    sandbox = Sandbox(tmp / "ws.sqlite")
    try:
        for name in objects:
            sandbox.engine.create_field(
                {
                    "objectMetadataId": sandbox.engine.object(name).id,
                    "type": "TEXT",
                    "name": "hubspotId",
                    "label": "HubSpot id",
                    "isUnique": True,
                }
            )
    finally:
        sandbox.close()


def test_hubspot_ids_go_to_a_unique_text_field_when_the_workspace_has_one(hubspot: Path) -> None:
    add_id_field(hubspot, "person", "company")
    text, out = draft(hubspot, hubspot / "contacts.csv", "person")
    fields = yaml.safe_load(text)["fields"]
    assert fields["hubspotId"] == "Record ID"
    assert fields["company"] == {
        "column": "Associated Company IDs",
        "lookup": "hubspotId",
        "on_missing": "reject",
    }
    assert (
        '  # Company (relation to company), from "Associated Company IDs" '
        "(ids of company, looked up by its unique text field hubspotId; one id a row)"
    ) in text.splitlines()
    assert_every_column_appears(text, hubspot / "contacts.csv")
    checked = invoke(hubspot, "validate", str(out))
    assert checked.exit_code == 0, checked.output
    # 9001 to 9004 and "9005;9006", which no company has: rejected at import (on_missing)
    assert "lookups to resolve at import: 5 values for companyId" in checked.output

    text, out = draft(hubspot, hubspot / "deals.csv", "opportunity")
    fields = yaml.safe_load(text)["fields"]
    assert "hubspotId" not in fields  # opportunity has no such field: Record ID is explained
    assert fields["company"]["lookup"] == "hubspotId"
    assert fields["pointOfContact"] == {
        "column": "Associated Contact IDs",
        "lookup": "hubspotId",
        "on_missing": "reject",
    }
    assert reasons(text)["Record ID"].startswith("no field of opportunity holds it")
    checked = invoke(hubspot, "validate", str(out))
    assert checked.exit_code == 3, checked.output  # the unmapped HubSpot stages
