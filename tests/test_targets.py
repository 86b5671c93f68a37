"""Notes attached to people and companies from one row (`targets.*`), on the sandbox."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import MappingError
from pipeline.jobs import load_job, run_job, step_order
from pipeline.sandbox import Sandbox
from pipeline.schema import load_schema
from tests.test_deletions import client
from tests.test_import import project, sandbox
from tests.test_jobs import Wire
from tests.test_sync import rest

__all__ = ["project", "sandbox"]

NOTES = """version: 1
object: note
source: {path: notes.csv}
key: [title, bodyV2.markdown]
fields:
  title: Subject
  bodyV2.markdown: Note
  targets.person: {column: Contact Email, lookup: emails.primaryEmail, on_missing: reject}
  targets.company: {column: Company Domain, lookup: domainName.primaryLinkUrl, on_missing: reject}
"""


def crm_job(project: Path, notes: str) -> Path:
    """Companies, people, and notes that name both, as one job."""
    data = project / "crm"
    data.mkdir(exist_ok=True)
    (data / "companies.csv").write_text("name,site\nAcme,acme.com\nGlobex,globex.com\n")
    (data / "people.csv").write_text(
        "email,first,site\nann@acme.com,Ann,acme.com\nbob@globex.com,Bob,globex.com\n"
    )
    (data / "notes.csv").write_text(notes, encoding="utf-8")
    (data / "companies.yaml").write_text(
        "version: 1\nobject: company\nsource: {path: companies.csv}\n"
        "key: [domainName.primaryLinkUrl]\nfields:\n  name: name\n  domainName.primaryLinkUrl: site\n"
    )
    (data / "people.yaml").write_text(
        "version: 1\nobject: person\nsource: {path: people.csv}\nkey: [emails.primaryEmail]\n"
        "fields:\n  emails.primaryEmail: email\n  name.firstName: first\n"
        "  company: {column: site, lookup: domainName.primaryLinkUrl}\n"
    )
    (data / "notes.yaml").write_text(NOTES)
    job = data / "job.yaml"
    job.write_text(
        "version: 1\nname: crm\nsteps:\n  - notes.yaml\n  - people.yaml\n  - companies.yaml\n"
    )
    return job


async def everything(box: Sandbox, plural: str) -> list[dict[str, Any]]:
    async with rest(box) as http:
        return list(
            (await http.get(f"/rest/{plural}", params={"limit": 200})).json()["data"][plural]
        )


async def links(box: Sandbox) -> set[tuple[str, str | None, str | None]]:
    """(note title, person e-mail, company domain) of every live note target."""
    notes = {n["id"]: n["title"] for n in await everything(box, "notes")}
    people = {p["id"]: p["emails"]["primaryEmail"] for p in await everything(box, "people")}
    companies = {
        c["id"]: c["domainName"]["primaryLinkUrl"] for c in await everything(box, "companies")
    }
    return {
        (
            notes[t["noteId"]],
            people.get(t["targetPersonId"]),
            companies.get(t["targetCompanyId"]),
        )
        for t in await everything(box, "noteTargets")
    }


async def test_notes_and_their_targets_from_one_row(project: Path, sandbox: Sandbox) -> None:
    job = crm_job(
        project,
        "Subject,Note,Contact Email,Company Domain\n"
        'Renewal,"Ann renews.\nMSA due in January.",ann@acme.com,acme.com\n'
        "Réunion,Équipe « Données » validée,bob@globex.com,\n"
        "Office,Globex moves,,globex.com\n",
    )
    wire = Wire(sandbox)
    async with client(sandbox, wire) as c:
        report = await run_job(load_job(job), c, state_dir=project / "state")
    assert [s.step.name for s in report.steps] == ["companies", "people", "notes"]
    assert report.exit_code == 0, [s.reason for s in report.steps]
    assert wire.lookup_reads == 0  # people and companies came from the earlier steps
    notes = {n["title"]: n for n in await everything(sandbox, "notes")}
    assert notes["Renewal"]["bodyV2"]["markdown"] == "Ann renews.\nMSA due in January."
    assert notes["Réunion"]["bodyV2"]["markdown"] == "Équipe « Données » validée"
    assert await links(sandbox) == {
        ("Renewal", "ann@acme.com", None),
        ("Renewal", None, "https://acme.com"),
        ("Réunion", "bob@globex.com", None),
        ("Office", None, "https://globex.com"),
    }
    notes_step = report.steps[2].report
    assert notes_step is not None and notes_step.created == 3
    assert notes_step.targets_linked == 4

    # again: nothing doubles (note and target ids are derived from the row)
    async with client(sandbox, Wire(sandbox)) as c:
        await run_job(load_job(job), c, state_dir=project / "state", restart=True)
    assert len(await everything(sandbox, "notes")) == 3
    assert len(await everything(sandbox, "noteTargets")) == 4


async def test_a_row_that_moves_to_another_person_leaves_no_link_behind(
    project: Path, sandbox: Sandbox
) -> None:
    header = "Subject,Note,Contact Email,Company Domain\n"
    job = crm_job(project, header + "Call,Left a message,ann@acme.com,\n")
    async with client(sandbox, Wire(sandbox)) as c:
        await run_job(load_job(job), c, state_dir=project / "state")
        # a link made by hand in Twenty is never taken back
        people = {p["emails"]["primaryEmail"]: p["id"] for p in await everything(sandbox, "people")}
        note = (await everything(sandbox, "notes"))[0]["id"]
        async with rest(sandbox) as http:
            made = await http.post(
                "/rest/noteTargets",
                json={"noteId": note, "targetPersonId": people["bob@globex.com"]},
            )
            assert made.status_code in (200, 201), made.text
        crm_job(project, header + "Call,Left a message,,globex.com\n")
        report = await run_job(load_job(job), c, state_dir=project / "state")
    assert report.exit_code == 0
    assert await links(sandbox) == {
        ("Call", None, "https://globex.com"),
        ("Call", "bob@globex.com", None),
    }


async def test_an_unknown_target_is_refused_with_the_choices(
    project: Path, sandbox: Sandbox
) -> None:
    job = crm_job(project, "Subject,Note,Contact Email,Company Domain\n")
    (job.parent / "notes.yaml").write_text(
        NOTES + "  targets.invoice: {column: Note, lookup: id}\n"
    )
    async with client(sandbox, Wire(sandbox)) as c:
        schema = await load_schema(c)
    with pytest.raises(MappingError) as refused:
        step_order(load_job(job), schema)
    assert any(
        "no such target; note accepts targets.company, targets.opportunity, targets.person" in p
        for p in refused.value.problems
    )


async def test_a_note_without_a_body_is_skipped_not_rejected(
    project: Path, sandbox: Sandbox
) -> None:
    job = crm_job(
        project,
        "Subject,Note,Contact Email,Company Domain\n"
        "Call,Left a message,ann@acme.com,\n"
        "Call,,ann@acme.com,\n"  # logged without text: same title, no body
        'Meeting,"  ",bob@globex.com,globex.com\n'  # blanks only
        "Lunch,Pasta,nobody@nowhere.com,\n",  # a real reject beside them
    )
    async with client(sandbox, Wire(sandbox)) as c:
        report = await run_job(load_job(job), c, state_dir=project / "state")
    step = report.steps[2].report
    assert step is not None
    assert (step.rows_read, step.created, step.skipped, step.rejected) == (4, 1, 2, 1)
    assert step.exit_code == 3  # the reject, not the skips
    assert [n["title"] for n in await everything(sandbox, "notes")] == ["Call"]
    assert await links(sandbox) == {("Call", "ann@acme.com", None)}
    success = (Path(step.state_dir) / "success.csv").read_text(encoding="utf-8").splitlines()
    assert success[2:] == [
        '3,,,skipped,"skipped: Note is empty, and a note without a body is not created"',
        '4,,,skipped,"skipped: Note is empty, and a note without a body is not created"',
    ]
    rejects = (Path(step.state_dir) / "rejects.csv").read_text(encoding="utf-8")
    assert rejects.count("\n") == 2 and "nobody@nowhere.com" in rejects
    saved = json.loads((Path(step.state_dir) / "report.json").read_text())
    assert saved["rows"]["skipped"] == 2


async def test_a_task_is_skipped_only_without_title_and_body(
    project: Path, sandbox: Sandbox
) -> None:
    data = project / "tasks"
    data.mkdir()
    (data / "tasks.csv").write_text("Subject,Body\nCall Ada,\nSend,The contract\n,\n")
    (data / "tasks.yaml").write_text(
        "version: 1\nobject: task\nsource: {path: tasks.csv}\nkey: [title]\n"
        "fields:\n  title: Subject\n  bodyV2.markdown: Body\n"
    )
    (data / "job.yaml").write_text("version: 1\nname: todo\nsteps:\n  - tasks.yaml\n")
    async with client(sandbox, Wire(sandbox)) as c:
        report = await run_job(load_job(data / "job.yaml"), c, state_dir=project / "state")
    step = report.steps[0].report
    assert step is not None
    assert (step.created, step.skipped, step.rejected) == (2, 1, 0)
    tasks = {t["title"]: t["bodyV2"]["markdown"] for t in await everything(sandbox, "tasks")}
    assert tasks == {"Call Ada": "", "Send": "The contract"}
