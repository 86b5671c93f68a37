"""Shared fixtures: hermetic environment, fast clients over mock transports."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from pipeline.client import TwentyClient
from pipeline.config import Rate, Secret

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
