"""Fixtures for the sandbox contract tests: raw httpx calls, as any Twenty client makes them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.sandbox import Sandbox, SandboxOptions


class FakeClock:
    """Milliseconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, ms: float) -> None:
        self.now += ms


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_sandbox(tmp_path: Path, clock: FakeClock) -> Callable[..., Sandbox]:
    """A sandbox on a temporary file; the token bucket is off unless ``throttle=True``."""
    made: list[Sandbox] = []

    def build(**options: Any) -> Sandbox:
        options.setdefault("throttle", False)
        sandbox = Sandbox(
            tmp_path / f"ws{len(made)}.sqlite", SandboxOptions(**options), clock_ms=clock
        )
        made.append(sandbox)
        return sandbox

    yield build  # type: ignore[misc]
    for sandbox in made:
        sandbox.close()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return make_sandbox()


def client_for(sandbox: Sandbox, token: str | None = "default") -> httpx.AsyncClient:
    headers = {}
    if token == "default":
        token = sandbox.api_key
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sandbox.app), base_url="http://sandbox", headers=headers
    )


@pytest.fixture
async def api(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(sandbox) as client:
        yield client


async def gql(client: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body
