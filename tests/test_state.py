"""The state folder: one run at a time, a folder per mapping file, exact resumes.

Resumes are checked after what can change between two runs without changing the
file: the internal chunk size, and the workspace's data model (a select option added).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.config import Rate, Secret
from pipeline.errors import FatalApiError, InputError, StateError
from pipeline.lock import StateLocked, state_lock
from pipeline.mapping import load_mapping
from pipeline.runner import import_file, state_folder
from pipeline.sandbox import Sandbox
from pipeline.state import StateStore
from pipeline.twenty import TwentyClient
from tests.test_import import client_for, ledger, project, run_import, sandbox

__all__ = ["project", "sandbox"]  # fixtures shared with test_import

ROOT = Path(__file__).resolve().parent.parent


class FailAfter(httpx.AsyncBaseTransport):
    """The sandbox, until ``writes`` write calls went through; then 401 on every write."""

    def __init__(self, box: Sandbox, writes: int) -> None:
        self.inner = httpx.ASGITransport(app=box.app)
        self.left = writes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/graphql" and b"mutation" in request.content:
            if self.left <= 0:
                return httpx.Response(
                    401,
                    json={"statusCode": 401, "messages": ["gone"], "error": "UNAUTHENTICATED"},
                    request=request,
                )
            self.left -= 1
        return await self.inner.handle_async_request(request)


def failing_client(box: Sandbox, writes: int) -> TwentyClient:
    return TwentyClient(
        base_url="http://sandbox",
        api_key=Secret(box.api_key),
        rate=Rate(10_000, 1),
        transport=FailAfter(box, writes),
    )


def people_file(project: Path, n: int, tier: dict[int, str] | None = None) -> Path:
    source = project / "many.csv"
    lines = ["email,first,tier"]
    lines += [f"p{i}@x.io,P{i},{(tier or {}).get(i, '')}" for i in range(n)]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return source


def many_mapping(project: Path, with_tier: bool = False) -> Path:
    path = project / "mappings" / "many.yaml"
    tier = "  tier: tier\n" if with_tier else ""
    path.write_text(
        "version: 1\nobject: person\nkey: [emails.primaryEmail]\n"
        f"fields:\n  emails.primaryEmail: email\n  name.firstName: first\n{tier}",
        encoding="utf-8",
    )
    return path


async def interrupted_import(
    project: Path, box: Sandbox, mapping: Path, source: Path, writes: int, **kw: Any
) -> None:
    async with failing_client(box, writes) as client:
        with pytest.raises(FatalApiError):
            await import_file(
                load_mapping(mapping),
                client,
                state_dir=project / "state",
                source=source,
                concurrency=1,
                **kw,
            )


def stored_people(box: Sandbox) -> dict[str, dict[str, Any]]:
    page = box.engine.find_many(box.engine.object("person"), limit=500)
    return {p["emails"]["primaryEmail"]: p for p in page.records}


async def test_resume_after_the_chunk_size_changed_loads_every_row_once(
    project: Path, sandbox: Sandbox
) -> None:
    mapping, source = many_mapping(project), people_file(project, 95)
    await interrupted_import(project, sandbox, mapping, source, 4, batch_size=10, chunk_size=30)
    assert 0 < len(stored_people(sandbox)) < 95
    async with client_for(sandbox) as client:
        report = await import_file(
            load_mapping(mapping),
            client,
            state_dir=project / "state",
            source=source,
            batch_size=10,
            chunk_size=7,
        )
    assert report.resumed and (report.rows_read, report.loaded, report.rejected) == (95, 95, 0)
    assert sorted(stored_people(sandbox)) == sorted(f"p{i}@x.io" for i in range(95))
    success = ledger(project, "many", "success")
    assert sorted(int(r["_row"]) for r in success) == list(range(2, 97))
    assert len({r["id"] for r in success}) == 95


def add_option(box: Sandbox, object_name: str, field_name: str, value: str) -> None:
    """What a workspace admin does in Twenty's settings: one more option on a select."""
    engine = box.engine
    field = engine.object(object_name).field(field_name)
    assert field is not None
    dto = engine.field_dto_by_id(field.id)
    dto["options"].append(
        {"id": "opt-" + value, "value": value, "label": value.title(), "position": 9}
    )
    engine.db.execute("UPDATE fields SET dto = ? WHERE id = ?", (json.dumps(dto), field.id))
    engine.reload_metadata()  # the sandbox reads its data model again


