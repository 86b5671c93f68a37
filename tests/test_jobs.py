"""Jobs on the in-process sandbox: dependency order, ids handed on, failures contained.

Calls are counted on the wire, between the client and the sandbox.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.config import Rate, Secret
from pipeline.errors import MappingError
from pipeline.jobs import JobReport, load_job, run_job
from pipeline.sandbox import Sandbox
from pipeline.twenty import TwentyClient
from tests.test_import import project, sandbox
from tests.test_sync import rest

__all__ = ["project", "sandbox"]


class Wire(httpx.AsyncBaseTransport):
    """The sandbox, recording every call that reaches it; writes to one object can fail."""

    def __init__(self, box: Sandbox, refuse: str | None = None) -> None:
        self.inner = httpx.ASGITransport(app=box.app)
        self.refuse = refuse.encode() if refuse else None
        self.writes: list[str] = []
        self.lookup_reads = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = request.content
        if request.url.path == "/graphql":
            if b"mutation" in body:
                if self.refuse and self.refuse in body:
                    return httpx.Response(
                        401,
                        json={"statusCode": 401, "messages": ["revoked"], "error": "FORBIDDEN"},
                        request=request,
                    )
                self.writes.append(json.loads(body)["query"].split("(")[0].split()[-1])
            elif b"deletedAt" not in body:
                self.lookup_reads += 1  # every read but the soft-deleted keys at the start
        elif (
            request.url.path.startswith("/rest/")
            and "/metadata" not in request.url.path
            and request.method == "GET"
            and "deletedAt" not in str(request.url)
        ):
            self.lookup_reads += 1
        return await self.inner.handle_async_request(request)


async def run(project: Path, box: Sandbox, job: Path, wire: Wire, **kw: Any) -> JobReport:
    client = TwentyClient(
        base_url="http://sandbox", api_key=Secret(box.api_key), rate=Rate(10_000, 1), transport=wire
    )
    async with client:
        return await run_job(load_job(job), client, state_dir=project / "state", **kw)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def fresh_job(project: Path, order: list[str]) -> Path:
    """Companies, people, deals that only link to each other (nothing else to look up)."""
    data = project / "fresh"
    data.mkdir()
    write(data / "companies.csv", "name,site\nAcme,acme.com\nGlobex,globex.com\n")
    write(
        data / "people.csv",
        "email,first,site\nann@acme.com,Ann,acme.com\nbob@globex.com,Bob,globex.com\n",
    )
    write(
        data / "deals.csv",
        "deal,site,contact\nBig,acme.com,ann@acme.com\nSmall,globex.com,bob@globex.com\n",
    )
    maps = project / "fresh-maps"
    maps.mkdir()
    write(
        maps / "companies.yaml",
        "version: 1\nobject: company\nsource: {path: ../fresh/companies.csv}\n"
        "key: [domainName.primaryLinkUrl]\nfields:\n  name: name\n  domainName.primaryLinkUrl: site\n",
    )
    write(
        maps / "people.yaml",
        "version: 1\nobject: person\nsource: {path: ../fresh/people.csv}\n"
        "key: [emails.primaryEmail]\nfields:\n  emails.primaryEmail: email\n"
        "  name.firstName: first\n"
        "  company: {column: site, lookup: domainName.primaryLinkUrl}\n",
    )
    write(
        maps / "deals.yaml",
        "version: 1\nobject: opportunity\nsource: {path: ../fresh/deals.csv}\nkey: [name]\n"
        "fields:\n  name: deal\n  company: {column: site, lookup: domainName.primaryLinkUrl}\n"
        "  pointOfContact: {column: contact, lookup: emails.primaryEmail}\n",
    )
    steps = "".join(f"  - mapping: {name}.yaml\n" for name in order)
    return write(maps / "job.yaml", f"version: 1\nname: fresh\nsteps:\n{steps}")


async def test_steps_run_in_dependency_order_and_look_nothing_up(
    project: Path, sandbox: Sandbox
) -> None:
    job = fresh_job(project, ["deals", "people", "companies"])
    wire = Wire(sandbox)
    report = await run(project, sandbox, job, wire)
    assert [s.step.name for s in report.steps] == ["companies", "people", "deals"]
    assert [s.status for s in report.steps] == ["finished"] * 3 and report.exit_code == 0
    assert wire.writes == ["CreateCompanies", "CreatePeople", "CreateOpportunities"]
    assert wire.lookup_reads == 0  # every id came from the earlier steps
    async with rest(sandbox) as http:
        companies = (await http.get("/rest/companies")).json()["data"]["companies"]
        people = (await http.get("/rest/people")).json()["data"]["people"]
        deals = (await http.get("/rest/opportunities")).json()["data"]["opportunities"]
    company_id = {c["domainName"]["primaryLinkUrl"]: c["id"] for c in companies}
    person_id = {p["emails"]["primaryEmail"]: p["id"] for p in people}
    assert {p["emails"]["primaryEmail"]: p["companyId"] for p in people} == {
        "ann@acme.com": company_id["https://acme.com"],
        "bob@globex.com": company_id["https://globex.com"],
    }
    assert {d["name"]: (d["companyId"], d["pointOfContactId"]) for d in deals} == {
        "Big": (company_id["https://acme.com"], person_id["ann@acme.com"]),
        "Small": (company_id["https://globex.com"], person_id["bob@globex.com"]),
    }
    saved = json.loads((project / "state" / "fresh" / "report.json").read_text())
    assert [(s["step"], s["status"]) for s in saved["steps"]] == [
        ("companies", "finished"),
        ("people", "finished"),
        ("deals", "finished"),
    ]
    assert saved["steps"][1]["report"]["calls"]["writes"] == 1  # per step, not cumulative


async def test_values_the_job_did_not_load_are_still_looked_up(
    project: Path, sandbox: Sandbox
) -> None:
    async with rest(sandbox) as http:
        body = {"name": "Initech", "domainName": {"primaryLinkUrl": "https://initech.com"}}
        initech = (await http.post("/rest/companies", json=body)).json()["data"]["createCompany"]
    job = fresh_job(project, ["companies", "people"])
    people = project / "fresh" / "people.csv"
    people.write_text(people.read_text() + "cy@initech.com,Cy,initech.com\n", encoding="utf-8")
    wire = Wire(sandbox)
    report = await run(project, sandbox, job, wire)
    assert report.exit_code == 0 and wire.lookup_reads == 1
    async with rest(sandbox) as http:
        found = (await http.get("/rest/people", params={"filter": "name.firstName[eq]:Cy"})).json()
    assert found["data"]["people"][0]["companyId"] == initech["id"]


async def test_a_failing_step_stops_its_dependents_and_not_the_others(
    project: Path, sandbox: Sandbox
) -> None:
    job = fresh_job(project, ["companies", "people"])
    write(project / "fresh" / "solo.csv", "deal\nLonely\n")
    write(
        project / "fresh-maps" / "solo.yaml",
        "version: 1\nobject: opportunity\nsource: {path: ../fresh/solo.csv}\nkey: [name]\n"
        "fields:\n  name: deal\n",
    )
    job.write_text(job.read_text() + "  - mapping: solo.yaml\n", encoding="utf-8")
    wire = Wire(sandbox, refuse="createCompanies")
    report = await run(project, sandbox, job, wire)
    by_name = {s.step.name: s for s in report.steps}
    assert by_name["companies"].status == "failed" and "revoked" in (
        by_name["companies"].reason or ""
    )
    assert by_name["people"].status == "skipped"
    assert by_name["people"].reason == "skipped: step companies did not finish (failed)"
    assert by_name["solo"].status == "finished" and wire.writes == ["CreateOpportunities"]
    assert report.exit_code == 1

    # the workspace takes writes again: the same command finishes the job
    report = await run(project, sandbox, job, Wire(sandbox))
    assert [s.status for s in report.steps] == ["finished"] * 3 and report.exit_code == 0
    assert report.steps[2].report is not None and report.steps[2].report.already_done


async def test_a_cycle_is_refused_before_any_write(project: Path, sandbox: Sandbox) -> None:
    async with rest(sandbox) as http:
        objects = (await http.get("/rest/metadata/objects", params={"limit": 200})).json()
        ids = {o["nameSingular"]: o["id"] for o in objects["data"]}
        answer = await http.post(
            "/rest/metadata/fields",
            json={
                "objectMetadataId": ids["company"],
                "type": "RELATION",
                "name": "champion",
                "label": "Champion",
                "relationCreationPayload": {
                    "type": "MANY_TO_ONE",
                    "targetObjectMetadataId": ids["person"],
                    "targetFieldLabel": "Championed",
                },
            },
        )
        assert answer.status_code == 201, answer.text
    job = fresh_job(project, ["people", "companies"])
    companies = project / "fresh-maps" / "companies.yaml"
    companies.write_text(
        companies.read_text() + "  champion: {column: name, lookup: emails.primaryEmail}\n",
        encoding="utf-8",
    )
    wire = Wire(sandbox)
    with pytest.raises(MappingError) as refused:
        await run(project, sandbox, job, wire)
    assert str(refused.value) == (
        f"{job}: the steps need each other: companies -> people -> companies "
        "(each looks up records the next one loads)"
    )
    assert wire.writes == []


def test_job_file_problems_are_listed_at_once(project: Path) -> None:
    job = write(
        project / "mappings" / "bad-job.yaml",
        "version: 1\nstep: []\nsteps:\n  - mapping: people.yaml\n  - mapping: people.yaml\n"
        "  - mapping: nowhere.yaml\n  - {mapping: companies.yaml, source: gone.csv}\n"
        "delete_missing: hard\n",
    )
    with pytest.raises(MappingError) as refused:
        load_job(job)
    problems = refused.value.problems
    assert f"{job}: unknown key 'step'" in problems
    assert (
        f"{job}: delete_missing: 'hard'; use soft (soft-delete the records whose keys left the source) or false"
        in problems
    )
    assert any(p.startswith(f"{job}: step 2: the name 'people' is step 1's too") for p in problems)
    assert any(p.startswith(f"{job}: step 3: ") and "nowhere.yaml" in p for p in problems)
    assert (
        f"{job}: step 4: the source {project / 'mappings' / 'gone.csv'} is not a file" in problems
    )
    assert len(problems) == 5


def test_cli_run_of_the_demo_job(project: Path) -> None:
    runner = CliRunner()
    env = {"TWENTY_STATE_DIR": str(project / "state"), "TWENTY_SANDBOX": "1"}
    job = str(project / "mappings" / "demo-job.yaml")
    result = runner.invoke(cli, ["run", job], env=env)
    assert result.exit_code == 3, result.output  # the samples hold bad rows on purpose
    steps = [line for line in result.stdout.splitlines() if line.startswith("step ")]
    assert steps == [
        "step 1/4 companies: finished",
        "step 2/4 people: finished",
        "step 3/4 opportunities: finished",
        "step 4/4 notes: finished",
    ]
    assert "job demo: 4 of 4 steps finished in " in result.stdout
    state = project / "state" / "demo"
    assert result.stderr.splitlines() == [
        f"run demo: step companies: 4 rows rejected; see {state}/companies/rejects.csv",
        f"run demo: step people: 6 rows rejected; see {state}/people/rejects.csv",
        f"run demo: step opportunities: 3 rows rejected; see {state}/opportunities/rejects.csv",
        f"run demo: step notes: 1 row rejected; see {state}/notes/rejects.csv",
    ]
    again = runner.invoke(cli, ["run", job, "--json"], env=env)
    report = json.loads(again.stdout)
    assert [s["report"]["already_done"] for s in report["steps"]] == [True] * 4
    assert report["exit_code"] == 3


async def test_one_mapping_twice_under_two_names_keeps_two_states(
    project: Path, sandbox: Sandbox
) -> None:
    job = fresh_job(project, ["companies", "people"])
    write(project / "fresh" / "leads.csv", "email,first,site\ncy@acme.com,Cy,acme.com\n")
    job.write_text(
        job.read_text() + "  - {mapping: people.yaml, source: ../fresh/leads.csv, name: leads}\n",
        encoding="utf-8",
    )
    report = await run(project, sandbox, job, Wire(sandbox))
    assert [(s.step.name, s.status) for s in report.steps] == [
        ("companies", "finished"),
        ("people", "finished"),
        ("leads", "finished"),
    ]
    leads = report.steps[2].report
    assert leads is not None and (leads.created, leads.state_dir) == (
        1,
        str(project / "state" / "fresh" / "leads"),
    )
    async with rest(sandbox) as http:
        people = (await http.get("/rest/people")).json()["data"]["people"]
    assert sorted(p["emails"]["primaryEmail"] for p in people) == [
        "ann@acme.com",
        "bob@globex.com",
        "cy@acme.com",
    ]


def test_json_logs_give_one_object_per_line_for_every_event(project: Path) -> None:
    env = {
        "TWENTY_STATE_DIR": str(project / "state"),
        "TWENTY_SANDBOX": "1",
        "TWENTY_LOG_FORMAT": "json",
    }
    result = CliRunner().invoke(cli, ["run", str(project / "mappings" / "demo-job.yaml")], env=env)
    assert result.exit_code == 3, result.output
    lines = [json.loads(line) for line in result.stderr.splitlines()]  # every line is JSON
    events = [line.get("event") for line in lines]
    assert events.count("step_start") == 4 and events.count("step_end") == 4
    assert events.count("import_end") == 4 and events.count("batch") == 4
    [job_end] = [line for line in lines if line.get("event") == "job_end"]
    assert (job_end["exit_code"], job_end["finished"], job_end["failed"]) == (3, 4, 0)
    ends = {line["mapping"]: line for line in lines if line.get("event") == "import_end"}
    assert {m: (e["created"], e["rejected"]) for m, e in ends.items()} == {
        "companies": (7, 4),
        "people": (6, 6),
        "opportunities": (4, 3),
        "notes": (5, 1),
    }
    batch = next(line for line in lines if line.get("event") == "batch")
    assert (batch["object"], batch["rows"], batch["outcomes"]) == ("company", 7, {"created": 7})
    notices = [line["message"] for line in lines if line.get("event") == "notice"]
    assert notices[0].startswith("run demo: step companies: 4 rows rejected; see ")
