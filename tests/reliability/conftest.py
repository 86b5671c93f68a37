"""Shared pieces of the reliability suite: the job, the clean reference, read-back, kills.

The job is the notes file of tests/test_resilience.py (240 rows, derived ids: a create
sent twice would show as a second note). A run is judged against a clean run's
workspace, read back through the sandbox's REST API field by field, and against its
own ledgers.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Served, start_sandbox, stop_sandbox
from tests.test_resilience import ROWS, check_ledgers, command, environment, run_cli

__all__ = ["ROWS", "check_ledgers", "command", "environment", "run_cli"]

RATE = "2000/1"
SERVER_SET = {"createdAt", "updatedAt", "position"}  # the server's own, different every run
"""Fields a run does not decide; every other field of every record is compared."""


def write_job(folder: Path) -> tuple[Path, Path]:
    """The notes job of tests/test_resilience.py, written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "notes.csv"
    lines = ["title,body"] + [f"Note {i:04d},Body of note {i}" for i in range(ROWS)]
    lines.insert(50, "")  # a blank line, skipped
    source.write_text("\n".join(lines) + "\n")
    mapping = folder / "notes.yaml"
    mapping.write_text(
        "version: 1\nobject: note\nkey: [title]\nfields:\n  title: title\n  bodyV2.markdown: body\n"
    )
    return mapping, source


@pytest.fixture
def job(tmp_path: Path) -> tuple[Path, Path]:
    return write_job(tmp_path / "job")


def read_back(served: Served, plural: str = "notes") -> list[dict[str, Any]]:
    """Every live record of ``plural``, page by page through GET /rest/{plural}."""
    records: list[dict[str, Any]] = []
    params: dict[str, str] = {"limit": "200"}
    headers = {"Authorization": f"Bearer {served.key}"}
    with httpx.Client(base_url=served.url, headers=headers, timeout=30) as http:
        while True:
            answer = http.get(f"/rest/{plural}", params=params)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            records += body["data"][plural]
            if not body["pageInfo"]["hasNextPage"]:
                return records
            params["starting_after"] = body["pageInfo"]["endCursor"]


