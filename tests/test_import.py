"""Import end to end on the in-process sandbox: outcomes, ledgers, resume, relations, faults."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline import load as load_module
from pipeline.cli.base import flag_advice
from pipeline.config import Rate, Secret
from pipeline.errors import RESTART_STARTS_OVER, USE_GRAPHQL_WRITES, FatalApiError, InputError
from pipeline.mapping import load_mapping
from pipeline.runner import ImportReport, import_file
from pipeline.sandbox import Sandbox, SandboxOptions
from pipeline.twenty import TwentyClient

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    shutil.copytree(ROOT / "sample_data", tmp_path / "sample_data")
    return tmp_path


@pytest.fixture
def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    box = Sandbox(tmp_path / "ws.sqlite", SandboxOptions(throttle=False))
    yield box  # type: ignore[misc]
    box.close()


def client_for(sandbox: Sandbox, api: str = "graphql", **kw: Any) -> TwentyClient:
    return TwentyClient(
        base_url="http://sandbox",
        api_key=Secret(sandbox.api_key),
        rate=Rate(10_000, 1),
        api=api,  # type: ignore[arg-type]
        transport=httpx.ASGITransport(app=sandbox.app),
        backoff_base=0.001,
        backoff_cap=0.01,
        **kw,
    )


async def run_import(project: Path, sandbox: Sandbox, name: str, **kw: Any) -> ImportReport:
    api = kw.pop("api", "graphql")
    kw.setdefault("state_dir", project / "state")
    async with client_for(sandbox, api) as client:
        return await import_file(load_mapping(project / "mappings" / f"{name}.yaml"), client, **kw)


def ledger(project: Path, name: str, kind: str) -> list[dict[str, str]]:
    with (project / "state" / name / f"{kind}.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def people(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    obj = sandbox.engine.object("person")
    page = sandbox.engine.find_many(obj, limit=200)
    return {p["emails"]["primaryEmail"]: p for p in page.records}


async def test_samples_import_with_exact_outcomes_and_ledgers(
    project: Path, sandbox: Sandbox
) -> None:
    companies = await run_import(project, sandbox, "companies")
    assert (companies.rows_read, companies.created, companies.rejected) == (11, 7, 4)
    report = await run_import(project, sandbox, "people")
    assert (report.rows_read, report.loaded, report.rejected) == (12, 6, 6)
    assert report.exit_code == 3
    rejects = {
        int(r["_row"]): (r["_stage"], r["_reason"]) for r in ledger(project, "people", "rejects")
    }
    assert rejects[13] == (
        "load",
        "Company Website: no company has domainName.primaryLinkUrl "
        "= https://unknown-company.com (on_missing: reject)",
    )
    assert rejects[5] == (  # its company was itself rejected (N/A employees)
        "load",
        "Company Website: no company has domainName.primaryLinkUrl = https://societe-demo.fr "
        "(on_missing: reject); company row 5 of companies.csv was rejected (Employees: 'N/A' "
        "is not a number)",
    )
    assert rejects[9][0] == "normalize"
    success = ledger(project, "people", "success")
    assert len(success) + len(rejects) == report.rows_read
    loaded = people(sandbox)
    assert set(loaded) == {r["key"] for r in success}
    acme = sandbox.engine.find_many(
        sandbox.engine.object("company"),
        {"domainName": {"primaryLinkUrl": {"eq": "https://acme.com"}}},
    )
    assert loaded["ada@acme.com"]["companyId"] == acme.records[0]["id"]
    assert loaded["ada@acme.com"]["name"]["firstName"] == 'Ada "The Countess"'  # the last row won
    saved = json.loads((project / "state" / "people" / "report.json").read_text())
    assert saved["rows"]["read"] == 12 and saved["exit_code"] == 3
    assert "sk-" not in (project / "state" / "people" / "report.json").read_text()


async def test_rerun_after_completion_sends_nothing_and_restart_updates(
    project: Path, sandbox: Sandbox
) -> None:
    await run_import(project, sandbox, "companies")
    again = await run_import(project, sandbox, "companies")
    assert again.already_done and again.calls["writes"] == 0
    restarted = await run_import(project, sandbox, "companies", restart=True)
    assert (restarted.created, restarted.updated) == (0, 7)
    assert sandbox.engine.count_records(sandbox.engine.object("company")) == 7


async def test_graphql_and_rest_leave_identical_workspaces(project: Path, tmp_path: Path) -> None:
    states = []
    for api in ("graphql", "rest"):
        box = Sandbox(tmp_path / f"{api}.sqlite", SandboxOptions(throttle=False))
        try:
            for name in ("companies", "people", "opportunities"):
                await run_import(project, box, name, api=api, state_dir=tmp_path / api)
            state = {}
            for obj_name in ("company", "person", "opportunity"):
                obj = box.engine.object(obj_name)
                rows = box.engine.find_many(obj, limit=200).records
                state[obj_name] = sorted(
                    json.dumps(
                        {
                            k: v
                            for k, v in r.items()
                            if k
                            not in (
                                "id",
                                "createdAt",
                                "updatedAt",
                                "position",
                                "companyId",
                                "pointOfContactId",
                            )
                        },
                        sort_keys=True,
                    )
                    for r in rows
                )
            states.append(state)
        finally:
            box.close()
    assert states[0] == states[1]
    assert len(states[0]["person"]) == 6


async def test_a_new_file_after_a_finished_import_starts_a_new_one(
    project: Path, sandbox: Sandbox
) -> None:
    await run_import(project, sandbox, "companies")
    source = project / "sample_data" / "companies.csv"
    source.write_bytes(source.read_bytes() + b"New Co,newco.io,3,,USD,no,Oslo,Norway,\n")
    report = await run_import(project, sandbox, "companies")
    assert not report.resumed
    assert report.rows_read == 12 and report.created == 1 and report.updated == 7


async def test_changed_source_of_an_unfinished_import_is_refused(
    project: Path, sandbox: Sandbox
) -> None:
    await run_import(project, sandbox, "companies")
    with sqlite3.connect(project / "state" / "companies" / "state.sqlite") as db:
        db.execute("UPDATE runs SET status = 'running', ended = NULL")  # as if killed
    source = project / "sample_data" / "companies.csv"
    source.write_bytes(source.read_bytes() + b"New Co,newco.io,3,,USD,no,Oslo,Norway,\n")
    with pytest.raises(InputError, match="the source file changed") as refused:
        await run_import(project, sandbox, "companies")
    assert refused.value.advice == RESTART_STARTS_OVER
    report = await run_import(project, sandbox, "companies", restart=True)
    assert report.rows_read == 12 and report.created == 1 and report.updated == 7


async def test_crash_then_resume_loses_and_duplicates_nothing(
    project: Path, sandbox: Sandbox
) -> None:
    """The workspace dies after a few writes; the re-run finishes the job exactly once."""
    source = project / "many.csv"
    rows = ["First Name;Last Name;E-mail;Phone;Job Title;City;Company Website;LinkedIn"]
    rows += [f"P{i};L{i};p{i}@example.com;;;City{i % 7};;" for i in range(95)]
    source.write_text("\n".join(rows) + "\n")
    mapping = project / "mappings" / "people.yaml"
    writes = 0

    class Flaky(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.ASGITransport(app=sandbox.app)

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path == "/graphql":
                nonlocal writes
                writes += 1
                if writes > 4:
                    return httpx.Response(
                        401,
                        json={"statusCode": 401, "messages": ["gone"], "error": "UNAUTHENTICATED"},
                        request=request,
                    )
            return await self.inner.handle_async_request(request)

    client = TwentyClient(
        base_url="http://sandbox",
        api_key=Secret(sandbox.api_key),
        rate=Rate(10_000, 1),
        transport=Flaky(),
    )
    async with client:
        with pytest.raises(FatalApiError):
            await import_file(
                load_mapping(mapping),
                client,
                state_dir=project / "state",
                source=source,
                batch_size=10,
                concurrency=2,
            )
    partial = sandbox.engine.count_records(sandbox.engine.object("person"))
    assert 0 < partial < 95
    seen: list[int] = []
    totals: list[int] = []
    report = await run_import(
        project,
        sandbox,
        "people",
        source=source,
        batch_size=10,
        progress=lambda _stats, rows: seen.append(rows),
        on_total=totals.append,
    )
    assert report.resumed
    assert totals == [95] and sum(seen) == 95  # done batches count too: the bar ends full
    assert report.rows_read == 95 and report.loaded == 95 and report.rejected == 0
    assert sandbox.engine.count_records(sandbox.engine.object("person")) == 95
    success = ledger(project, "people", "success")
    assert sorted(int(r["_row"]) for r in success) == list(range(2, 97))
    assert len({r["id"] for r in success}) == 95


async def test_bad_record_is_isolated_by_splitting_the_batch(
    project: Path, sandbox: Sandbox
) -> None:
    mapping = project / "mappings" / "linked.yaml"
    mapping.write_text(
        "object: person\nkey: [emails.primaryEmail]\nfields:\n"
        "  emails: email\n  company: {column: company_id, lookup: id}\n"
    )
    source = project / "linked.csv"
    ghost = str(uuid.uuid4())
    lines = ["email,company_id"] + [f"u{i}@x.io," for i in range(9)]
    lines.insert(5, f"ghost@x.io,{ghost}")
    source.write_text("\n".join(lines) + "\n")
    async with client_for(sandbox) as client:
        report = await import_file(
            load_mapping(mapping), client, state_dir=project / "state", source=source, batch_size=10
        )
    assert (report.loaded, report.rejected) == (9, 1)
    (reject,) = ledger(project, "linked", "rejects")
    assert reject["_row"] == "6" and reject["_stage"] == "load"
    assert reject["_reason"] == (
        f"Twenty refused the record: Foreign key violation on companyId: no company with id {ghost}"
    )
    assert report.calls["writes"] > 1


async def test_server_batch_limit_lowers_the_batch_size(project: Path, tmp_path: Path) -> None:
    box = Sandbox(tmp_path / "small.sqlite", SandboxOptions(throttle=False, max_records=7))
    try:
        report = await run_import(project, box, "companies", batch_size=60)
    finally:
        box.close()
    assert report.created == 7


@pytest.mark.parametrize(
    ("mode", "restored", "rejected", "unchanged"),
    [("restore", 1, 4, 0), ("skip", 0, 4, 1), ("reject", 0, 5, 0)],
)
async def test_soft_deleted_matches(
    project: Path, sandbox: Sandbox, mode: str, restored: int, rejected: int, unchanged: int
) -> None:
    await run_import(project, sandbox, "companies")
    obj = sandbox.engine.object("company")
    sandbox.engine.delete(
        obj, {"domainName": {"primaryLinkUrl": {"eq": "https://stark.com"}}}, soft=True
    )
    report = await run_import(project, sandbox, "companies", restart=True, on_deleted=mode)
    assert (report.restored, report.rejected, report.unchanged) == (restored, rejected, unchanged)
    assert report.loaded + report.rejected + report.unchanged == report.rows_read
    alive = sandbox.engine.count_records(obj)
    assert alive == (7 if mode == "restore" else 6)


@pytest.mark.parametrize("prefetch", [True, False])
async def test_lookup_on_missing_null_and_create(
    project: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, prefetch: bool
) -> None:
    if not prefetch:
        monkeypatch.setattr(load_module, "PREFETCH_LIMIT", -1)  # force batched `in` queries
    await run_import(project, sandbox, "companies")
    mapping = project / "mappings" / "people.yaml"
    text = mapping.read_text()
    mapping.write_text(text.replace("on_missing: reject", "on_missing: create"))
    report = await run_import(project, sandbox, "people")
    assert report.rejected == 4  # only the normalize rejects are left
    companies = sandbox.engine.find_many(sandbox.engine.object("company"), limit=200).records
    domains = {c["domainName"]["primaryLinkUrl"] for c in companies}
    assert {"https://unknown-company.com", "https://societe-demo.fr"} <= domains
    mapping.write_text(text.replace("on_missing: reject", 'on_missing: "null"'))
    report = await run_import(project, sandbox, "people", restart=True)
    assert report.rejected == 4
    assert people(sandbox)["lucius@wayne.com"]["companyId"] is not None  # created above


async def test_every_loaded_row_is_in_exactly_one_ledger(project: Path, sandbox: Sandbox) -> None:
    for name in ("companies", "people", "opportunities"):
        report = await run_import(project, sandbox, name)
        success = ledger(project, name, "success")
        rejects = ledger(project, name, "rejects")
        rows = [int(r["_row"]) for r in success] + [int(r["_row"]) for r in rejects]
        assert len(rows) == len(set(rows)) == report.rows_read


def make_cli_runner() -> Callable[..., Any]:
    from click.testing import CliRunner

    from pipeline.cli import cli

    return lambda *args: CliRunner().invoke(cli, list(args))


def test_cli_import_status_and_exit_codes(project: Path) -> None:
    invoke = make_cli_runner()
    db = f"--sandbox={project / 'ws.sqlite'}"
    state = ["--state-dir", str(project / "state")]
    result = invoke("import", str(project / "mappings" / "companies.yaml"), db, *state)
    assert result.exit_code == 3, result.output
    assert "  created            7" in result.output
    assert "  rejected           4" in result.output
    status = invoke("status", "companies", *state)
    assert status.exit_code == 0
    assert "companies: complete" in status.output
    assert "rows: 7 created, 4 rejected" in status.output
    dry = invoke("import", str(project / "mappings" / "people.yaml"), db, "--dry-run", *state)
    assert dry.exit_code == 3 and "rows read" in dry.output
    missing = invoke("status", "nope", *state)
    assert missing.exit_code == 2


async def test_rest_on_a_legacy_server_stops_with_advice(project: Path, tmp_path: Path) -> None:
    box = Sandbox(tmp_path / "legacy.sqlite", SandboxOptions(throttle=False, profile="legacy"))
    try:
        first = await run_import(project, box, "companies", api="rest")
        assert first.created == 7  # new records: a plain create works
        with pytest.raises(FatalApiError) as stop:
            await run_import(project, box, "companies", api="rest", restart=True)
        assert stop.value.advice == USE_GRAPHQL_WRITES
        assert flag_advice(stop.value.advice) == "run again with --api graphql"
        again = await run_import(project, box, "companies", api="graphql", restart=True)
        assert (again.created, again.updated) == (0, 7)
    finally:
        box.close()


async def test_the_loader_tells_the_pacer_what_is_left_once_all_is_queued(
    project: Path, sandbox: Sandbox
) -> None:
    """12 batches of 5, 2 workers: once every batch is queued, the pacer hears how many
    no worker has taken yet, down to 0, and None when the job is over."""
    mapping = project / "mappings" / "notes.yaml"
    mapping.write_text("object: note\nkey: [title]\nfields:\n  title: title\n")
    source = project / "notes.csv"
    source.write_text("title\n" + "".join(f"Note {i}\n" for i in range(60)))
    told: list[int | None] = []
    async with client_for(sandbox, concurrency=2) as client:
        tell = client.note_backlog

        def noted(calls: int | None) -> None:
            told.append(calls)
            tell(calls)

        client.note_backlog = noted  # type: ignore[method-assign]
        report = await import_file(
            load_mapping(mapping),
            client,
            state_dir=project / "state",
            source=source,
            batch_size=5,
            concurrency=2,
        )
        assert client.session.pacer.backlog is None
    assert report.loaded == 60
    assert told[-1] is None
    counts = [n for n in told[:-1] if n is not None]
    assert len(counts) >= 3 and counts[-1] == 0
    assert counts == sorted(counts, reverse=True)  # only ever fewer left
    assert counts[0] <= 2 * 2  # the queue holds twice the workers
