"""The state store across runs: keys kept, every run's ledgers kept, runs recorded."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.mapping import load_mapping
from pipeline.runner import import_file
from pipeline.sandbox import Sandbox
from pipeline.state import RowOutcome, RunFingerprint, StateStore, content_hash
from tests.test_import import client_for, ledger, project, sandbox
from tests.test_state import interrupted_import, many_mapping, stored_people

__all__ = ["project", "sandbox"]


def people(project: Path, name: str, rows: dict[str, str]) -> Path:
    source = project / name
    lines = ["email,first"] + [f"{email},{first}" for email, first in rows.items()]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return source


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


async def run(project: Path, box: Sandbox, mapping: Path, source: Path, **kw: Any) -> None:
    async with client_for(box) as client:
        await import_file(
            load_mapping(mapping), client, state_dir=project / "state", source=source, **kw
        )


async def test_two_runs_of_two_files_keep_both_runs_ledgers_and_every_key(
    project: Path, sandbox: Sandbox
) -> None:
    mapping = many_mapping(project)
    monday = people(project, "monday.csv", {"a@x.io": "Ann", "b@x.io": "Bob"})
    tuesday = people(project, "tuesday.csv", {"b@x.io": "Bobby", "c@x.io": "Cy", "bad": "X"})
    await run(project, sandbox, mapping, monday)
    await run(project, sandbox, mapping, tuesday)

    folder = project / "state" / "many"
    first, second = folder / "runs" / "0001", folder / "runs" / "0002"
    assert [(r["key"], r["outcome"]) for r in read_csv(first / "success.csv")] == [
        ("a@x.io", "created"),
        ("b@x.io", "created"),
    ]
    assert read_csv(first / "rejects.csv") == []
    assert [(r["key"], r["outcome"]) for r in read_csv(second / "success.csv")] == [
        ("b@x.io", "updated"),
        ("c@x.io", "created"),
    ]
    [reject] = read_csv(second / "rejects.csv")
    assert (reject["_row"], reject["email"]) == ("4", "bad")
    # the top of the state folder holds the latest run's ledgers
    assert ledger(project, "many", "success") == read_csv(second / "success.csv")
    assert (folder / "report.json").read_text() == (second / "report.json").read_text()

    stored = stored_people(sandbox)
    with StateStore(folder / "state.sqlite") as store:
        assert [(r.id, r.status, Path(r.source).name) for r in store.runs()] == [
            (1, "finished", "monday.csv"),
            (2, "finished", "tuesday.csv"),
        ]
        for email, last_run in (("a@x.io", 1), ("b@x.io", 2), ("c@x.io", 2)):
            known = store.key_state(email)
            assert known is not None
            assert (known.record_id, known.last_run, known.deleted) == (
                stored[email]["id"],
                last_run,
                False,
            )
        assert store.key_state("bad") is None and store.key_count() == 3


async def test_the_confirmed_content_hash_follows_what_was_sent(
    project: Path, sandbox: Sandbox
) -> None:
    mapping = many_mapping(project)
    await run(project, sandbox, mapping, people(project, "one.csv", {"a@x.io": "Ann"}))
    store_path = project / "state" / "many" / "state.sqlite"
    with StateStore(store_path) as store:
        before = store.key_state("a@x.io")
    await run(project, sandbox, mapping, people(project, "two.csv", {"a@x.io": "Anna"}))
    await run(
        project, sandbox, mapping, people(project, "three.csv", {"a@x.io": "Anna", "b@x.io": "B"})
    )
    with StateStore(store_path) as store:
        after = store.key_state("a@x.io")
        runs = store.runs()
    assert before is not None and after is not None
    assert before.record_id == after.record_id
    assert before.content_hash != after.content_hash  # Ann -> Anna
    assert after.last_run == 3 and len(runs) == 3
    # the second and third files send the same record for a@x.io: one hash
    with sqlite3.connect(store_path) as db:
        hashes = db.execute("SELECT key, content_hash FROM keys ORDER BY key").fetchall()
    assert hashes[0] == ("a@x.io", after.content_hash) and len(hashes) == 2


async def test_an_interrupted_run_resumes_as_the_same_run_with_one_more_attempt(
    project: Path, sandbox: Sandbox
) -> None:
    mapping = many_mapping(project)
    source = people(project, "many.csv", {f"p{i}@x.io": f"P{i}" for i in range(30)})
    await interrupted_import(project, sandbox, mapping, source, 1, batch_size=10)
    await run(project, sandbox, mapping, source, batch_size=10)
    with StateStore(project / "state" / "many" / "state.sqlite") as store:
        [only] = store.runs()
        assert (only.status, only.attempts, only.rows_read) == ("finished", 2, 30)
        assert store.key_count() == 30
    assert len(stored_people(sandbox)) == 30


async def test_restart_abandons_the_unfinished_run_and_keeps_its_ledgers_apart(
    project: Path, sandbox: Sandbox
) -> None:
    mapping = many_mapping(project)
    source = people(project, "many.csv", {f"p{i}@x.io": f"P{i}" for i in range(30)})
    await interrupted_import(project, sandbox, mapping, source, 1, batch_size=10)
    async with client_for(sandbox) as client:
        report = await import_file(
            load_mapping(mapping),
            client,
            state_dir=project / "state",
            source=source,
            restart=True,
            batch_size=10,
        )
    assert (report.resumed, report.loaded) == (False, 30)
    with StateStore(project / "state" / "many" / "state.sqlite") as store:
        assert [r.status for r in store.runs()] == ["abandoned", "finished"]
    assert len(read_csv(project / "state" / "many" / "runs" / "0002" / "success.csv")) == 30


def test_lookup_cache_is_per_run(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.sqlite") as store:
        store.begin_run(RunFingerprint("m", "s", {}), mapping="m", source="s", object_name="o")
        store.save_lookups("company", "name", {"Acme": "id-1", "Gone": None})
        assert store.lookup_cache("company", "name") == {"Acme": "id-1", "Gone": None}
        store.end_run("finished")
        store.begin_run(RunFingerprint("m", "t", {}), mapping="m", source="t", object_name="o")
        # an id resolved by an earlier run is asked again, never trusted
        assert store.lookup_cache("company", "name") == {}


def test_a_batch_is_recorded_with_its_keys_before_the_call(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.sqlite") as store:
        store.begin_run(RunFingerprint("m", "s", {}), mapping="m", source="s", object_name="o")
        store.mark_sent(0, [2, 3], ["a@x.io", "b@x.io"])
        with sqlite3.connect(tmp_path / "state.sqlite") as db:
            assert db.execute("SELECT row, key FROM batch_keys ORDER BY row").fetchall() == [
                (2, "a@x.io"),
                (3, "b@x.io"),
            ]
        assert store.key_count() == 0  # nothing is known before the workspace answers
        payload = {"name": {"firstName": "Ann"}}
        store.mark_done(
            0,
            [
                RowOutcome(2, "created", "a@x.io", "id-a", content_hash=content_hash(payload)),
                RowOutcome(3, "rejected", "b@x.io", stage="load", reason="refused"),
            ],
        )
        assert store.batch_counts() == {"done": 1} and store.key_count() == 1


def test_status_shows_runs_and_keys(project: Path) -> None:
    runner = CliRunner()
    args = [f"--sandbox={project / 'ws.sqlite'}", "--state-dir", str(project / "state")]
    first = runner.invoke(cli, ["import", str(project / "mappings" / "companies.yaml"), *args])
    assert first.exit_code == 3, first.output
    status = runner.invoke(cli, ["status", "companies", "--state-dir", str(project / "state")])
    assert status.exit_code == 0, status.output
    lines = status.output.splitlines()
    assert lines[0].startswith("companies: complete - ")
    assert lines[1] == "  runs: 1 (last: #1, 1 attempt(s)); keys confirmed across runs: 7"
    assert lines[3] == "  rows: 7 created, 4 rejected"


def test_a_store_whose_creation_was_cut_short_is_created_again(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    with sqlite3.connect(path) as db:  # killed after the first table of an older creation
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    with StateStore(path) as store:
        assert store.last_run() is None and store.key_count() == 0
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta").fetchall() == [("2",)]
