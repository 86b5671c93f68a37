"""Undo: a run taken back out of the workspace, field by field, guarded and resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.config import Rate, Secret
from pipeline.errors import FatalApiError
from pipeline.mapping import load_mapping
from pipeline.runner import import_file
from pipeline.sandbox import Sandbox
from pipeline.schema import load_schema
from pipeline.state import StateStore
from pipeline.twenty import ObjectNames, TwentyClient
from pipeline.undo import carry_out, choose_run, plan_undo
from tests.test_import import client_for, project, sandbox
from tests.test_sync import CountingTransport, rest, stored_people_all

__all__ = ["project", "sandbox"]

VOLATILE = {"updatedAt", "deletedAt", "position"}


def mapping(project: Path) -> Path:
    path = project / "mappings" / "crowd.yaml"
    path.write_text(
        "version: 1\nobject: person\nkey: [emails.primaryEmail]\nfields:\n"
        "  emails.primaryEmail: email\n  name.firstName: first\n  name.lastName: last\n"
        "  jobTitle: title\n  city: city\n",
        encoding="utf-8",
    )
    return path


def crowd(project: Path, name: str, rows: list[tuple[int, str, str]]) -> Path:
    """People p<i>@x.io with a first name and a job title."""
    source = project / name
    lines = ["email,first,last,title,city"]
    lines += [f"p{i}@x.io,{first},Zoë-{i},{title},Lyon" for i, first, title in rows]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return source


async def load(project: Path, box: Sandbox, source: Path, **kw: Any) -> Any:
    async with client_for(box) as client:
        return await import_file(
            load_mapping(mapping(project)),
            client,
            state_dir=project / "state",
            source=source,
            **kw,
        )


def snapshot(people: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every person as stored, minus the stamps an undo cannot keep; deleted or not."""
    return {
        email: {
            **{k: v for k, v in p.items() if k not in VOLATILE},
            "deleted": p.get("deletedAt") is not None,
        }
        for email, p in people.items()
    }


async def soft_delete(box: Sandbox, emails: list[str]) -> None:
    async with rest(box) as http:
        quoted = ",".join(f'"{e}"' for e in emails)
        answer = await http.delete(
            "/rest/people",
            params={"filter": f"emails.primaryEmail[in]:[{quoted}]", "soft_delete": "true"},
        )
        assert answer.status_code == 200, answer.text


async def seeded(project: Path, box: Sandbox) -> dict[str, dict[str, Any]]:
    """200 people, 50 of them soft-deleted since: the workspace before the import."""
    await load(
        project, box, crowd(project, "before.csv", [(i, f"P{i}", "Old") for i in range(200)])
    )
    await soft_delete(box, [f"p{i}@x.io" for i in range(150, 200)])
    return snapshot(await stored_people_all(box))


def the_import(project: Path) -> Path:
    """150 updates (0-149), 50 restores (150-199), 300 creates (200-499)."""
    rows = [(i, f"New{i}", "CEO") for i in range(500)]
    return crowd(project, "import.csv", rows)


async def undo(project: Path, box: Sandbox, *, force: bool = False, client: Any = None) -> Any:
    own = client or client_for(box)
    async with own:
        schema = await load_schema(own)
        folder = project / "state" / "crowd"
        with StateStore(folder / "state.sqlite") as store:
            report = await plan_undo(
                store, own, schema, choose_run(store, None), name="crowd", force=force
            )
            await carry_out(store, own, schema, report, batch_size=60)
            return report


async def test_undoable_import_of_500_people_is_taken_back_field_by_field(
    project: Path, sandbox: Sandbox
) -> None:
    before = await seeded(project, sandbox)
    report = await load(project, sandbox, the_import(project), undoable=True)
    assert (report.created, report.updated, report.restored) == (300, 150, 50)
    # a read per batch (9 of 60), and one more in the two batches holding deleted ones
    assert report.undo_reads == 9 + 2
    after = await stored_people_all(sandbox)
    assert after["p7@x.io"]["name"]["firstName"] == "New7"

    done = await undo(project, sandbox)
    counts = done.counts()
    assert counts[("person", "delete", "done")] == 300
    assert counts[("person", "delete_again", "done")] == 50
    assert counts[("person", "restore_values", "done")] == 150
    assert done.left_alone == 0 and done.not_undoable == 0
    now = snapshot(await stored_people_all(sandbox))
    for email, was in before.items():
        assert now[email] == was, email
    for i in range(200, 500):
        assert now[f"p{i}@x.io"]["deleted"], i  # the creates are soft-deleted
    assert now["p3@x.io"]["name"] == {"firstName": "P3", "lastName": "Zoë-3"}
    assert now["p3@x.io"]["jobTitle"] == "Old"

    # a second undo does nothing, and costs no write
    transport = CountingTransport(sandbox)
    counting = TwentyClient(
        base_url="http://sandbox",
        api_key=Secret(sandbox.api_key),
        rate=Rate(10_000, 1),
        transport=transport,
    )
    again = await undo(project, sandbox, client=counting)
    assert again.already_undone and transport.calls["write"] == 0


