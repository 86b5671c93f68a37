"""One run per state folder: waiting for the holder, and saying who it is."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.lock import StateLocked, describe_holder, state_lock

ROOT = Path(__file__).resolve().parent.parent

HOLD = (
    "import sys, time; from pathlib import Path; from pipeline.lock import state_lock\n"
    "with state_lock(Path(sys.argv[1]), 'x'):\n"
    "    print('held', flush=True); time.sleep(float(sys.argv[2]))\n"
)


@contextmanager
def holder(folder: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the folder's lock for ``seconds`` (killed at the end)."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        yield process
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_wait_takes_the_lock_once_the_holder_is_done(tmp_path: Path) -> None:
    folder = tmp_path / "people"
    with holder(folder, 1.0):
        started = time.monotonic()
        with state_lock(folder, "an import", wait=30):
            assert time.monotonic() - started > 0.5  # it waited for the holder
            assert f"pid {os.getpid()} " in (folder / "lock").read_text()


def test_a_wait_that_runs_out_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "people"
    with (
        holder(folder, 30) as process,
        pytest.raises(StateLocked, match=rf"pid {process.pid} .* after waiting 0.3s"),
        state_lock(folder, "an import", wait=0.3),
    ):
        pass


def test_a_holder_elsewhere_or_gone_is_explained() -> None:
    here = socket.gethostname()
    assert describe_holder("") == "another process"
    assert describe_holder(f"pid {os.getpid()} on {here} since 2026-12-03 06:00:00") == (
        f"pid {os.getpid()} on {here} since 2026-12-03 06:00:00"
    )
    elsewhere = describe_holder("pid 12 on batch-7 since 2026-12-03 06:00:00")
    assert elsewhere.endswith(
        "another machine sharing this folder; the lock ends when that run does"
    )
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    gone = describe_holder(f"pid {ended.stdout.strip()} on {here} since 2026-12-03 06:00:00")
    assert gone.endswith("that process has ended, a process it started still holds the lock")


def test_cli_run_waits_or_refuses(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    (tmp_path / "p.csv").write_text("email\na@x.io\n", encoding="utf-8")
    (tmp_path / "people.yaml").write_text(
        "version: 1\nobject: person\nsource: {path: p.csv}\nkey: [emails.primaryEmail]\n"
        "fields:\n  emails.primaryEmail: email\n",
        encoding="utf-8",
    )
    job.write_text("version: 1\nname: nightly\nsteps: [people.yaml]\n", encoding="utf-8")
    env = {
        "TWENTY_STATE_DIR": str(tmp_path / "state"),
        "TWENTY_SANDBOX": str(tmp_path / "ws.sqlite"),
    }
    with holder(tmp_path / "state" / "nightly", 30) as process:
        refused = CliRunner().invoke(cli, ["run", str(job)], env=env)
        assert refused.exit_code == 1
        assert f"the job {job} is already running (pid {process.pid} " in refused.output
    done = CliRunner().invoke(cli, ["run", str(job), "--wait", "5"], env=env)
    assert done.exit_code == 0, done.output
