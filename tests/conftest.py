"""Shared fixtures: hermetic environment, fast clients over mock transports."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.config import Rate, Secret
from pipeline.twenty import TwentyClient

FAST_RATE = Rate(1000, 1.0)  # 1 ms between calls: pacing stays real but tests stay quick


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No TWENTY_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("TWENTY_"):
            monkeypatch.delenv(name)
    yield


class SleepRecorder:
    """Stands in for asyncio.sleep: records back-off delays, waits for nothing."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def make_client(sleeps: SleepRecorder) -> Callable[..., TwentyClient]:
    """Build a client whose network is ``handler`` (an httpx.MockTransport function)."""

    def build(handler: Callable[[httpx.Request], httpx.Response], **kw: Any) -> TwentyClient:
        options: dict[str, Any] = {
            "base_url": "https://crm.example.com",
            "api_key": Secret("sk-test-123"),
            "key_source": "TWENTY_API_KEY",
            "rate": FAST_RATE,
            "sleep": sleeps,
        }
        options.update(kw)
        return TwentyClient(transport=httpx.MockTransport(handler), **options)

    return build


@dataclass
class Served:
    url: str
    key: str
    db: Path
    process: subprocess.Popen[str]

    def count(self, object_name: str) -> int:
        with sqlite3.connect(self.db) as db:
            row = db.execute("SELECT COUNT(*) FROM records WHERE object = ?", (object_name,))
            return int(row.fetchone()[0])


def start_sandbox(db: Path, *extra: str) -> Served:
    """``sandbox serve --port 0`` on ``db`` (log next to it, ``.log``), once it answers."""
    log = db.with_suffix(".log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "sandbox",
            "serve",
            "--port",
            "0",
            "--db",
            str(db),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log.close()
    try:
        assert process.stdout is not None
        banner = [process.stdout.readline() for _ in range(3)]
        if not banner[2].strip():
            raise AssertionError(f"sandbox did not start: {banner}")
        url = banner[1].strip().split("=", 1)[1]
        key = banner[2].strip().split("=", 1)[1]
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise AssertionError(f"sandbox did not start: {banner}")
            time.sleep(0.05)
    except BaseException:
        stop_sandbox(process)
        raise
    return Served(url, key, db, process)


def stop_sandbox(process: subprocess.Popen[str]) -> None:
    """Stop one served sandbox by its process id: SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[subprocess.Popen[str]] = []

    def start(*extra: str) -> Served:
        served = start_sandbox(tmp_path / f"served{len(started)}.sqlite", *extra)
        started.append(served.process)
        return served

    yield start
    for process in started:
        stop_sandbox(process)