async def test_without_undoable_creates_go_and_updates_are_listed(
    project: Path, sandbox: Sandbox
) -> None:
    await seeded(project, sandbox)
    await load(project, sandbox, the_import(project))
    done = await undo(project, sandbox)
    counts = done.counts()
    assert counts[("person", "delete", "done")] == 300
    assert counts[("person", "delete_again", "done")] == 50
    assert counts[("person", "not_undoable", "kept")] == 150
    now = await stored_people_all(sandbox)
    assert now["p3@x.io"]["name"]["firstName"] == "New3"  # not undoable: left as it is
    assert now["p300@x.io"]["deletedAt"] is not None


async def test_a_record_changed_since_the_run_is_left_alone_unless_forced(
    project: Path, sandbox: Sandbox
) -> None:
    await seeded(project, sandbox)
    await load(project, sandbox, the_import(project), undoable=True)
    people = await stored_people_all(sandbox)
    async with rest(sandbox) as http:
        for email in ("p5@x.io", "p400@x.io"):
            answer = await http.patch(
                f"/rest/people/{people[email]['id']}", json={"jobTitle": "Edited by hand"}
            )
            assert answer.status_code == 200, answer.text

    done = await undo(project, sandbox)
    changed = {a.record_id: a.detail for a in done.actions if a.status == "changed"}
    assert set(changed) == {people["p5@x.io"]["id"], people["p400@x.io"]["id"]}
    assert str(changed[people["p5@x.io"]["id"]]).endswith(
        ": jobTitle 'CEO' -> 'Edited by hand'"  # what changed, against what the run sent
    )
    now = await stored_people_all(sandbox)
    assert now["p5@x.io"]["jobTitle"] == "Edited by hand"
    assert now["p400@x.io"]["deletedAt"] is None
    assert now["p6@x.io"]["jobTitle"] == "Old"

    forced = await undo(project, sandbox, force=True)
    assert forced.left_alone == 0
    now = await stored_people_all(sandbox)
    assert now["p5@x.io"]["jobTitle"] == "Old"
    assert now["p400@x.io"]["deletedAt"] is not None


class Killed(BaseException):
    """The process dies: after the server acted, before the answer is read."""


class DieAfter(httpx.AsyncBaseTransport):
    """The sandbox; the ``writes``-th write call reaches it, then the client dies."""

    def __init__(self, box: Sandbox, writes: int) -> None:
        self.inner = httpx.ASGITransport(app=box.app)
        self.left = writes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        answer = await self.inner.handle_async_request(request)
        if request.url.path == "/graphql" and b"mutation" in request.content:
            self.left -= 1
            if self.left == 0:
                raise Killed
        return answer


@pytest.mark.parametrize("writes", [1, 3, 6])
async def test_an_undo_killed_midway_finishes_on_the_next_one(
    project: Path, sandbox: Sandbox, writes: int
) -> None:
    before = await seeded(project, sandbox)
    await load(project, sandbox, the_import(project), undoable=True)
    dying = TwentyClient(
        base_url="http://sandbox",
        api_key=Secret(sandbox.api_key),
        rate=Rate(10_000, 1),
        transport=DieAfter(sandbox, writes),
    )
    with pytest.raises(Killed):
        await undo(project, sandbox, client=dying)
    done = await undo(project, sandbox)
    assert done.left_alone == 0
    now = snapshot(await stored_people_all(sandbox))
    for email, was in before.items():
        assert now[email] == was, email
    assert sum(1 for i in range(200, 500) if now[f"p{i}@x.io"]["deleted"]) == 300
    statuses = {a.status for a in done.actions}
    assert statuses <= {"done", "gone"}