def comparable(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Records by id, without the fields the server sets on its own."""
    out = {}
    for record in records:
        assert record["id"] not in out, f"id {record['id']} listed twice"
        out[record["id"]] = {k: v for k, v in record.items() if k not in SERVER_SET}
    return out


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The workspace a clean, uninterrupted import of the job leaves, read back."""
    folder = tmp_path_factory.mktemp("reference")
    mapping, source = write_job(folder)
    served = start_sandbox(folder / "clean.sqlite", "--no-throttle")
    try:
        done = run_cli(mapping, source, folder / "state", environment(served), RATE)
        assert done.returncode == 0, done.stderr
        records = comparable(read_back(served))
    finally:
        stop_sandbox(served.process)
    assert len(records) == ROWS
    return records


def assert_exact(served: Served, state: Path, reference: dict[str, dict[str, Any]]) -> None:
    """The workspace is the clean run's, field by field; the ledgers agree with it."""
    records = read_back(served)
    titles = Counter(r["title"] for r in records)
    assert [t for t, n in titles.items() if n > 1] == []  # no two records with one key
    got = comparable(records)
    assert set(got) == set(reference)
    wrong = [(i, got[i], reference[i]) for i in reference if got[i] != reference[i]]
    assert wrong == []
    check_ledgers(state, ROWS)  # every source row exactly once, in success or rejects
    with (state / "notes" / "success.csv").open(newline="") as handle:
        success = list(csv.DictReader(handle))
    assert {r["id"] for r in success} == set(reference)
    assert {r["key"] for r in success} == {r["title"] for r in reference.values()}


# --------------------------------------------------------------------------- kills


class Trace:
    """Reads the lines a served sandbox's ``--trace`` file gains, as they come."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.last = 0
        """The highest call number seen so far."""

    def new_events(self) -> list[tuple[str, int, str]]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        events = []
        for line in complete.decode().splitlines():
            event, number, _method, path = line.split(" ", 3)
            events.append((event, int(number), path))
        return events


MOMENTS = ("before-send", "in-flight", "applied-unanswered", "checkpoint-commit")


@dataclass
class Kill:
    moment: str
    count: int
    killed: bool = False


def plan(rng: random.Random, kills: int, first: int = 0) -> list[Kill]:
    """``kills`` moments, every kind in turn from ``first``, after a seeded event count."""
    return [Kill(MOMENTS[(first + i) % len(MOMENTS)], rng.randint(1, 6)) for i in range(kills)]


def _wal_size(checkpoint: Path) -> tuple[int, int]:
    """The WAL's size and modification time: it changes on every commit.

    The size alone does not: once every frame is checkpointed, SQLite writes the
    next transaction from the start of the WAL again.
    """
    wal = checkpoint.with_name(checkpoint.name + "-wal")
    try:
        stat = wal.stat()
    except FileNotFoundError:
        return (-1, 0)
    return (stat.st_size, stat.st_mtime_ns)


def run_and_kill(
    argv: list[str], env: dict[str, str], trace: Trace, checkpoint: Path, kill: Kill
) -> int | None:
    """Start the CLI and SIGKILL it at ``kill``'s moment; its exit code if it ended first.

    before-send: the run has opened its checkpoint and sent no write yet.
    in-flight: the ``count``-th call of this run has reached the server.
    applied-unanswered: the server applied the ``count``-th call; its answer is held
    back by the latency.
    checkpoint-commit: the ``count``-th answer has gone out and the checkpoint's WAL
    has just changed (the run is recording that batch).
    """
    time.sleep(0.2)  # calls a killed run sent have reached the server and been answered
    base = max((number for _, number, _ in trace.new_events()), default=trace.last)
    trace.last = base
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        calls: dict[str, set[int]] = {"arrive": set(), "applied": set(), "answered": set()}
        wal = _wal_size(checkpoint)
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            for event, number, _path in trace.new_events():
                trace.last = max(trace.last, number)
                if number > base and event in calls:  # a call of this run
                    calls[event].add(number)
            fire = False
            if kill.moment == "before-send":
                if calls["arrive"]:
                    return process.wait(timeout=120)  # too late: this one is not killed
                fire = _wal_size(checkpoint) != wal  # the run has written its checkpoint
            elif kill.moment == "in-flight":
                fire = len(calls["arrive"]) >= kill.count
            elif kill.moment == "applied-unanswered":
                fire = len(calls["applied"]) >= kill.count and bool(
                    calls["applied"] - calls["answered"]
                )
            elif len(calls["answered"]) >= kill.count:
                size = _wal_size(checkpoint)
                fire = size != wal
                wal = size
            else:
                wal = _wal_size(checkpoint)
            if fire:
                os.kill(process.pid, signal.SIGKILL)
                kill.killed = True
                process.wait(timeout=30)
                return None
            time.sleep(0.001)
        return process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def faults_met(trace: Path) -> Counter[str]:
    """How many faults of each kind a served sandbox's trace records."""
    if not trace.exists():
        return Counter()
    events = (line.split(" ", 1)[0] for line in trace.read_text().splitlines())
    return Counter(e.removeprefix("fault:") for e in events if e.startswith("fault:"))


class Servers:
    """Sandboxes served on loopback ports, each stopped by its pid in teardown."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[Served] = []

    def start(self, db: Path, *extra: str) -> Served:
        served = start_sandbox(db, *extra)
        self.started.append(served)
        return served

    def stop(self, served: Served) -> None:
        stop_sandbox(served.process)

    def stop_all(self) -> None:
        for served in self.started:
            stop_sandbox(served.process)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    made = Servers(tmp_path)
    yield made
    made.stop_all()


def assert_ledger_true(served: Served, state: Path) -> None:
    """What success.csv says is stored is stored: its id holds the record of its key."""
    path = state / "notes" / "success.csv"
    if not path.exists():
        return
    with path.open(newline="") as handle:
        success = list(csv.DictReader(handle))
    stored = {r["id"]: r["title"] for r in read_back(served)}
    wrong = [r for r in success if stored.get(r["id"]) != r["key"]]
    assert wrong == [], f"{len(wrong)} ledger rows name a record that is not theirs"
    rows = [r["_row"] for r in success]
    assert len(rows) == len(set(rows))
