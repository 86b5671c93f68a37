"""The client asks the workspace which rate-limit bucket it has before counted calls.

Twenty's ``currentWorkspace { featureFlags }`` answers an API key and spends no
token; ``IS_API_RATE_LIMIT_V2_ENABLED`` says the usage-limit engine (fractions kept)
counts the calls, its absence or ``false`` the legacy throttler. The probe is a
hint: a server that cannot answer leaves the pacer on its default, never a failure.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.config import Secret
from pipeline.sandbox import Sandbox, SandboxOptions
from pipeline.schema import load_schema
from pipeline.twenty import TwentyClient
from pipeline.twenty.bucket_probe import RATE_LIMIT_V2_FLAG, bucket_from_answer


def sandbox_client(sandbox: Sandbox, **kw: Any) -> TwentyClient:
    return TwentyClient(
        base_url="http://sandbox.local",
        api_key=Secret(sandbox.api_key),
        transport=httpx.ASGITransport(app=sandbox.app),
        **kw,
    )


@pytest.mark.parametrize("kind", ["legacy", "v2"])
async def test_the_sandbox_says_its_bucket_and_no_token_is_spent(tmp_path: Path, kind: str) -> None:
    sandbox = Sandbox(tmp_path / "ws.sqlite", SandboxOptions(bucket=kind))  # type: ignore[arg-type]
    try:
        async with sandbox_client(sandbox) as client:
            assert client.session.pacer.bucket is None
            schema = await load_schema(client)
            assert schema.object("person") is not None
            assert client.session.pacer.bucket == kind
            assert client.stats.metadata == 2  # the probe, then the objects (fields embedded)
            assert client.stats.reads == client.stats.writes == 0
            # asked once a session
            before = client.stats.metadata
            assert await client.learn_bucket() == kind
            assert client.stats.metadata == before
        assert sandbox.throttler.accepted == 0  # metadata calls are not counted
    finally:
        sandbox.close()


async def test_a_bucket_given_is_not_asked_for(make_client: Any) -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(500)

    async with make_client(handler, bucket="legacy") as client:
        assert await client.learn_bucket() == "legacy"
    assert paths == []


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, {"error": "boom"}),
        (404, {"statusCode": 404, "message": "Cannot POST /metadata"}),
        (403, {"errors": [{"message": "Forbidden resource"}]}),
        (200, {"errors": [{"message": 'Cannot query field "featureFlags"'}]}),
        (200, {"data": {"currentWorkspace": {"featureFlags": None}}}),
        (200, ["not", "an", "object"]),
    ],
)
async def test_a_server_that_cannot_say_leaves_the_bucket_unknown(
    make_client: Any, caplog: pytest.LogCaptureFixture, status: int, body: Any
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        # a server that quotes the key back must not get it into a log line
        return httpx.Response(status, json=body, headers={"X-Echo": "sk-test-123"})

    caplog.set_level(logging.DEBUG, logger="pipeline.client")
    async with make_client(handler) as client:
        assert await client.learn_bucket() is None
        assert await client.learn_bucket() is None  # not asked again
        assert client.session.pacer.bucket is None
        assert client.stats.metadata == 1  # the one probe, counted in the report
    assert calls == 1  # never retried: the run does not depend on it
    assert "sk-test-123" not in caplog.text


async def test_a_network_failure_leaves_the_bucket_unknown(
    make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused to sk-test-123", request=request)

    caplog.set_level(logging.DEBUG, logger="pipeline.client")
    async with make_client(handler) as client:
        assert await client.learn_bucket() is None
    assert "ConnectError" in caplog.text
    assert "sk-test-123" not in caplog.text


@pytest.mark.parametrize(
    ("flags", "kind"),
    [
        ([{"key": RATE_LIMIT_V2_FLAG, "value": True}], "v2"),
        ([{"key": RATE_LIMIT_V2_FLAG, "value": False}], "legacy"),
        ([{"key": "IS_AI_ENABLED", "value": True}], "legacy"),  # an older server: no such flag
        ([], "legacy"),
        ([{"key": RATE_LIMIT_V2_FLAG, "value": "true"}], "legacy"),  # only a real true counts
    ],
)
def test_the_flag_decides(flags: list[dict[str, Any]], kind: str) -> None:
    answer = {"data": {"currentWorkspace": {"featureFlags": flags}}}
    assert bucket_from_answer(answer) == kind


async def test_a_learnt_v2_bucket_paces_without_cluster_gaps(tmp_path: Path) -> None:
    """Told v2 by the flags, the pacer keeps fractions from the first call on."""
    sandbox = Sandbox(tmp_path / "ws.sqlite", SandboxOptions(bucket="v2"))
    try:
        async with sandbox_client(sandbox) as client:
            await load_schema(client)
            pacer = client.session.pacer
            assert pacer.bucket == "v2"
            pacer.started(0.0)
            pacer.tokens = 0.0  # an empty bucket: the next call waits one interval, no margin
            assert pacer.next_start(0.0) == pytest.approx(pacer.interval * (1 + pacer.reserve))
    finally:
        sandbox.close()