async def test_an_incremental_sync_after_an_undo_sends_the_rows_again(
    project: Path, sandbox: Sandbox
) -> None:
    source = crowd(project, "mon.csv", [(i, f"P{i}", "Old") for i in range(120)])
    await load(project, sandbox, source, incremental=True)
    await undo(project, sandbox)
    again = await load(project, sandbox, source, incremental=True)
    assert (again.unchanged, again.loaded) == (0, 120)
    assert all(p["deletedAt"] is None for p in (await stored_people_all(sandbox)).values())


def test_cli_undo_of_the_demo_job_removes_notes_and_their_targets(project: Path) -> None:
    runner = CliRunner()
    env = {"TWENTY_SANDBOX": str(project / "ws.sqlite"), "TWENTY_STATE_DIR": str(project / "st")}
    job = str(project / "mappings" / "demo-job.yaml")
    assert runner.invoke(cli, ["run", job, "--undoable"], env=env).exit_code == 3
    plan = runner.invoke(cli, ["undo", job, "--dry-run"], env=env)
    assert plan.exit_code == 0, plan.output
    assert "noteTarget" in plan.output and "nothing was sent" in plan.output
    done = runner.invoke(cli, ["undo", job], env=env)
    assert done.exit_code == 0, done.output
    box = Sandbox(project / "ws.sqlite")
    try:
        for name in ("note", "noteTarget", "person", "company", "opportunity"):
            live = box.engine.find_many(box.engine.object(name), limit=200).records
            assert live == [], name
    finally:
        box.close()
    again = runner.invoke(cli, ["undo", job], env=env)
    assert again.exit_code == 0 and again.output.count("undone already") == 4
    status = runner.invoke(cli, ["status", "--state-dir", str(project / "st" / "demo")])
    assert status.output.count(": undone (`undo`) - ") == 4, status.output
    ledger = (project / "st" / "demo" / "notes" / "undo.csv").read_text(encoding="utf-8")
    assert ledger.splitlines()[0] == "object,id,action,outcome,detail"


async def test_an_undoable_run_resumes_only_undoable(project: Path, sandbox: Sandbox) -> None:
    """Before-images for some batches only would make a half-undoable run: refused."""
    from pipeline.errors import InputError
    from tests.test_state import failing_client

    await seeded(project, sandbox)
    source = the_import(project)
    with pytest.raises(FatalApiError):
        async with failing_client(sandbox, 2) as client:
            await import_file(
                load_mapping(mapping(project)),
                client,
                state_dir=project / "state",
                source=source,
                undoable=True,
            )
    with pytest.raises(InputError, match="undoable True -> off"):
        await load(project, sandbox, source)
    done = await load(project, sandbox, source, undoable=True)
    assert (done.created, done.updated, done.restored) == (300, 150, 50)
    assert (await undo(project, sandbox)).counts()[("person", "restore_values", "done")] == 150


async def test_undoing_the_last_run_then_the_one_before_is_not_stopped_by_the_guard(
    project: Path, sandbox: Sandbox
) -> None:
    """Run 1 creates 200 people, run 2 (undoable) updates 150 of them; undo run 2, then
    run 1: the values run 2's undo put back are run 1's, so nothing is "changed since"."""
    await load(
        project, sandbox, crowd(project, "one.csv", [(i, f"P{i}", "Old") for i in range(200)])
    )
    await load(
        project,
        sandbox,
        crowd(project, "two.csv", [(i, f"New{i}", "CEO") for i in range(150)]),
        undoable=True,
    )
    second = await undo(project, sandbox)
    assert second.run == 2 and second.left_alone == 0
    async with client_for(sandbox) as client:
        schema = await load_schema(client)
        with StateStore(project / "state" / "crowd" / "state.sqlite") as store:
            first = await plan_undo(
                store, client, schema, choose_run(store, 1), name="crowd", force=False
            )
            assert first.left_alone == 0
            await carry_out(store, client, schema, first, batch_size=60)
    assert first.counts() == {("person", "delete", "done"): 200}
    assert all(p["deletedAt"] is not None for p in (await stored_people_all(sandbox)).values())


async def test_a_run_recorded_before_undo_existed_is_still_undone(
    project: Path, sandbox: Sandbox
) -> None:
    """A store without the undo tables (an earlier release): creates are removed, the
    guard compares with the run's end, and the plan says so."""
    import sqlite3

    await load(
        project, sandbox, crowd(project, "one.csv", [(i, f"P{i}", "Old") for i in range(70)])
    )
    db = sqlite3.connect(project / "state" / "crowd" / "state.sqlite")
    for table in ("undo_before", "undo_writes", "undo_actions"):
        db.execute(f"DROP TABLE {table}")
    db.commit()
    db.close()
    done = await undo(project, sandbox)
    assert done.clock_guard
    assert done.counts() == {("person", "delete", "done"): 70}


