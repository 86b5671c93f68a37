"""``plan`` and the plan options on the command line, on the in-process sandbox."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.sandbox import Sandbox, SandboxOptions
from pipeline.sandbox.duplicates import find_duplicates

ROOT = Path(__file__).resolve().parent.parent


def project(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    shutil.copytree(ROOT / "sample_data", tmp_path / "sample_data")
    return tmp_path


def invoke(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    db = tmp_path / "ws.sqlite"
    state = tmp_path / "state"
    result = CliRunner().invoke(
        cli, [*args, "--state-dir", str(state), f"--sandbox={db}", "--quiet"]
    )
    return result.exit_code, result.stdout, result.stderr


def test_plan_of_the_samples_counts_the_rejects_and_writes_nothing(tmp_path: Path) -> None:
    root = project(tmp_path)
    code, _, _ = invoke(tmp_path, "import", str(root / "mappings" / "companies.yaml"))
    assert code == 3
    code, out, err = invoke(tmp_path, "plan", str(root / "mappings" / "people.yaml"), "--json")
    assert code == 3
    plan = json.loads(out)
    # rows 5 and 13 look up companies that are not there: rejected at load, as import does
    assert (plan["create"], plan["update"], plan["rejected"], plan["write_calls"]) == (6, 0, 6, 0)
    assert "at least 2 read calls" in err and "no write call" in err
    box = Sandbox(tmp_path / "ws.sqlite")
    try:
        assert box.engine.count_records(box.engine.object("person")) == 0
    finally:
        box.close()
    code, out, _ = invoke(tmp_path, "import", str(root / "mappings" / "people.yaml"))
    assert "created            6" in out


def test_plan_of_a_job_plans_every_step_in_order(tmp_path: Path) -> None:
    root = project(tmp_path)
    code, out, _ = invoke(tmp_path, "plan", str(root / "mappings" / "demo-job.yaml"), "--yes")
    assert code == 3
    objects = [line.split(" -> ")[1].split(":")[0] for line in out.splitlines() if " -> " in line]
    assert objects == ["company", "person", "opportunity", "note"]
    assert (tmp_path / "state" / "demo" / "people" / "plan.csv").exists()


def test_unknown_keep_existing_field_is_one_line(tmp_path: Path) -> None:
    root = project(tmp_path)
    code, _, err = invoke(
        tmp_path, "import", str(root / "mappings" / "people.yaml"), "--keep-existing", "jobTitel"
    )
    assert code == 2
    assert err == "Error: --keep-existing: person has no field 'jobTitel'\n"


def test_a_job_plan_refuses_a_source(tmp_path: Path) -> None:
    root = project(tmp_path)
    job = str(root / "mappings" / "demo-job.yaml")
    code, _, err = invoke(tmp_path, "plan", job, str(root / "sample_data" / "people.csv"))
    assert code == 2
    assert err.endswith("a job names its sources; SOURCE is for a mapping\n")
    assert err.count("\n") == 1


async def test_sandbox_duplicates_route_follows_twenty(tmp_path: Path) -> None:
    box = Sandbox(tmp_path / "ws.sqlite", SandboxOptions(throttle=False))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=box.app),
            base_url="http://sandbox",
            headers={"Authorization": f"Bearer {box.api_key}"},
        ) as http:
            made = await http.post(
                "/rest/batch/people",
                json=[
                    {
                        "name": {"firstName": "Ada", "lastName": "Lovelace"},
                        "emails": {"primaryEmail": "ada@x.io"},
                    },
                    {
                        "name": {"firstName": "Alan", "lastName": "Turing"},
                        "linkedinLink": {"primaryLinkUrl": "https://linkedin.com/in/turing"},
                    },
                ],
            )
            ada, alan = (r["id"] for r in made.json()["data"]["createPeople"])
            answer = await http.post(
                "/rest/people/duplicates",
                json={
                    "data": [
                        {"name": {"firstName": "Ada", "lastName": "Lovelace"}},
                        {"name": {"firstName": "Ada"}},
                        {"linkedinLink": {"primaryLinkUrl": "https://LinkedIn.com/in/turing/"}},
                        {"emails": {"primaryEmail": "ADA@x.io"}},
                    ]
                },
            )
            assert answer.status_code == 200
            found = [[r["id"] for r in c["personDuplicates"]] for c in answer.json()["data"]]
            assert found == [[ada], [], [alan], [ada]]
            assert answer.json()["data"][0]["totalCount"] == 1
            by_id = await http.post("/rest/people/duplicates", json={"ids": [ada]})
            assert by_id.json()["data"][0]["personDuplicates"] == []  # not itself
            bad = await http.post("/rest/people/duplicates", json={})
            assert bad.status_code == 400
            assert bad.json()["messages"] == ["You have to provide either 'data' or 'ids' argument"]
        companies = find_duplicates(box.engine, box.engine.object("company"), {"data": [{}]})
        assert companies[0]["companyDuplicates"] == []
    finally:
        box.close()