async def test_resume_after_a_select_option_was_added_judges_rejects_again(
    project: Path, sandbox: Sandbox
) -> None:
    person = sandbox.engine.object("person")
    sandbox.engine.create_field(
        {
            "objectMetadataId": person.id,
            "name": "tier",
            "label": "Tier",
            "type": "SELECT",
            "options": [{"value": "GOLD", "label": "Gold"}, {"value": "SILVER", "label": "Silver"}],
        }
    )
    mapping = many_mapping(project, with_tier=True)
    source = people_file(project, 40, tier={3: "Bronze", 30: "Bronze", 5: "Gold"})
    await interrupted_import(project, sandbox, mapping, source, 1, batch_size=10)
    first = StateStore(project / "state" / "many" / "state.sqlite")
    assert first.counts()["rejected"] == 2  # Bronze is not an option yet
    first.close()
    add_option(sandbox, "person", "tier", "BRONZE")
    report = await run_import(project, sandbox, "many", source=source, batch_size=10)
    assert (report.rows_read, report.loaded, report.rejected) == (40, 40, 0)
    stored = stored_people(sandbox)
    assert (stored["p3@x.io"]["tier"], stored["p30@x.io"]["tier"]) == ("BRONZE", "BRONZE")
    assert stored["p5@x.io"]["tier"] == "GOLD"
    assert ledger(project, "many", "rejects") == []


