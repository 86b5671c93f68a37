"""The CLI as a subprocess against a served sandbox: kill -9, injected faults, 429 storms.

Each case ends with the exact workspace a clean run leaves: every row once, no
duplicate (the notes use derived ids, so a re-sent create would show as a second
note), and ledgers that add up.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Served

ROWS = 240


@pytest.fixture
def job(tmp_path: Path) -> tuple[Path, Path]:
    """A note file (derived ids: key is the title) and its mapping."""
    source = tmp_path / "notes.csv"
    lines = ["title,body"] + [f"Note {i:04d},Body of note {i}" for i in range(ROWS)]
    lines.insert(50, "")  # a blank line, skipped
    source.write_text("\n".join(lines) + "\n")
    mapping = tmp_path / "notes.yaml"
    mapping.write_text(
        "version: 1\nobject: note\nkey: [title]\nfields:\n  title: title\n  bodyV2.markdown: body\n"
    )
    return mapping, source


def command(mapping: Path, source: Path, state: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipeline",
        "import",
        str(mapping),
        str(source),
        "--state-dir",
        str(state),
        "--batch-size",
        "8",
        "--concurrency",
        "3",
        "--quiet",
        *extra,
    ]


def environment(served: Served) -> dict[str, str]:
    return {**os.environ, "TWENTY_API_URL": served.url, "TWENTY_API_KEY": served.key}


def titles(served: Served) -> Counter[str]:
    with sqlite3.connect(served.db) as db:
        rows = db.execute(
            "SELECT json_extract(data, '$.title') FROM records "
            "WHERE object = 'note' AND deleted = 0"
        ).fetchall()
    return Counter(r[0] for r in rows)


def check_ledgers(state: Path, expected_rows: int) -> None:
    folder = state / "notes"
    with (folder / "success.csv").open(newline="") as handle:
        success = list(csv.DictReader(handle))
    with (folder / "rejects.csv").open(newline="") as handle:
        rejects = list(csv.DictReader(handle))
    rows = [int(r["_row"]) for r in success + rejects]
    assert len(rows) == len(set(rows)) == expected_rows
    report = json.loads((folder / "report.json").read_text())
    assert report["rows"]["read"] == expected_rows
    assert report["rows"]["loaded"] + report["rows"]["rejected"] == expected_rows


def assert_clean_state(served: Served, state: Path) -> None:
    got = titles(served)
    assert len(got) == ROWS
    assert max(got.values()) == 1  # no duplicate
    assert set(got) == {f"Note {i:04d}" for i in range(ROWS)}
    check_ledgers(state, ROWS)


def wait_for_done_batches(checkpoint: Path, count: int, timeout: float = 60) -> None:
    """Block until the checkpoint records ``count`` confirmed batches (the run is loading)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if checkpoint.exists():
            try:
                with sqlite3.connect(checkpoint) as db:
                    row = db.execute("SELECT COUNT(*) FROM batches WHERE status = 'done'")
                    if row.fetchone()[0] >= count:
                        return
            except sqlite3.OperationalError:
                pass  # the run has not created its tables yet
        time.sleep(0.05)
    raise AssertionError(f"no {count} confirmed batches in {checkpoint} after {timeout}s")


def run_cli(
    mapping: Path,
    source: Path,
    state: Path,
    env: dict[str, str],
    rate: str,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """One import run of the CLI, to its end (however that end comes)."""
    return subprocess.run(
        command(mapping, source, state, "--rate", rate),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def import_to_the_end(
    served: Served, job: tuple[Path, Path], state: Path, rate: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """One uninterrupted import; it must succeed and leave the clean state."""
    mapping, source = job
    done = run_cli(mapping, source, state, environment(served), rate, timeout=180)
    assert done.returncode == 0, done.stderr
    assert_clean_state(served, state)
    return done, json.loads((state / "notes" / "report.json").read_text())


def test_kill_9_at_several_moments_then_resume(
    serve: Callable[..., Served], job: tuple[Path, Path], tmp_path: Path
) -> None:
    served = serve("--no-throttle", "--latency", "15:40", "--seed", "11")
    mapping, source = job
    state = tmp_path / "state"
    env = environment(served)
    kills = 0
    for delay in (0.6, 0.9, 1.2, 1.5):
        process = subprocess.Popen(
            command(mapping, source, state, "--rate", "2000/1"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(delay)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            kills += 1
        process.wait(timeout=30)
        assert process.stderr is not None
        process.stderr.close()
    assert kills >= 1, "the import finished before any kill: make the job longer"
    for _ in range(5):
        done = run_cli(mapping, source, state, env, "2000/1")
        if done.returncode in (0, 3):
            break
    assert done.returncode == 0, done.stderr
    assert_clean_state(served, state)


def test_injected_faults_end_in_the_exact_state(
    serve: Callable[..., Served], job: tuple[Path, Path], tmp_path: Path
) -> None:
    served = serve(
        "--no-throttle",
        "--error-rate",
        "0.1",
        "--reset-rate",
        "0.1",
        "--drop-after-apply-rate",
        "0.1",
        "--seed",
        "5",
    )
    state = tmp_path / "state"
    _, report = import_to_the_end(served, job, state, "2000/1")
    assert report["calls"]["retries"] > 0


@pytest.mark.parametrize("profile", ["legacy", "newest"])
def test_429_storm_in_both_shapes(
    serve: Callable[..., Served], job: tuple[Path, Path], tmp_path: Path, profile: str
) -> None:
    # the workspace allows 20 calls a second; the client is told it may make 200
    served = serve("--profile", profile, "--rate", "20/1")
    state = tmp_path / "state"
    done, report = import_to_the_end(served, job, state, "200/1")
    assert report["calls"]["rate_limited"] > 0
    assert "rate limited" in done.stderr  # the retries are logged


def test_sigterm_flushes_and_exits_130(
    serve: Callable[..., Served], job: tuple[Path, Path], tmp_path: Path
) -> None:
    served = serve("--no-throttle", "--latency", "30:60")
    mapping, source = job
    state = tmp_path / "state"
    env = environment(served)
    process = subprocess.Popen(
        command(mapping, source, state, "--rate", "2000/1"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_done_batches(state / "notes" / "state.sqlite", 2)
    os.kill(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "run the same command again to resume" in err
    done = run_cli(mapping, source, state, env, "2000/1")
    assert done.returncode == 0, done.stderr
    assert "resuming notes:" in done.stderr
    assert_clean_state(served, state)
