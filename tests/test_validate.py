"""``validate`` and ``init-mapping`` end to end on the samples, against the sandbox."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline.cli import cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of mappings/ and sample_data/ in a temporary folder."""
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    shutil.copytree(ROOT / "sample_data", tmp_path / "sample_data")
    return tmp_path


def invoke(project: Path, *args: str) -> Any:
    return CliRunner().invoke(
        cli, [*args, f"--sandbox={project / 'ws.sqlite'}", "--state-dir", str(project / "state")]
    )


# The deliberately bad rows of sample_data/, as the README lists them.
EXPECTED = {
    "companies": (
        11,
        7,
        {
            2: "duplicate key: row 12 has the same key and is kept (on_duplicate_key: last)",
            5: "Employees: 'N/A' is not a number",
            9: "Website: empty, and it is the key (domainName.primaryLinkUrl): without it the "
            "record could not be matched on re-runs",
            10: "Annual Revenue: '1.2M' is not an amount; ICP: 'maybe' is not a yes/no value",
        },
    ),
    "people": (
        12,
        8,
        {
            2: "duplicate key: row 14 has the same key and is kept (on_duplicate_key: last)",
            9: "E-mail: 'richard@piedpiper' is not a valid email address: The part after the "
            "@-sign is not valid. It should have a period.",
            10: "E-mail: required, but empty",
            12: "Phone: '12' is not a valid phone number for US (too short: US numbers have "
            "10 digits after the country code, this one has 2); set default_country or "
            "country_column, or write it with its +country code",
        },
    ),
    "opportunities": (
        7,
        5,
        {
            7: "Stage: 'Lost' is not an option of stage (NEW, SCREENING, MEETING, PROPOSAL, "
            "CUSTOMER); map it with values:",
            8: "Close Date: '31/02/2025' does not match date_format '%d/%m/%Y'",
        },
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_validate_samples_exact_counts_and_reasons(project: Path, name: str) -> None:
    rows, valid, rejected = EXPECTED[name]
    result = invoke(project, "validate", str(project / "mappings" / f"{name}.yaml"), "--json")
    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)  # stdout is the JSON; stderr has the one-line summary
    assert result.stderr == (
        f"validate: {len(rejected)} rows would be rejected; see {report['rejects_file']}\n"
    )
    assert (report["rows"], report["valid"], report["rejected"]) == (rows, valid, len(rejected))
    with open(report["rejects_file"], encoding="utf-8", newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert {int(r["_row"]): r["_reason"] for r in lines} == rejected
    assert all(r["_stage"] == "normalize" for r in lines)


def test_validate_text_summary(project: Path) -> None:
    result = invoke(project, "validate", str(project / "mappings" / "people.yaml"))
    assert result.exit_code == 3
    lines = result.output.splitlines()
    assert lines[0].endswith("people.csv: 12 rows read (utf-8-sig, semicolon-separated)")
    assert "  blank lines skipped: 1" in lines
    assert "key: emails.primaryEmail (upserts match on it)" in lines
    assert "lookups to resolve at import: 8 values for companyId" in lines
    assert "  row 10: E-mail: required, but empty" in lines


def test_validate_clean_file_exits_0_and_writes_no_rejects(project: Path) -> None:
    source = project / "clean.csv"
    source.write_text(
        "First Name;Last Name;E-mail;Phone;Job Title;City;Company Website;"
        "LinkedIn\nAda;L;ada@x.io;;CTO;London;x.io;\n",
        encoding="utf-8",
    )
    result = invoke(project, "validate", str(project / "mappings" / "people.yaml"), str(source))
    assert result.exit_code == 0, result.output
    assert not (project / "state" / "people" / "validate-rejects.csv").exists()


def test_validate_mapping_errors_exit_2_before_reading(project: Path) -> None:
    bad = project / "mappings" / "bad.yaml"
    bad.write_text(
        "object: person\nkey: [emails.primaryEmail]\nfields:\n"
        "  emails.primaryEmail: Email\n  jobTitel: Job Title\n"
    )
    result = invoke(project, "validate", str(bad), str(project / "sample_data" / "people.csv"))
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "Error: several problems, nothing was sent:",
        f"  - {bad}:4: field 'emails.primaryEmail': the source has no column 'Email' "
        "(did you mean 'E-mail'?)",
        f"  - {bad}:5: field 'jobTitel': no such field on person (did you mean jobTitle?)",
    ]


def test_validate_offline(project: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "validate",
            str(project / "mappings" / "opportunities.yaml"),
            "--offline",
            "--state-dir",
            str(project / "state"),
        ],
    )
    assert result.exit_code == 3
    assert "(offline: checked against Twenty's standard objects" in result.output


def test_validate_sees_custom_fields_of_the_workspace(project: Path) -> None:
    import asyncio

    from pipeline.sandbox import Sandbox

    sandbox = Sandbox(project / "ws.sqlite")
    obj = sandbox.engine.object("person")
    sandbox.engine.create_field(
        {
            "objectMetadataId": obj.id,
            "type": "TEXT",
            "name": "crmId",
            "label": "CRM id",
            "isUnique": True,
        }
    )
    sandbox.close()
    del asyncio
    mapping = project / "mappings" / "custom.yaml"
    mapping.write_text("object: person\nkey: [crmId]\nfields:\n  crmId: id\n  city: town\n")
    source = project / "custom.csv"
    source.write_text("id,town\nA1,Paris\nA2,Lyon\n")
    result = invoke(project, "validate", str(mapping), str(source))
    assert result.exit_code == 0, result.output
    assert "key: crmId (upserts match on it)" in result.output
    offline = CliRunner().invoke(cli, ["validate", str(mapping), str(source), "--offline"])
    assert offline.exit_code == 2
    assert "no such field on person" in offline.output


@pytest.mark.parametrize(
    ("source", "obj"),
    [("people.csv", "person"), ("companies.csv", "company"), ("opportunities.csv", "opportunity")],
)
def test_init_mapping_drafts_a_mapping_that_validates(project: Path, source: str, obj: str) -> None:
    out = project / "mappings" / f"draft-{obj}.yaml"
    result = invoke(
        project,
        "init-mapping",
        str(project / "sample_data" / source),
        "--object",
        obj,
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith(f"# Draft mapping of {source} into {obj}")
    checked = invoke(project, "validate", str(out))
    assert checked.exit_code in (0, 3), checked.output
    assert "rows read" in checked.output


def test_init_mapping_matches_columns(project: Path) -> None:
    result = invoke(
        project, "init-mapping", str(project / "sample_data" / "people.csv"), "--object", "person"
    )
    assert result.exit_code == 0
    text = result.output
    for line in (
        '  name.firstName: "First Name"',
        '  name.lastName: "Last Name"',
        '  emails.primaryEmail: "E-mail"',
        '  jobTitle: "Job Title"',
        '  linkedinLink.primaryLinkUrl: "LinkedIn"',
        "key: [emails.primaryEmail]",
    ):
        assert line in text
    assert (
        '  company: {column: "Company Website", lookup: domainName.primaryLinkUrl, '
        "on_missing: reject}"
    ) in text
    assert '  phones: {column: "Phone", default_country: US}  # set your country' in text


def test_init_mapping_refuses_to_overwrite(project: Path) -> None:
    out = project / "exists.yaml"
    out.write_text("keep me")
    result = invoke(
        project,
        "init-mapping",
        str(project / "sample_data" / "people.csv"),
        "--object",
        "person",
        "-o",
        str(out),
    )
    assert result.exit_code == 2
    assert "use --force to overwrite it" in result.output
    assert out.read_text() == "keep me"