async def test_refused_resume_names_what_changed(project: Path, sandbox: Sandbox) -> None:
    mapping, source = many_mapping(project), people_file(project, 30)
    await interrupted_import(project, sandbox, mapping, source, 1, batch_size=10)
    with pytest.raises(InputError, match=r"cannot resume: batch size 10 -> 20\."):
        await run_import(project, sandbox, "many", source=source, batch_size=20)
    mapping.write_text(mapping.read_text() + "  jobTitle: first\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"cannot resume: the mapping file changed\."):
        await run_import(project, sandbox, "many", source=source, batch_size=10)


async def test_mappings_with_one_file_name_keep_separate_state(
    project: Path, sandbox: Sandbox
) -> None:
    await run_import(project, sandbox, "companies")
    other = project / "other" / "companies.yaml"
    other.parent.mkdir()
    other.write_text((project / "mappings" / "companies.yaml").read_text(), encoding="utf-8")
    folder = state_folder(project / "state", load_mapping(other))
    assert folder.parent == project / "state" and folder.name.startswith("companies-")
    async with client_for(sandbox) as client:
        report = await import_file(
            load_mapping(other),
            client,
            state_dir=project / "state",
            source=project / "sample_data" / "companies.csv",
        )
    assert report.state_dir == str(folder) and not report.already_done
    # the first mapping's checkpoint is intact: it still answers "already imported"
    again = await run_import(project, sandbox, "companies")
    assert again.already_done and again.state_dir == str(project / "state" / "companies")


def test_a_second_run_on_one_state_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "state" / "people"
    with state_lock(folder, "an import of people.yaml"):
        refused = pytest.raises(StateLocked, match=r"already running \(pid \d+ on .* since ")
        with refused, state_lock(folder, "an import of people.yaml"):
            pass
        # another process is refused as well
        code = (
            "import sys; from pathlib import Path; from pipeline.lock import state_lock\n"
            "try:\n  with state_lock(Path(sys.argv[1]), 'x'): pass\n"
            "except Exception as e: print(type(e).__name__); sys.exit(1)\n"
        )
        other = subprocess.run(
            [sys.executable, "-c", code, str(folder)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=60,
        )
        assert (other.returncode, other.stdout.strip()) == (1, "StateLocked")
    with state_lock(folder, "again"):  # released at the end
        pass


async def test_concurrent_imports_of_one_mapping_one_is_refused(
    project: Path, sandbox: Sandbox
) -> None:
    mapping, source = many_mapping(project), people_file(project, 120)

    async def one() -> Any:
        async with client_for(sandbox) as client:
            return await import_file(
                load_mapping(mapping),
                client,
                state_dir=project / "state",
                source=source,
                batch_size=10,
            )

    results = await asyncio.gather(one(), one(), return_exceptions=True)
    refused = [r for r in results if isinstance(r, StateLocked)]
    done = [r for r in results if not isinstance(r, BaseException)]
    assert len(refused) == 1 and len(done) == 1
    assert done[0].created == 120 and len(stored_people(sandbox)) == 120


def invoke(project: Path, *args: str) -> Any:
    return CliRunner().invoke(
        cli, [*args, f"--sandbox={project / 'ws.sqlite'}", "--state-dir", str(project / "state")]
    )


@pytest.mark.parametrize("name", ["state.sqlite", "checkpoint.sqlite"])
def test_garbled_state_store_is_one_line_in_import_and_status(project: Path, name: str) -> None:
    folder = project / "state" / "companies"
    folder.mkdir(parents=True)
    (folder / name).write_bytes(b"SQLite format 3\x00" + b"\xff" * 300)
    result = invoke(project, "import", str(project / "mappings" / "companies.yaml"))
    assert result.exit_code == 1
    assert "cannot be read" in result.output and "--restart" in result.output
    assert "Traceback" not in result.output
    status = CliRunner().invoke(cli, ["status", "companies", "--state-dir", str(project / "state")])
    assert status.exit_code == 1 and "cannot be read" in status.output
    fresh = invoke(project, "import", str(project / "mappings" / "companies.yaml"), "--restart")
    assert fresh.exit_code == 3, fresh.output  # the samples hold rejected rows


def test_state_store_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    StateStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StateError, match=r"state schema 99, this one reads 2\)"):
        StateStore(path)


def test_checkpoint_of_the_older_version_is_refused_then_set_aside(project: Path) -> None:
    folder = project / "state" / "companies"
    folder.mkdir(parents=True)
    with sqlite3.connect(folder / "checkpoint.sqlite") as db:  # what version 1 wrote
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('version', '1')")
    result = invoke(project, "import", str(project / "mappings" / "companies.yaml"))
    assert result.exit_code == 1
    assert " ".join(result.output.split()) == (
        f"Error: the state store {folder / 'checkpoint.sqlite'} was written by another "
        "version of twenty-pipeline (state schema 1, this one reads 2); finish its run with "
        "that version, or pass --restart to set it aside and start over (records already "
        "loaded are updated, not duplicated)"
    )
    fresh = invoke(project, "import", str(project / "mappings" / "companies.yaml"), "--restart")
    assert fresh.exit_code == 3, fresh.output
    assert not (folder / "checkpoint.sqlite").exists()
    [aside] = folder.glob("checkpoint.sqlite.set-aside-*")
    assert sqlite3.connect(aside).execute("SELECT value FROM meta").fetchone() == ("1",)


@pytest.mark.parametrize("state_dir", ["/dev/null/x", "/proc/version/state"])
def test_unusable_state_folder_is_one_line(project: Path, state_dir: str) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "import",
            str(project / "mappings" / "companies.yaml"),
            f"--sandbox={project / 'ws.sqlite'}",
            "--state-dir",
            state_dir,
        ],
    )
    assert result.exit_code == 1, result.output
    assert "cannot use the state folder" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_exit_3_prints_one_line_on_stderr(project: Path) -> None:
    result = invoke(project, "import", str(project / "mappings" / "companies.yaml"))
    assert result.exit_code == 3
    folder = project / "state" / "companies"
    assert result.stderr == f"import companies: 4 rows rejected; see {folder / 'rejects.csv'}\n"
    status = CliRunner().invoke(cli, ["status", "companies", "--state-dir", str(project / "state")])
    assert "re-sent on resume" not in status.output
    assert "batches: 1 done" in status.output