async def test_companies_a_lookup_made_live_again_are_undone_too(
    project: Path, sandbox: Sandbox
) -> None:
    """on_missing: create, undone, imported again (the upsert restores the companies
    rather than creating them), undone again: no company is left live."""
    path = project / "mappings" / "crowd.yaml"
    path.write_text(
        "version: 1\nobject: person\nkey: [emails.primaryEmail]\nfields:\n"
        "  emails.primaryEmail: email\n"
        "  company: {column: web, lookup: domainName.primaryLinkUrl, on_missing: create}\n",
        encoding="utf-8",
    )
    source = project / "crowd.csv"
    source.write_text("email,web\na@x.io,newco-one.com\nb@x.io,newco-two.com\n", encoding="utf-8")

    async def live_companies() -> int:
        async with client_for(sandbox) as client:
            page = await client.find_many(ObjectNames("company", "companies"), limit=50)
            return len(page.records)

    for _ in range(2):
        async with client_for(sandbox) as client:
            await import_file(
                load_mapping(path), client, state_dir=project / "state", source=source, restart=True
            )
        assert await live_companies() == 2
        done = await undo(project, sandbox)
        assert done.counts()[("company", "delete", "done")] == 2
        assert await live_companies() == 0


async def test_a_record_that_existed_before_the_run_is_never_deleted(
    project: Path, sandbox: Sandbox
) -> None:
    """An update that changes nothing can answer createdAt == updatedAt, as a create does:
    a record the run counted as created but created long before it began is kept."""
    import sqlite3

    await load(project, sandbox, crowd(project, "one.csv", [(1, "P1", "Old")]))
    await load(project, sandbox, crowd(project, "two.csv", [(1, "P1", "Old"), (2, "P2", "New")]))
    people = await stored_people_all(sandbox)
    old_id = people["p1@x.io"]["id"]
    db = sqlite3.connect(project / "state" / "crowd" / "state.sqlite")
    db.execute("UPDATE rows SET outcome = 'created' WHERE run = 2 AND record_id = ?", (old_id,))
    db.commit()
    db.close()
    box = sqlite3.connect(sandbox.engine.database.path)
    box.execute(
        "UPDATE records SET data = json_set(data, '$.createdAt', '2020-01-01T00:00:00.000Z') "
        "WHERE id = ?",
        (old_id,),
    )
    box.commit()
    box.close()
    done = await undo(project, sandbox)
    kept = [a for a in done.actions if a.record_id == old_id]
    assert [(a.action, a.status) for a in kept] == [("delete", "kept")]
    assert "before the run began: it existed already" in (kept[0].detail or "")
    people = await stored_people_all(sandbox)
    assert people["p1@x.io"]["deletedAt"] is None
    assert people["p2@x.io"]["deletedAt"] is not None


def test_a_job_undo_stops_where_the_guard_kept_records(project: Path) -> None:
    """People the guard keeps may link to the companies of the step before: that step is
    not undone, and the output says why."""
    runner = CliRunner()
    env = {"TWENTY_SANDBOX": str(project / "ws.sqlite"), "TWENTY_STATE_DIR": str(project / "st")}
    job = str(project / "mappings" / "demo-job.yaml")
    assert runner.invoke(cli, ["run", job, "--undoable"], env=env).exit_code == 3
    later = runner.invoke(cli, ["import", str(project / "mappings" / "people.yaml")], env=env)
    assert later.exit_code == 3, later.output  # updates the job's people: changed since
    done = runner.invoke(cli, ["undo", job], env=env)
    assert done.exit_code == 3, done.output
    assert "not undone: companies. people kept 6 records changed since the run" in done.output
    box = Sandbox(project / "ws.sqlite")
    try:
        live = box.engine.find_many(box.engine.object("company"), limit=50).records
        assert len(live) == 7
    finally:
        box.close()
    status = runner.invoke(cli, ["status", "--state-dir", str(project / "st" / "demo")])
    assert "people: partly undone" in status.output
    forced = runner.invoke(cli, ["undo", job, "--force"], env=env)
    assert forced.exit_code == 0, forced.output
    box = Sandbox(project / "ws.sqlite")
    try:
        assert box.engine.find_many(box.engine.object("company"), limit=50).records == []
        assert box.engine.find_many(box.engine.object("person"), limit=50).records == []
    finally:
        box.close()
