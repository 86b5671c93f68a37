"""Delete propagation (`delete_missing: soft`) on the in-process sandbox.

A job syncs people; keys that leave the source are soft-deleted in batched calls,
guarded against a cut-off export, listed by a dry run, and ledgered.
"""

from __future__ import annotations

import asyncio
import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.config import Rate, Secret
from pipeline.deletions import DeletionGuard
from pipeline.errors import FatalApiError
from pipeline.jobs import JobReport, load_job, run_job
from pipeline.sandbox import Sandbox
from pipeline.twenty import TwentyClient
from pipeline.twenty.names import ObjectNames
from tests.test_import import project, sandbox
from tests.test_sync import stored_people_all

__all__ = ["project", "sandbox"]

PEOPLE = ObjectNames("person", "people")


class Deletes(httpx.AsyncBaseTransport):
    """The sandbox, counting delete calls; optionally losing the answer of the first one."""

    def __init__(self, box: Sandbox, *, lose_first_answer: bool = False) -> None:
        self.inner = httpx.ASGITransport(app=box.app)
        self.calls: Counter[str] = Counter()
        self.lose = lose_first_answer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = request.content
        deleting = request.method == "DELETE" or (
            request.url.path == "/graphql" and b"mutation Delete" in body
        )
        if deleting:
            self.calls["delete"] += 1
        elif request.url.path == "/graphql" and b"mutation" in body:
            self.calls["write"] += 1
        answer = await self.inner.handle_async_request(request)
        if deleting and self.lose:
            self.lose = False
            await answer.aread()
            raise httpx.ReadError("connection lost after the server deleted", request=request)
        return answer


def people_job(project: Path, emails: list[str], *, extra: str = "") -> Path:
    """A one-step job syncing people by e-mail, with delete_missing: soft."""
    data = project / "del"
    data.mkdir(exist_ok=True)
    rows = "".join(f"{e},{e.split('@')[0].title()}\n" for e in emails)
    (data / "people.csv").write_text("email,first\n" + rows + extra, encoding="utf-8")
    (data / "people.yaml").write_text(
        "version: 1\nobject: person\nsource: {path: people.csv}\nkey: [emails.primaryEmail]\n"
        "fields:\n  emails.primaryEmail: email\n"
        "  name.firstName: {column: first, required: true}\n",
        encoding="utf-8",
    )
    job = data / "job.yaml"
    job.write_text(
        "version: 1\nname: crm\nsteps:\n  - mapping: people.yaml\ndelete_missing: soft\n",
        encoding="utf-8",
    )
    return job


def emails(n: int) -> list[str]:
    return [f"p{i:03d}@x.io" for i in range(n)]


def client(box: Sandbox, transport: httpx.AsyncBaseTransport, **kw: Any) -> TwentyClient:
    return TwentyClient(
        base_url="http://sandbox",
        api_key=Secret(box.api_key),
        rate=Rate(10_000, 1),
        transport=transport,
        backoff_base=0.001,
        backoff_cap=0.01,
        **kw,
    )


async def run(
    project: Path, box: Sandbox, job: Path, transport: Deletes | None = None, **kw: Any
) -> tuple[JobReport, Deletes]:
    wire = transport or Deletes(box)
    async with client(box, wire, max_retries=kw.pop("max_retries", 8)) as c:
        report = await run_job(load_job(job), c, state_dir=project / "state", **kw)
    return report, wire


