"""Auth answers (twenty-api.md §1) and the token bucket with its 429s (§5), on a fake clock."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from pipeline.sandbox.throttle import TokenBucket
from tests.sandbox.conftest import FakeClock, client_for, gql

# ------------------------------------------------------------------ auth


@pytest.mark.parametrize(
    ("token", "status", "error", "message"),
    [
        (None, 403, "FORBIDDEN_EXCEPTION", "Missing authentication token"),
        ("nope", 401, "UNAUTHENTICATED", "Token invalid."),
        ("expired-key", 401, "UNAUTHENTICATED", "Token has expired."),
        ("revoked-key", 403, "FORBIDDEN_EXCEPTION", "This API Key is revoked"),
    ],
)
async def test_rest_auth_failures(
    make_sandbox: Any, token: str | None, status: int, error: str, message: str
) -> None:
    sandbox = make_sandbox()
    sandbox.engine.add_api_key("expired-key", expires_at="2020-01-01T00:00:00.000Z")
    sandbox.engine.add_api_key("revoked-key", revoked_at="2024-01-01T00:00:00.000Z")
    async with client_for(sandbox, token) as api:
        for path in ("/rest/people", "/rest/metadata/objects"):
            r = await api.get(path)
            assert r.status_code == status
            assert r.json() == {"statusCode": status, "error": error, "messages": [message]}
        body = (await api.post("/graphql", json={"query": "{ people { totalCount } }"})).json()
    assert body["errors"][0]["message"] == message
    assert body["errors"][0]["extensions"]["code"] == (
        "UNAUTHENTICATED" if status == 401 else "FORBIDDEN"
    )


async def test_token_query_parameter_is_accepted(make_sandbox: Any) -> None:
    sandbox = make_sandbox()
    async with client_for(sandbox, None) as api:
        r = await api.get("/rest/people", params={"token": sandbox.api_key})
    assert r.status_code == 200


async def test_open_api_without_token_has_no_paths(make_sandbox: Any) -> None:
    sandbox = make_sandbox()
    async with client_for(sandbox, None) as anon:
        assert (await anon.get("/rest/open-api/core")).json()["paths"] == {}
    async with client_for(sandbox) as api:
        paths = (await api.get("/open-api/core")).json()["paths"]
    assert "/batch/people" in paths and "/restore/companies/{id}" in paths


# ------------------------------------------------------------------ bucket arithmetic


def test_bucket_refill_rounds_down_and_restarts_on_every_call() -> None:
    bucket = TokenBucket(limit=100, window_ms=60_000)
    now = 0.0
    assert bucket.consume(now)  # a missing bucket is full: 99 left
    for _ in range(99):
        now += 599  # 599 ms regains floor(0.998) = 0 tokens
        assert bucket.consume(now)
    assert bucket.tokens == 0
    now += 599
    assert not bucket.consume(now)
    assert bucket.last_refill_ms == now - 599  # a refused call writes nothing
    now += 1  # 600 ms since the last accepted call: exactly one token
    assert bucket.consume(now)
    now += 1199  # 1.998 tokens -> 1
    assert bucket.consume(now)
    assert bucket.tokens == 0


def test_spacing_of_600_ms_is_sustainable_forever() -> None:
    bucket = TokenBucket(limit=100, window_ms=60_000, tokens=0, last_refill_ms=0.0)
    assert all(bucket.consume(600.0 * i) for i in range(1, 1000))


# ------------------------------------------------------------------ 429 shapes


async def test_legacy_429_shape_and_no_headers(make_sandbox: Any, clock: FakeClock) -> None:
    sandbox = make_sandbox(throttle=True, profile="legacy", rate_limit=3, rate_window_ms=60_000)
    async with client_for(sandbox) as api:
        for _ in range(3):
            assert (await api.get("/rest/people")).status_code == 200
        r = await api.get("/rest/people")
        assert r.status_code == 429
        assert r.json() == {
            "statusCode": 429,
            "error": "HttpException",
            "messages": ["Limit reached (3 tokens per 60000 ms)"],
        }
        assert "retry-after" not in r.headers
        clock.advance(20_000)  # window/limit = 20 s gives one token back
        assert (await api.get("/rest/people")).status_code == 200


async def test_newest_429_shape_and_headers(make_sandbox: Any, clock: FakeClock) -> None:
    sandbox = make_sandbox(throttle=True, rate_limit=2, rate_window_ms=60_000)
    async with client_for(sandbox) as api:
        await api.get("/rest/people")
        await api.get("/rest/people")
        clock.advance(5_000)
        r = await api.get("/rest/people")
    assert r.status_code == 429
    body = r.json()
    assert body["error"] == "RATE_LIMITED"
    assert body["messages"] == ["Rate limit exceeded for apiKey: 2 requests per 60s."]
    assert body["retryAfterSeconds"] == 25 and r.headers["retry-after"] == "25"
    assert r.headers["x-ratelimit-limit"] == "2"
    assert r.headers["x-ratelimit-remaining"] == "0"
    assert int(r.headers["x-ratelimit-reset"]) > 0
    assert body["scope"] == {
        "spenderType": "apiKey",
        "spenderId": None,
        "operationType": "API_REQUEST",
    }


async def test_short_bucket_is_checked_too(make_sandbox: Any, clock: FakeClock) -> None:
    sandbox = make_sandbox(throttle=True, short_limit=2, short_window_ms=1_000, profile="legacy")
    async with client_for(sandbox) as api:
        await api.get("/rest/people")
        await api.get("/rest/people")
        r = await api.get("/rest/people")
        assert r.json()["messages"] == ["Limit reached (2 tokens per 1000 ms)"]
        clock.advance(1_000)
        assert (await api.get("/rest/people")).status_code == 200


async def test_graphql_counts_each_root_field(make_sandbox: Any) -> None:
    sandbox = make_sandbox(throttle=True, profile="legacy", rate_limit=3)
    async with client_for(sandbox) as api:
        body = await gql(
            api,
            "{ a: people { totalCount } b: notes { totalCount } "
            "c: tasks { totalCount } d: companies { totalCount } }",
        )
    assert body["data"] is None or body["data"].get("d") is None
    assert len(body["errors"]) == 1
    error = body["errors"][0]
    assert error["message"] == "Limit reached (3 tokens per 60000 ms)"
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["path"] == ["d"]


async def test_graphql_newest_rate_limited_code(make_sandbox: Any) -> None:
    sandbox = make_sandbox(throttle=True, rate_limit=1)
    async with client_for(sandbox) as api:
        await gql(api, "{ people { totalCount } }")
        body = await gql(api, "{ people { totalCount } }")
    ext = body["errors"][0]["extensions"]
    assert ext["code"] == "RATE_LIMITED"
    # exact, from the bucket (one token a minute, just spent), not rounded to seconds
    assert 59_000 <= ext["retryAfterMs"] <= 60_000 and ext["limit"] == 1


async def test_metadata_calls_are_not_counted(make_sandbox: Any) -> None:
    sandbox = make_sandbox(throttle=True, rate_limit=1)
    async with client_for(sandbox) as api:
        for _ in range(5):
            assert (await api.get("/rest/metadata/objects")).status_code == 200
        assert (await api.get("/rest/people")).status_code == 200
        assert (await api.get("/rest/people")).status_code == 429


async def test_buckets_are_per_workspace_not_per_key(make_sandbox: Any) -> None:
    sandbox = make_sandbox(throttle=True, rate_limit=2)
    sandbox.engine.add_api_key("second-key")
    async with client_for(sandbox) as one, client_for(sandbox, "second-key") as two:
        assert (await one.get("/rest/people")).status_code == 200
        assert (await two.get("/rest/people")).status_code == 200
        assert (await two.get("/rest/people")).status_code == 429


async def test_client_paced_at_the_rate_never_meets_a_429(make_sandbox: Any) -> None:
    """The product's client against the sandbox bucket on the real clock."""
    from pipeline.config import Rate, Secret
    from pipeline.sandbox import Sandbox, SandboxOptions
    from pipeline.twenty import ObjectNames, TwentyClient

    sandbox = Sandbox(":memory:", SandboxOptions(rate_limit=10, rate_window_ms=1000))
    notes = ObjectNames("note", "notes")
    try:
        async with TwentyClient(
            base_url="http://sandbox",
            api_key=Secret(sandbox.api_key),
            rate=Rate(10, 1.0),
            transport=httpx.ASGITransport(app=sandbox.app),
            concurrency=4,
        ) as client:
            # a fresh bucket of 10: the burst, then the refill rate, one call at a time
            for i in range(25):
                await client.upsert_many(notes, [{"title": str(i)}])
        assert sandbox.throttler.refused == 0
        assert client.stats.rate_limited == 0
        assert client.stats.writes == 25
    finally:
        sandbox.close()


