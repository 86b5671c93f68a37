"""Plan: what an import would create, change, restore and possibly duplicate, before any write.

A workspace of 200 people and a file of 300 rows: 100 new, 150 changing two fields,
40 identical, 10 looking like existing people under another e-mail. Calls are counted
on the wire, between the client and the sandbox.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.config import Rate, Secret
from pipeline.mapping import load_mapping
from pipeline.plan_policy import PlanOptions
from pipeline.planning import PlanReport, run_plan
from pipeline.reports import ImportReport
from pipeline.runner import import_file
from pipeline.sandbox import Sandbox, SandboxOptions
from pipeline.schema import load_schema
from pipeline.twenty import TwentyClient

MAPPING = """\
version: 1
object: person
source: {path: people.csv}
key: [emails.primaryEmail]
fields:
  emails.primaryEmail: email
  name.firstName: first
  name.lastName: last
  jobTitle: title
  city: city
"""


class WireCounter(httpx.AsyncBaseTransport):
    """The sandbox, counting what reaches it: writes are any call that changes records."""

    def __init__(self, box: Sandbox) -> None:
        self.inner = httpx.ASGITransport(app=box.app)
        self.calls: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/graphql":
            self.calls["write" if b"mutation" in request.content else "read"] += 1
        elif path.endswith("/duplicates"):
            self.calls["duplicates"] += 1
        elif path.startswith("/rest/metadata"):
            self.calls["metadata"] += 1
        elif path.startswith("/rest/"):
            self.calls["read" if request.method == "GET" else "write"] += 1
        return await self.inner.handle_async_request(request)


@pytest.fixture
def box(tmp_path: Path) -> Any:
    sandbox = Sandbox(tmp_path / "ws.sqlite", SandboxOptions(throttle=False))
    obj = sandbox.engine.object("person")
    actor = {"source": "API", "name": "seed", "workspaceMemberId": None, "context": {}}
    seed = [
        {
            "emails": {"primaryEmail": f"p{i}@x.io"},
            "name": {"firstName": f"First{i}", "lastName": f"Last{i}"},
            "jobTitle": f"Job{i}",
            "city": f"City{i}",
        }
        for i in range(200)
    ]
    sandbox.engine.create_many(obj, seed, upsert=False, actor=actor)
    yield sandbox
    sandbox.close()


def file_rows() -> list[list[str]]:
    rows = [[f"n{i}@x.io", f"New{i}", f"Person{i}", f"NewJob{i}", "Lyon"] for i in range(100)]
    rows += [[f"p{i}@x.io", f"First{i}", f"Last{i}", f"Chief{i}", f"Town{i}"] for i in range(150)]
    rows += [
        [f"p{i}@x.io", f"First{i}", f"Last{i}", f"Job{i}", f"City{i}"] for i in range(150, 190)
    ]
    rows += [[f"other{i}@y.io", f"First{i}", f"Last{i}", "", ""] for i in range(190, 200)]
    return rows


@pytest.fixture
def mapping_path(tmp_path: Path) -> Path:
    with (tmp_path / "people.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["email", "first", "last", "title", "city"])
        writer.writerows(file_rows())
    path = tmp_path / "people.yaml"
    path.write_text(MAPPING, encoding="utf-8")
    return path


async def plan_of(box: Sandbox, mapping_path: Path, state: Path) -> tuple[PlanReport, Counter[str]]:
    wire = WireCounter(box)
    async with TwentyClient(
        base_url="http://sandbox", api_key=Secret(box.api_key), rate=Rate(10_000, 1), transport=wire
    ) as c:
        schema = await load_schema(c)
        report = await run_plan(load_mapping(mapping_path), c, schema, state_dir=state)
    assert report is not None
    return report, wire.calls


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def stored(box: Sandbox) -> dict[str, dict[str, Any]]:
    obj = box.engine.object("person")
    out: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        page = box.engine.find_many(obj, limit=200, after=after)
        out.update({p["emails"]["primaryEmail"]: p for p in page.records})
        if not page.has_next_page:
            return out
        after = page.end_cursor


async def test_the_plan_counts_changes_and_duplicates_exactly_with_no_write(
    box: Sandbox, mapping_path: Path, tmp_path: Path
) -> None:
    before = stored(box)
    report, calls = await plan_of(box, mapping_path, tmp_path / "state")
    assert (report.rows, report.create, report.update, report.unchanged) == (300, 110, 150, 40)
    assert (report.restore, report.rejected, report.skipped) == (0, 0, 0)
    assert dict(report.fields) == {"jobTitle": 150, "city": 150}
    assert report.possible_duplicates == 10
    ids = {p["emails"]["primaryEmail"]: p["id"] for p in before.values()}
    assert sorted((d["key"], d["record_id"], d["why"]) for d in report.duplicates) == sorted(
        (f"other{i}@y.io", ids[f"p{i}@x.io"], f"same name (First{i} Last{i})")
        for i in range(190, 200)
    )
    assert calls["write"] == 0
    assert calls["read"] == report.read_calls - calls["duplicates"] == 3  # 2 key reads + deleted
    assert calls["duplicates"] == 2  # 110 rows to create, 60 a call
    assert stored(box) == before
    lines = read_csv(tmp_path / "state" / "people" / "plan.csv")
    changes = [r for r in lines if r["action"] == "update"]
    assert len(changes) == 300
    assert {
        "_row": "102",
        "key": "p0@x.io",
        "action": "update",
        "field": "jobTitle",
        "now": "Job0",
        "after": "Chief0",
        "record_id": ids["p0@x.io"],
        "note": "",
    } in changes
    saved = json.loads((tmp_path / "state" / "people" / "plan.json").read_text())
    assert saved["create"] == 110 and saved["write_calls"] == 0


async def import_with(
    box: Sandbox, mapping_path: Path, state: Path, **options: Any
) -> tuple[ImportReport, Counter[str]]:
    wire = WireCounter(box)
    async with TwentyClient(
        base_url="http://sandbox", api_key=Secret(box.api_key), rate=Rate(10_000, 1), transport=wire
    ) as c:
        report = await import_file(
            load_mapping(mapping_path), c, state_dir=state, plan_options=PlanOptions(**options)
        )
    return report, wire.calls


def outcomes(state: Path) -> dict[str, dict[str, str]]:
    return {r["_row"]: r for r in read_csv(state / "people" / "success.csv")}


async def test_only_create_creates_what_the_plan_said_and_updates_nothing(
    box: Sandbox, mapping_path: Path, tmp_path: Path
) -> None:
    before = stored(box)
    report, _ = await import_with(box, mapping_path, tmp_path / "state", only_create=True)
    assert (report.created, report.updated, report.skipped, report.rejected) == (110, 0, 190, 0)
    after = stored(box)
    assert len(after) == 310
    assert {k: after[k] for k in before} == before  # not one existing record touched
    assert after["n5@x.io"]["jobTitle"] == "NewJob5"
    skipped = outcomes(tmp_path / "state")["102"]
    assert skipped["outcome"] == "skipped"
    assert "has this key; not updated (--only-create)" in skipped["note"]


async def test_keep_existing_leaves_non_empty_values_and_changes_the_rest(
    box: Sandbox, mapping_path: Path, tmp_path: Path
) -> None:
    report, calls = await import_with(
        box, mapping_path, tmp_path / "state", keep_existing=frozenset({"jobTitle"})
    )
    assert (report.created, report.updated, report.unchanged) == (110, 150, 40)
    after = stored(box)
    for i in range(150):
        assert (after[f"p{i}@x.io"]["jobTitle"], after[f"p{i}@x.io"]["city"]) == (
            f"Job{i}",
            f"Town{i}",
        )
    assert after["n0@x.io"]["jobTitle"] == "NewJob0"
    assert after["other190@y.io"]["name"] == {"firstName": "First190", "lastName": "Last190"}
    assert calls["duplicates"] == 0  # not asked for: no --on-possible-duplicate


@pytest.mark.parametrize(
    ("mode", "created", "skipped", "rejected"),
    [("skip", 100, 10, 0), ("reject", 100, 0, 10), ("create", 110, 0, 0)],
)
async def test_on_possible_duplicate_does_what_the_plan_said(
    box: Sandbox,
    mapping_path: Path,
    tmp_path: Path,
    mode: str,
    created: int,
    skipped: int,
    rejected: int,
) -> None:
    plan, _ = await plan_of(box, mapping_path, tmp_path / "plan-state")
    flagged = {d["key"]: d for d in plan.duplicates}
    report, _ = await import_with(box, mapping_path, tmp_path / "state", on_possible_duplicate=mode)
    assert (report.created, report.updated, report.unchanged) == (created, 150, 40)
    assert (report.skipped, report.rejected) == (skipped, rejected)
    assert report.rows_read == 300
    after = stored(box)
    assert all((key in after) == (mode == "create") for key in flagged)
    assert after["p0@x.io"]["jobTitle"] == "Chief0"
    if mode == "reject":
        rejects = read_csv(tmp_path / "state" / "people" / "rejects.csv")
        assert {r["email"] for r in rejects} == set(flagged)
        one = next(r for r in rejects if r["email"] == "other190@y.io")
        assert one["_stage"] == "load"
        assert one["_reason"] == (
            f"possible duplicate of person {flagged['other190@y.io']['record_id']}: "
            "same name (First190 Last190) (--on-possible-duplicate reject)"
        )


async def test_soft_deleted_records_are_planned_as_restores(
    box: Sandbox, mapping_path: Path, tmp_path: Path
) -> None:
    obj = box.engine.object("person")
    for i in range(5):  # 5 of the changing rows, 2 of the identical ones
        box.engine.delete(obj, {"emails": {"primaryEmail": {"eq": f"p{i}@x.io"}}}, soft=True)
    for i in (150, 151):
        box.engine.delete(obj, {"emails": {"primaryEmail": {"eq": f"p{i}@x.io"}}}, soft=True)
    report, calls = await plan_of(box, mapping_path, tmp_path / "state")
    assert (report.create, report.update, report.unchanged, report.restore) == (110, 145, 38, 7)
    assert calls["write"] == 0
    done, _ = await import_with(box, mapping_path, tmp_path / "state", only_create=True)
    assert (done.created, done.restored, done.skipped) == (110, 0, 190)
    assert "p0@x.io" not in stored(box)  # still deleted
    skipped = outcomes(tmp_path / "state")["102"]["note"]
    assert skipped.startswith("a soft-deleted person ") and "(--only-create)" in skipped