def ledger(project: Path) -> list[dict[str, str]]:
    with (project / "state" / "crm" / "people" / "deletions.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


async def live_and_deleted(box: Sandbox) -> tuple[set[str], set[str]]:
    people = await stored_people_all(box)
    live = {e for e, r in people.items() if r["deletedAt"] is None}
    return live, set(people) - live


async def test_keys_gone_from_the_source_are_soft_deleted_in_one_call(
    project: Path, sandbox: Sandbox
) -> None:
    job = people_job(project, emails(50))
    await run(project, sandbox, job)
    gone = ["p007@x.io", "p021@x.io", "p049@x.io"]
    people_job(project, [e for e in emails(50) if e not in gone])
    report, wire = await run(project, sandbox, job)
    step = report.steps[0]
    assert report.exit_code == 0 and step.deletions is not None
    assert (step.deletions.planned, step.deletions.deleted, step.deletions.live) == (3, 3, 50)
    assert wire.calls["delete"] == 1
    live, deleted = await live_and_deleted(sandbox)
    assert deleted == set(gone) and live == set(emails(50)) - set(gone)
    rows = ledger(project)
    assert [(r["key"], r["outcome"]) for r in rows] == [(e, "deleted") for e in gone]
    people = await stored_people_all(sandbox)
    assert [r["id"] for r in rows] == [people[e]["id"] for e in gone]
    saved = json.loads((project / "state" / "crm" / "report.json").read_text())
    assert saved["steps"][0]["deletions"]["deleted"] == 3

    # the same source again: nothing left to delete, no delete call
    report, wire = await run(project, sandbox, job)
    assert report.steps[0].deletions is not None and report.steps[0].deletions.planned == 0
    assert wire.calls["delete"] == 0


async def test_a_row_back_in_the_source_is_restored_and_may_be_deleted_again(
    project: Path, sandbox: Sandbox
) -> None:
    job = people_job(project, emails(20))
    await run(project, sandbox, job)
    people_job(project, emails(19))
    await run(project, sandbox, job, guard=DeletionGuard(max_share=0.5))
    people_job(project, emails(20))
    report, _ = await run(project, sandbox, job)
    assert report.steps[0].report is not None and report.steps[0].report.restored == 1
    assert (await live_and_deleted(sandbox))[1] == set()
    people_job(project, emails(19))
    report, _ = await run(project, sandbox, job, guard=DeletionGuard(max_share=0.5))
    assert report.steps[0].deletions is not None and report.steps[0].deletions.deleted == 1
    assert (await live_and_deleted(sandbox))[1] == {"p019@x.io"}


async def test_more_than_the_allowed_share_is_refused_unless_allowed(
    project: Path, sandbox: Sandbox
) -> None:
    job = people_job(project, emails(50))
    await run(project, sandbox, job)
    people_job(project, emails(40))  # a cut-off export: 20 % gone
    report, wire = await run(project, sandbox, job)
    step = report.steps[0]
    assert report.exit_code == 1 and step.status == "finished"
    assert wire.calls["delete"] == 0
    assert step.error is not None and "10 of 50 synced records (20.0%)" in step.error.message
    assert "allow_mass_delete" in str(step.error)
    assert (await live_and_deleted(sandbox))[1] == set()

    report, wire = await run(project, sandbox, job, guard=DeletionGuard(max_share=0.25))
    assert report.exit_code == 0 and wire.calls["delete"] == 1
    assert (await live_and_deleted(sandbox))[1] == set(emails(50)[40:])


async def test_a_rejected_row_still_holds_its_key_and_an_unreadable_one_stops_deletions(
    project: Path, sandbox: Sandbox
) -> None:
    job = people_job(project, emails(30))
    await run(project, sandbox, job)
    # p000 lost its first name (rejected, but still in the source); p029 left
    people_job(project, emails(30)[1:29], extra="p000@x.io,\n")
    report, _ = await run(project, sandbox, job)
    assert report.exit_code == 3
    assert (await live_and_deleted(sandbox))[1] == {"p029@x.io"}

    # a row the reader cannot split may hold any key: nothing is deleted
    people_job(project, emails(30)[1:27], extra='"p000@x.io,Ann\n')
    report, wire = await run(project, sandbox, job)
    step = report.steps[0]
    assert wire.calls["delete"] == 0 and step.error is not None
    assert "could not be read" in step.error.message
    assert (await live_and_deleted(sandbox))[1] == {"p029@x.io"}


async def test_a_lost_answer_is_resumed_and_ledgered_as_deleted(
    project: Path, sandbox: Sandbox
) -> None:
    job = people_job(project, emails(40))
    await run(project, sandbox, job)
    people_job(project, emails(37))
    report, wire = await run(
        project, sandbox, job, Deletes(sandbox, lose_first_answer=True), max_retries=0
    )
    assert report.exit_code == 1 and wire.calls["delete"] == 1
    assert (await live_and_deleted(sandbox))[1] == set(emails(40)[37:])  # the server did it
    report, wire = await run(project, sandbox, job)
    assert report.exit_code == 0 and wire.calls["delete"] == 1
    assert [r["outcome"] for r in ledger(project)] == ["deleted"] * 3


def test_a_dry_run_lists_the_deletions_and_writes_nothing(
    project: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = people_job(project, emails(30))
    asyncio.run(run(project, sandbox, job))
    people_job(project, emails(28))
    wire = Deletes(sandbox)
    monkeypatch.setattr("pipeline.cli.running.open_workspace", lambda s: client(sandbox, wire))
    args = ["run", str(job), "--dry-run", "--state-dir", str(project / "state")]
    env = {"TWENTY_API_KEY": "k", "TWENTY_API_URL": "https://crm.example.com"}
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    assert "28 rows, 28 valid, 0 rejected; would soft-delete 2 of 30 synced records" in (
        result.output
    )
    assert sum(wire.calls.values()) == 0
    planned = project / "state" / "crm" / "people" / "deletions-dry-run.csv"
    with planned.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["key"], r["outcome"]) for r in rows] == [
        ("p028@x.io", "would_delete"),
        ("p029@x.io", "would_delete"),
    ]
    assert asyncio.run(live_and_deleted(sandbox))[1] == set()

    # the same job past the guard: the dry run says the run would refuse
    people_job(project, emails(20))
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    assert "a run would refuse these deletions: 10 of 30 synced records (33.3%)" in result.output


@pytest.mark.parametrize("api", ["graphql", "rest"])
async def test_the_client_soft_deletes_in_both_flavours(sandbox: Sandbox, api: str) -> None:
    async with client(sandbox, httpx.ASGITransport(app=sandbox.app), api=api) as c:
        made = await c.upsert_many(
            PEOPLE, [{"emails": {"primaryEmail": f"{n}@x.io"}} for n in "abc"]
        )
        ids = [r["id"] for r in made]
        assert await c.soft_delete_many(PEOPLE, ids[:2]) == {i.lower() for i in ids[:2]}
        assert await c.soft_delete_many(PEOPLE, ids[:2]) == set()  # not live any more
    live, deleted = await live_and_deleted(sandbox)
    assert deleted == {"a@x.io", "b@x.io"} and live == {"c@x.io"}  # soft, not destroyed


async def test_an_answer_naming_a_record_not_asked_for_stops_the_run(sandbox: Sandbox) -> None:
    def lying(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": {"deletePeople": [{"id": "someone-else"}]}})

    async with client(sandbox, httpx.MockTransport(lying)) as c:
        with pytest.raises(FatalApiError, match="not asked to be deleted"):
            await c.soft_delete_many(PEOPLE, ["11111111-1111-4111-8111-111111111111"])


def test_delete_missing_takes_soft_or_false(project: Path) -> None:
    job = people_job(project, emails(2))
    assert load_job(job).delete_missing
    job.write_text(job.read_text().replace("soft", "hard"))
    from pipeline.errors import MappingError

    with pytest.raises(MappingError, match="use soft"):
        load_job(job)
