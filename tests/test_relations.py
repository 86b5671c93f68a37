"""Relations on real-shaped files: links left empty are counted, split is refused,
relation paths work as keys (note targets)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.sandbox import Sandbox
from tests.test_import import ledger, people, project, run_import, sandbox

__all__ = ["project", "sandbox"]  # fixtures shared with test_import


async def test_on_missing_null_counts_and_explains_every_empty_link(
    project: Path, sandbox: Sandbox
) -> None:
    await run_import(project, sandbox, "companies")
    mapping = project / "mappings" / "people.yaml"
    mapping.write_text(
        mapping.read_text().replace("on_missing: reject", 'on_missing: "null"'), encoding="utf-8"
    )
    report = await run_import(project, sandbox, "people")
    # Marie's company (societe-demo.fr) was rejected, Lucius's is not in the workspace
    assert (report.loaded, report.rejected, report.links_left_empty) == (8, 4, 2)
    notes = {r["key"]: r["note"] for r in ledger(project, "people", "success") if r["note"]}
    assert notes == {
        "marie.curie@societe-demo.fr": "link left empty: Company Website: no company has "
        "domainName.primaryLinkUrl = https://societe-demo.fr (on_missing: null); company row 5 "
        "of companies.csv was rejected (Employees: 'N/A' is not a number)",
        "lucius@wayne.com": "link left empty: Company Website: no company has "
        "domainName.primaryLinkUrl = https://unknown-company.com (on_missing: null)",
    }
    stored = people(sandbox)
    assert stored["lucius@wayne.com"]["companyId"] is None
    assert stored["ada@acme.com"]["companyId"] is not None
    report_json = (project / "state" / "people" / "report.json").read_text()
    assert '"links_left_empty": 2' in report_json


def test_split_on_a_many_to_one_lookup_is_refused_before_any_call(project: Path) -> None:
    mapping = project / "mappings" / "deals.yaml"
    mapping.write_text(
        "version: 1\nobject: opportunity\nkey: [name]\nfields:\n  name: Deal Name\n"
        '  pointOfContact: {column: Contact IDs, lookup: emails.primaryEmail, split: ";"}\n',
        encoding="utf-8",
    )
    source = project / "deals.csv"
    source.write_text("Deal Name,Contact IDs\nBig deal,a@x.io;b@x.io\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["validate", str(mapping), str(source), f"--sandbox={project / 'ws.sqlite'}"]
    )
    assert result.exit_code == 2, result.output
    assert "split does not apply to a relation: pointOfContact links one person" in result.output


async def test_relation_paths_as_key_give_one_note_target_per_pair(
    project: Path, sandbox: Sandbox
) -> None:
    await run_import(project, sandbox, "companies")
    await run_import(project, sandbox, "people")
    engine = sandbox.engine
    (note,) = engine.create_many(
        engine.object("note"), [{"title": "Call"}], upsert=False, actor={"name": "test"}
    )
    mapping = project / "mappings" / "targets.yaml"
    mapping.write_text(
        "version: 1\nobject: noteTarget\nkey: [note, targetPerson]\nfields:\n"
        "  note: {column: note_id, lookup: id}\n"
        "  targetPerson: {column: email, lookup: emails.primaryEmail}\n",
        encoding="utf-8",
    )
    source = project / "targets.csv"
    source.write_text(
        f"note_id,email\n{note['id']},ADA@acme.com\n{note['id']},grace.hopper@globex.com\n",
        encoding="utf-8",
    )
    first = await run_import(project, sandbox, "targets", source=source)
    second = await run_import(project, sandbox, "targets", source=source, restart=True)
    assert (first.created, second.updated, second.created) == (2, 2, 0)
    targets = engine.find_many(engine.object("noteTarget"), limit=50).records
    assert len(targets) == 2
    stored = people(sandbox)
    assert {t["targetPersonId"] for t in targets} == {
        stored["ada@acme.com"]["id"],
        stored["grace.hopper@globex.com"]["id"],
    }
    assert {t["noteId"] for t in targets} == {note["id"]}


async def test_rows_sharing_another_unique_field_are_duplicates_too(
    project: Path, sandbox: Sandbox
) -> None:
    person = sandbox.engine.object("person")
    sandbox.engine.create_field(
        {"objectMetadataId": person.id, "name": "hubspotId", "label": "HubSpot id", "type": "TEXT"}
    )
    mapping = project / "mappings" / "contacts.yaml"
    mapping.write_text(
        "version: 1\nobject: person\nkey: [hubspotId]\non_duplicate_key: last\nfields:\n"
        "  hubspotId: Record ID\n  emails.primaryEmail: Email\n  name.firstName: First Name\n",
        encoding="utf-8",
    )
    source = project / "contacts.csv"
    source.write_text(
        "Record ID,Email,First Name\n"
        "101,zoe@nordlys.dk,Zoë\n"
        "102,jose@solaris.es,José\n"
        "103,ZOE@nordlys.dk,Zoe\n"
        "104,,Nobody\n",
        encoding="utf-8",
    )
    report = await run_import(project, sandbox, "contacts", source=source)
    assert (report.rows_read, report.created, report.rejected) == (4, 3, 1)
    (reject,) = ledger(project, "contacts", "rejects")
    assert reject["_row"] == "2"
    assert reject["_reason"] == (
        "emails.primaryEmail zoe@nordlys.dk is on 2 rows (first row 2, last row 4): it is a "
        "unique field of person, so Twenty would merge them into one record; row 4 is kept "
        "(on_duplicate_key: last)"
    )
    stored = {p["hubspotId"]: p for p in people(sandbox).values()}
    assert sorted(stored) == ["102", "103", "104"]
    assert stored["103"]["name"]["firstName"] == "Zoe"


async def test_owners_are_matched_to_workspace_members_by_e_mail(
    project: Path, sandbox: Sandbox
) -> None:
    """Twenty does not declare userEmail unique, but a member is one user and a user's
    e-mail is unique: an owner column of e-mails links the member; an unknown one is a
    link left empty with its reason (on_missing: null), never a silent drop."""
    engine = sandbox.engine
    actor = {"source": "API", "name": "seed", "workspaceMemberId": None, "context": {}}
    [alice, bob] = engine.create_many(
        engine.object("workspaceMember"),
        [
            {"name": {"firstName": "Alice", "lastName": "Ng"}, "userEmail": "alice@example.com"},
            {"name": {"firstName": "Bob", "lastName": "Ruiz"}, "userEmail": "bob@example.com"},
        ],
        upsert=False,
        actor=actor,
    )
    source = project / "owned.csv"
    source.write_text(
        "name,domain,owner\nAcme,acme.io,alice@example.com\nGlobex,globex.io,Bob@Example.com\n"
        "Initech,initech.io,carol@example.com\nHooli,hooli.io,\n",
        encoding="utf-8",
    )
    (project / "mappings" / "owned.yaml").write_text(
        "version: 1\nobject: company\nkey: [domainName.primaryLinkUrl]\nfields:\n"
        "  name: name\n  domainName.primaryLinkUrl: domain\n"
        "  accountOwner: {column: owner, transform: [strip, lower], lookup: userEmail,"
        ' on_missing: "null"}\n',
        encoding="utf-8",
    )
    report = await run_import(project, sandbox, "owned", source=source)
    assert (report.loaded, report.rejected, report.links_left_empty) == (4, 0, 1)
    companies = {
        c["name"]: c["accountOwnerId"]
        for c in engine.find_many(engine.object("company"), limit=10).records
    }
    assert companies == {
        "Acme": alice["id"],
        "Globex": bob["id"],
        "Initech": None,
        "Hooli": None,
    }
    notes = {r["key"]: r["note"] for r in ledger(project, "owned", "success") if r["note"]}
    assert notes == {
        "https://initech.io": "link left empty: owner: no workspaceMember has userEmail = "
        "carol@example.com (on_missing: null)"
    }


async def test_a_values_table_turns_a_cell_into_the_value_looked_up(
    project: Path, sandbox: Sandbox
) -> None:
    """Salesforce writes owners as user ids: a table from User.csv turns them into the
    e-mails members are matched by; an id not in the table is a link left empty."""
    engine = sandbox.engine
    actor = {"source": "API", "name": "seed", "workspaceMemberId": None, "context": {}}
    [alice] = engine.create_many(
        engine.object("workspaceMember"),
        [{"name": {"firstName": "Alice", "lastName": "Ng"}, "userEmail": "alice@example.com"}],
        upsert=False,
        actor=actor,
    )
    source = project / "accounts.csv"
    source.write_text(
        "Name,Website,OwnerId\nAcme,acme.io,0055g000001AbcDAAS\nGlobex,globex.io,0055g00000ZZZZZAAA\n",
        encoding="utf-8",
    )
    (project / "mappings" / "accounts.yaml").write_text(
        "version: 1\nobject: company\nkey: [domainName.primaryLinkUrl]\nfields:\n"
        "  name: Name\n  domainName.primaryLinkUrl: Website\n"
        "  accountOwner: {column: OwnerId, values: {0055g000001AbcDAAS: alice@example.com},"
        ' lookup: userEmail, on_missing: "null"}\n',
        encoding="utf-8",
    )
    report = await run_import(project, sandbox, "accounts", source=source)
    assert (report.loaded, report.links_left_empty) == (2, 1)
    owners = {
        c["name"]: c["accountOwnerId"]
        for c in engine.find_many(engine.object("company"), limit=10).records
    }
    assert owners == {"Acme": alice["id"], "Globex": None}
