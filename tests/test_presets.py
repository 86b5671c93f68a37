"""init --from: another CRM's export folder recognised and written as a commented job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.errors import ConfigError
from pipeline.presets import PRESETS, write_job


def write(folder: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def hubspot_folder(folder: Path, owners: str = "alice@example.com") -> Path:
    write(
        folder,
        "hubspot-crm-exports-all-companies-2024-03-07.csv",
        "Record ID,Company name,Company Domain Name,Company owner,Create Date,Industry\n"
        f"101,Acme,acme.io,{owners},2024-03-07 14:05,Software\n",
    )
    write(
        folder,
        "hubspot-crm-exports-all-contacts-2024-03-07.csv",
        "\ufeffRecord ID,First Name,Last Name,Email,Phone Number,Country/Region,"
        "Associated Company IDs,Lifecycle Stage\n"
        "201,Zoë,Martin,zoe@acme.io,06 12 34 56 78,France,101,customer\n"
        "202,Bob,Stone,bob@globex.com,,United States,102;101,lead\n"
        "203,Ann,Lee,ann@acme.io,,,101,lead\n",
    )
    write(
        folder,
        "deals.csv",
        "Record ID,Deal Name,Deal Stage,Amount,Close Date,Deal owner,"
        "Associated Company IDs,Associated Contact IDs\n"
        f"301,Renewal,closedwon,12000,2024-06-30 00:00,{owners},101,201;203\n",
    )
    write(folder, "notes.txt", "not an export\n")
    return folder


def load(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_hubspot_files_are_recognised_by_their_headers(tmp_path: Path) -> None:
    folder = hubspot_folder(tmp_path / "export")
    result = write_job(PRESETS["hubspot"], folder, tmp_path / "job")
    assert [p.name for p in result.mappings] == [
        "companies.yaml",
        "people.yaml",
        "opportunities.yaml",
    ]
    assert [p.name for p in result.unrecognised] == ["notes.txt"]
    job = load(tmp_path / "job" / "job.yaml")
    assert job["name"] == "hubspot-migration"
    assert [s["mapping"] for s in job["steps"]] == [
        "companies.yaml",
        "people.yaml",
        "opportunities.yaml",
    ]
    people = load(tmp_path / "job" / "people.yaml")
    assert people["object"] == "person" and people["key"] == ["hubspotId"]
    assert people["source"]["path"] == "../export/hubspot-crm-exports-all-contacts-2024-03-07.csv"
    fields = people["fields"]
    assert fields["hubspotId"] == {
        "column": "Record ID",  # the BOM is not part of the name
        "create": {"type": "TEXT", "unique": True, "label": "HubSpot ID"},
    }
    assert fields["phones"] == {
        "column": "Phone Number",
        "country_column": "Country/Region",
        "default_country": "US",
    }
    assert fields["company"]["lookup"] == "hubspotId"
    assert fields["lifecycleStage"]["create"]["type"] == "SELECT"


def test_several_ids_in_one_cell_are_counted_not_silently_cut(tmp_path: Path) -> None:
    folder = hubspot_folder(tmp_path / "export")
    result = write_job(PRESETS["hubspot"], folder, tmp_path / "job")
    assert result.notices == [
        "hubspot-crm-exports-all-contacts-2024-03-07.csv: 1 row names several records in "
        "'Associated Company IDs'; company links only the first of each",
        "deals.csv: 1 row names several records in 'Associated Contact IDs'; pointOfContact "
        "links only the first of each",
    ]
    text = (tmp_path / "job" / "people.yaml").read_text(encoding="utf-8")
    assert "CHECK: 1 row names several; only the first is linked" in text


def test_owners_are_linked_only_when_the_column_holds_e_mails(tmp_path: Path) -> None:
    write_job(PRESETS["hubspot"], hubspot_folder(tmp_path / "a"), tmp_path / "ja")
    owner = load(tmp_path / "ja" / "opportunities.yaml")["fields"]["owner"]
    assert owner == {
        "column": "Deal owner",
        "transform": ["strip", "lower"],
        "lookup": "userEmail",
        "on_missing": "null",
    }
    write_job(PRESETS["hubspot"], hubspot_folder(tmp_path / "b", "Alice Ng"), tmp_path / "jb")
    deals = load(tmp_path / "jb" / "opportunities.yaml")["fields"]
    assert "owner" not in deals
    text = (tmp_path / "jb" / "opportunities.yaml").read_text(encoding="utf-8")
    assert '# owner: "Deal owner" holds names or ids, not e-mails' in text


def test_columns_no_rule_takes_are_listed_as_suggestions(tmp_path: Path) -> None:
    write_job(PRESETS["hubspot"], hubspot_folder(tmp_path / "export"), tmp_path / "job")
    text = (tmp_path / "job" / "companies.yaml").read_text(encoding="utf-8")
    assert '#   "Industry": suggestion: industry: {column: Industry, create: {type: TEXT}}' in text


def test_salesforce_owner_ids_become_e_mails_through_user_csv(tmp_path: Path) -> None:
    folder = tmp_path / "sf"
    write(
        folder,
        "Account.csv",
        "Id,Name,Website,BillingCity,BillingCountry,OwnerId,CreatedDate,IsDeleted\n"
        "0015g00000AbCdEAAV,Acme,acme.io,Paris,France,0055g000001AbcDAAS,"
        "2024-03-07T14:05:00.000Z,0\n",
    )
    write(folder, "User.csv", "Id,Email,FirstName\n0055g000001AbcDAAS,Alice@Example.com,Alice\n")
    write(
        folder,
        "Note.csv",
        "Id,ParentId,Title,Body,CreatedDate,IsDeleted\n"
        '0025g00000XyZaBAAV,0015g00000AbCdEAAV,Call,"Line 1\nLine 2",2024-03-08T10:00:00Z,0\n',
        encoding="cp1252",
    )
    result = write_job(PRESETS["salesforce"], folder, tmp_path / "job")
    assert [p.name for p in result.mappings] == ["companies.yaml", "notes.yaml"]
    assert result.unrecognised == []  # User.csv is read, not imported
    companies = load(tmp_path / "job" / "companies.yaml")
    assert companies["where"] == {"column": "IsDeleted", "not_in": ["1", "true", "TRUE", "True"]}
    assert companies["fields"]["accountOwner"] == {
        "column": "OwnerId",
        "values": {"0055g000001AbcDAAS": "alice@example.com"},
        "lookup": "userEmail",
        "on_missing": "null",
    }
    notes = load(tmp_path / "job" / "notes.yaml")["fields"]
    assert notes["targets.company"]["transform"] == [{"regex": ["^([^0]|0[^0]|00[^1]).*$", ""]}]
    assert notes["targets.person"]["lookup"] == "salesforceId"


def test_an_empty_or_foreign_folder_is_refused_in_one_line(tmp_path: Path) -> None:
    write(tmp_path / "x", "contacts.csv", "a,b\n1,2\n")
    with pytest.raises(ConfigError, match=r"no HubSpot export file recognised \(contacts.csv\)"):
        write_job(PRESETS["hubspot"], tmp_path / "x", tmp_path / "job")
    with pytest.raises(ConfigError, match="not a folder"):
        write_job(PRESETS["hubspot"], tmp_path / "missing", tmp_path / "job")


def test_cli_init_writes_the_job_and_refuses_to_overwrite(tmp_path: Path) -> None:
    folder = hubspot_folder(tmp_path / "export")
    out = tmp_path / "job"
    runner = CliRunner()
    done = runner.invoke(cli, ["init", "--from", "hubspot", str(folder), "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert f"wrote {out / 'job.yaml'}" in done.output
    assert "not a HubSpot export file, left out: notes.txt" in done.output
    again = runner.invoke(cli, ["init", "--from", "hubspot", str(folder), "-o", str(out)])
    assert again.exit_code == 2
    assert again.output.strip() == (
        f"Error: {out / 'companies.yaml'} exists; choose another -o folder, or pass --force"
    )
    forced = runner.invoke(
        cli, ["init", "--from", "hubspot", str(folder), "-o", str(out), "--force"]
    )
    assert forced.exit_code == 0


def test_pipedrive_relations_by_name_become_tables_of_ids(tmp_path: Path) -> None:
    folder = tmp_path / "pd"
    write(
        folder,
        "organizations.csv",
        "Organization - ID,Organization - Name,Organization - Owner\n"
        "1,Acme,Alice Ng\n2,Globex,Bob Ruiz\n3,Acme,Bob Ruiz\n",
    )
    write(
        folder,
        "people.csv",
        "Person - ID,Person - Name,Person - Organization,Person - Email - Work,"
        "Person - Email - Home\n11,Zoë Martin,Globex,,zoe@home.io\n12,Bob Stone,Acme,bob@acme.io,\n",
    )
    write(folder, "notes.csv", "Note - Content,Note - Person\nCalled,Zoë Martin\n")
    result = write_job(PRESETS["pipedrive"], folder, tmp_path / "job")
    assert result.notices == [
        "people.csv: organizations.csv has 1 name shared by several records; company links "
        "none of them (counted as links left empty)"
    ]
    people = load(tmp_path / "job" / "people.yaml")
    assert people["fields"]["company"] == {
        "column": "Person - Organization",
        "lookup": "pipedriveId",
        "on_missing": "null",
        "values": {"Globex": "2"},  # Acme names two organizations: no link rather than a guess
    }
    assert people["fields"]["name"] == {"column": "Person - Name"}
    assert people["fields"]["emails.primaryEmail"]["column"] == [
        "Person - Email - Work",
        "Person - Email - Home",
    ]
    notes = load(tmp_path / "job" / "notes.yaml")
    assert notes["key"] == ["bodyV2.markdown"]  # no Note - ID column: ids derived
    assert notes["fields"]["targets.person"]["values"] == {"Bob Stone": "12", "Zoë Martin": "11"}


def test_an_unreadable_file_is_left_out_and_nothing_is_half_written(tmp_path: Path) -> None:
    folder = hubspot_folder(tmp_path / "export")
    (folder / "broken.xlsx").write_bytes(b"not a workbook")
    out = tmp_path / "job"
    result = write_job(PRESETS["hubspot"], folder, out)
    assert "broken.xlsx" in [p.name for p in result.unrecognised]
    (out / "companies.yaml").unlink()  # one file gone, the others there: refused whole
    with pytest.raises(ConfigError, match=r"people\.yaml exists"):
        write_job(PRESETS["hubspot"], folder, out)
    assert not (out / "companies.yaml").exists()