def test_the_two_buckets_differ_only_in_the_fraction_they_keep() -> None:
    """10 tokens a second on a fake clock: the legacy throttler loses what the v2 engine keeps."""
    from pipeline.sandbox.throttle import Throttler

    now = 0.0
    buckets = {
        kind: Throttler(limit=10, window_ms=1000, clock=lambda: now, kind=kind)
        for kind in ("legacy", "v2")
    }
    for throttler in buckets.values():
        assert all(throttler.check() is None for _ in range(10))  # a full bucket at the start
        assert throttler.check() is not None  # empty: refused, nothing written
    now = 150.0  # 1.5 tokens of refill
    assert buckets["legacy"].check() is None and buckets["v2"].check() is None
    now = 210.0  # legacy: 60 ms since its clock restarted, 0 tokens; v2: 0.5 + 0.6 kept
    assert buckets["legacy"].check() is not None
    assert buckets["v2"].check() is None
    refusal = buckets["v2"].check()  # 0.1 token left: the wait is exact
    assert refusal is not None and refusal.retry_after_ms == 90
    now = 250.0  # legacy: 100 ms since its last admitted call (the refused one wrote nothing)
    assert buckets["legacy"].check() is None


@pytest.mark.parametrize("api", ["graphql", "rest"])
async def test_a_counted_call_awaits_its_database_before_it_is_applied(
    make_sandbox: Any, api: str
) -> None:
    """Twenty counts a call, then awaits Postgres; the sandbox awaits
    ``database_wait_ms`` between the two, so calls arriving together are counted
    together and only then written."""
    sandbox = make_sandbox(throttle=True, database_wait_ms=2.0)
    seen: list[tuple[float, int, int]] = []

    async def recording_sleep(seconds: float) -> None:
        stored = sandbox.engine.find_many(sandbox.engine.object("note"), limit=10).records
        seen.append((seconds, sandbox.throttler.accepted, len(stored)))

    sandbox.gate._sleep = recording_sleep
    async with client_for(sandbox) as client:
        if api == "rest":
            response = await client.post("/rest/notes", json={"title": "Counted, then written"})
            assert response.status_code == 201
        else:
            body = await gql(
                client,
                "mutation($d: NoteCreateInput!) { createNote(data: $d) { id } }",
                d={"title": "Counted, then written"},
            )
            assert "errors" not in body
    # one wait, of 2 ms, after the call was counted and before its note was stored
    assert seen == [(0.002, 1, 0)]
    notes = sandbox.engine.find_many(sandbox.engine.object("note"), limit=10).records
    assert [n["title"] for n in notes] == ["Counted, then written"]
