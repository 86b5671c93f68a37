"""TwentyClient against httpx.MockTransport tables: retries, errors, halving, pacing."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import ssl
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from pipeline import errors
from pipeline.config import Rate, Secret, Settings
from pipeline.twenty import ObjectNames, Pacer, TwentyClient, map_httpx_errors, pacing
from pipeline.twenty.pacing import LimitNews

PEOPLE = ObjectNames("person", "people")
Handler = Callable[[httpx.Request], httpx.Response]


def sequence(*answers: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler that gives ``answers`` in order and records the requests it saw."""
    seen: list[httpx.Request] = []
    queue: Iterator[httpx.Response | Exception] = iter(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = next(queue)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler, seen


def rest_created(n: int) -> httpx.Response:
    return httpx.Response(
        201, json={"data": {"createPeople": [{"id": f"id-{i}"} for i in range(n)]}}
    )


def gql_created(n: int) -> httpx.Response:
    return httpx.Response(
        200, json={"data": {"createPeople": [{"id": f"id-{i}"} for i in range(n)]}}
    )


LEGACY_429 = httpx.Response(
    429,
    json={
        "statusCode": 429,
        "error": "HttpException",
        "messages": ["Limit reached (100 tokens per 60000 ms)"],
    },
)


def newest_429(retry_after: str) -> httpx.Response:
    return httpx.Response(
        429,
        headers={
            "Retry-After": retry_after,
            "X-RateLimit-Limit": "100",
            "X-RateLimit-Remaining": "0",
        },
        json={
            "statusCode": 429,
            "error": "RATE_LIMITED",
            "messages": ["Rate limit exceeded for apiKey: 100 requests per 60s."],
            "retryAfterSeconds": int(retry_after),
        },
    )


async def test_rest_batch_upsert_sends_array_with_upsert_flag(make_client: Any) -> None:
    handler, seen = sequence(rest_created(2))
    async with make_client(handler, api="rest") as client:
        out = await client.upsert_many(PEOPLE, [{"city": "Paris"}, {"city": "Lyon"}])
    assert [r["id"] for r in out] == ["id-0", "id-1"]
    request = seen[0]
    assert request.method == "POST"
    assert request.url.path == "/rest/batch/people"
    assert request.url.params["upsert"] == "true"
    assert json.loads(request.content) == [{"city": "Paris"}, {"city": "Lyon"}]
    assert request.headers["authorization"] == "Bearer sk-test-123"
    assert client.stats.writes == 1


async def test_rest_batch_accepts_transitional_envelope(make_client: Any) -> None:
    handler, _ = sequence(httpx.Response(201, json={"data": {"people": [{"id": "a"}]}}))
    async with make_client(handler, api="rest") as client:
        assert await client.upsert_many(PEOPLE, [{"city": "x"}]) == [{"id": "a"}]


async def test_graphql_batch_upsert_document(make_client: Any) -> None:
    handler, seen = sequence(gql_created(1))
    async with make_client(handler) as client:
        await client.upsert_many(PEOPLE, [{"city": "Paris"}])
    body = json.loads(seen[0].content)
    assert seen[0].url.path == "/graphql"
    assert "createPeople(data: $data, upsert: $upsert)" in body["query"]
    assert "[PersonCreateInput!]!" in body["query"]
    assert body["variables"] == {"data": [{"city": "Paris"}], "upsert": True}


async def test_429_without_retry_after_backs_off_at_least_one_interval(
    make_client: Any, sleeps: Any
) -> None:
    handler, seen = sequence(LEGACY_429, LEGACY_429, rest_created(1))
    async with make_client(handler, api="rest", rate=Rate(100, 60)) as client:
        await client.upsert_many(PEOPLE, [{"city": "x"}])
    assert len(seen) == 3
    assert client.stats.rate_limited == 2
    assert client.stats.retries == 2
    # each 429 empties the pacer's model of the bucket: the retry waits for its own
    # token and the reserve's to refill (2 x 0.6 s and the jitter margin)
    assert sum(sleeps.delays) >= 2 * 2 * 0.6
    # each unexpected 429 allows more time between a cluster's arrivals at the server
    assert client._pacer.spread > pacing.SPREAD
    assert client._pacer.bucket == "legacy"  # learnt from the 429's shape


async def test_429_with_retry_after_waits_what_the_server_says(
    make_client: Any, sleeps: Any
) -> None:
    handler, seen = sequence(newest_429("7"), rest_created(1))
    async with make_client(handler, api="rest") as client:
        await client.upsert_many(PEOPLE, [{"city": "x"}])
    assert len(seen) == 2
    assert any(6.99 <= d <= 7.0 for d in sleeps.delays)  # held for the Retry-After
    assert client.stats.rate_limited == 1
    assert client._pacer.bucket == "v2"


async def test_graphql_rate_limit_in_200_is_retried(make_client: Any, sleeps: Any) -> None:
    limited = httpx.Response(
        200,
        json={
            "data": None,
            "errors": [
                {
                    "message": "Limit reached (100 tokens per 60000 ms)",
                    "extensions": {"code": "BAD_USER_INPUT"},
                }
            ],
        },
    )
    newest = httpx.Response(
        200,
        json={
            "errors": [
                {
                    "message": "Rate limit exceeded",
                    "extensions": {"code": "RATE_LIMITED", "retryAfterMs": 2500},
                }
            ]
        },
    )
    handler, seen = sequence(limited, newest, gql_created(1))
    async with make_client(handler) as client:
        await client.upsert_many(PEOPLE, [{"city": "x"}])
    assert len(seen) == 3
    assert client.stats.rate_limited == 2
    assert any(2.49 <= d <= 2.5 for d in sleeps.delays)  # retryAfterMs honoured


async def test_graphql_validation_error_is_a_batch_error(make_client: Any) -> None:
    bad = httpx.Response(
        200,
        json={
            "data": None,
            "errors": [
                {
                    "message": "Invalid value 'FOO' for field \"stage\"",
                    "extensions": {"code": "BAD_USER_INPUT"},
                }
            ],
        },
    )
    handler, seen = sequence(bad)
    async with make_client(handler) as client:
        with pytest.raises(errors.BatchRejectedError) as info:
            await client.upsert_many(PEOPLE, [{"stage": "FOO"}])
    assert info.value.server_message == "Invalid value 'FOO' for field \"stage\""
    assert len(seen) == 1  # never retried


async def test_500_then_success(make_client: Any, sleeps: Any) -> None:
    handler, seen = sequence(
        httpx.Response(500, json={"statusCode": 500, "messages": ["boom"], "error": "x"}),
        httpx.Response(503, text="upstream down"),
        rest_created(1),
    )
    async with make_client(handler, api="rest") as client:
        out = await client.upsert_many(PEOPLE, [{"city": "x"}])
    assert out == [{"id": "id-0"}]
    assert len(seen) == 3
    assert client.stats.retries == 2
    assert len(sleeps.delays) == 2
    assert sleeps.delays[1] >= 1.0  # exponential: the second wait's floor is 2 s / 2


async def test_timeout_then_success_for_an_upsert(make_client: Any) -> None:
    request = httpx.Request("POST", "https://crm.example.com/rest/batch/people")
    handler, seen = sequence(httpx.ReadTimeout("slow", request=request), rest_created(1))
    async with make_client(handler, api="rest") as client:
        await client.upsert_many(PEOPLE, [{"city": "x"}])
    assert len(seen) == 2


async def test_timeout_of_a_plain_create_is_not_resent(make_client: Any) -> None:
    """A create without upsert may have been applied: re-sending could duplicate it."""
    request = httpx.Request("POST", "https://crm.example.com/rest/batch/people")
    handler, seen = sequence(httpx.ReadTimeout("slow", request=request), rest_created(1))
    async with make_client(handler, api="rest") as client:
        with pytest.raises(errors.TransportError) as info:
            await client.upsert_many(PEOPLE, [{"city": "x"}], upsert=False)
    assert info.value.maybe_applied
    assert len(seen) == 1


async def test_connect_error_of_a_plain_create_is_resent(make_client: Any) -> None:
    request = httpx.Request("POST", "https://crm.example.com/rest/batch/people")
    handler, seen = sequence(httpx.ConnectError("refused", request=request), rest_created(1))
    async with make_client(handler, api="rest") as client:
        await client.upsert_many(PEOPLE, [{"city": "x"}], upsert=False)
    assert len(seen) == 2


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, "Token invalid."),
        (401, "Token has expired."),
        (403, "Missing authentication token"),
        (403, "This API Key is revoked"),
    ],
)
async def test_auth_failures_abort_at_once_and_never_show_the_key(
    make_client: Any, status: int, message: str
) -> None:
    body = {"statusCode": status, "messages": [message], "error": "UNAUTHENTICATED"}
    handler, seen = sequence(httpx.Response(status, json=body))
    async with make_client(handler) as client:
        with pytest.raises(errors.AuthError) as info:
            await client.metadata_objects()
    assert len(seen) == 1
    text = str(info.value)
    assert "TWENTY_API_KEY" in text
    assert message in text
    assert "sk-test-123" not in text
    assert info.value.exit_code == 1


async def test_graphql_unauthenticated_is_auth_error(make_client: Any) -> None:
    body = {"errors": [{"message": "Token invalid.", "extensions": {"code": "UNAUTHENTICATED"}}]}
    handler, _ = sequence(httpx.Response(200, json=body))
    async with make_client(handler) as client:
        with pytest.raises(errors.AuthError):
            await client.upsert_many(PEOPLE, [{"city": "x"}])


async def test_400_is_a_batch_error_with_twentys_message(make_client: Any) -> None:
    body = {
        "statusCode": 400,
        "error": "BadRequestException",
        "messages": ["Invalid email value 'ada@' for field \"emails\""],
    }
    handler, seen = sequence(httpx.Response(400, json=body))
    async with make_client(handler, api="rest") as client:
        with pytest.raises(errors.BatchRejectedError) as info:
            await client.upsert_many(PEOPLE, [{"emails": {"primaryEmail": "ada@"}}])
    assert info.value.status_code == 400
    assert info.value.server_message == "Invalid email value 'ada@' for field \"emails\""
    assert not isinstance(info.value, errors.BatchTooLargeError)
    assert len(seen) == 1


async def test_legacy_rest_batch_without_upsert_stops_the_run(make_client: Any) -> None:
    body = {
        "statusCode": 400,
        "error": "BadRequestException",
        "messages": ["Record already exists"],
    }
    handler, seen = sequence(httpx.Response(400, json=body))
    async with make_client(handler, api="rest") as client:
        with pytest.raises(errors.UpsertIgnoredError, match=r"ignores \?upsert=true") as stop:
            await client.upsert_many(PEOPLE, [{"id": "x"}])
    assert stop.value.advice == errors.USE_GRAPHQL_WRITES  # the CLI words it as a flag
    assert str(stop.value).endswith("; use api=graphql")
    assert len(seen) == 1


async def test_rest_duplicate_entry_on_upsert_hints_at_graphql(make_client: Any) -> None:
    body = {
        "statusCode": 400,
        "error": "BadRequestException",
        "messages": ["A duplicate entry was detected"],
    }
    handler, _ = sequence(httpx.Response(400, json=body), httpx.Response(400, json=body))
    async with make_client(handler, api="rest") as client:
        with pytest.raises(errors.BatchRejectedError, match="try api=graphql") as maybe:
            await client.upsert_many(PEOPLE, [{"city": "x"}, {"city": "y"}])
        assert maybe.value.advice == errors.MAYBE_USE_GRAPHQL_WRITES
        with pytest.raises(errors.FatalApiError, match="use api=graphql") as stop:
            await client.upsert_many(PEOPLE, [{"city": "x"}])
        assert stop.value.advice == errors.USE_GRAPHQL_WRITES


async def test_maximum_number_of_records_halves_the_batch(make_client: Any) -> None:
    """A server whose message has no number: 8 -> 4 -> 2, and the lower size sticks."""
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        data = json.loads(request.content)
        sizes.append(len(data))
        if len(data) > 2:
            return httpx.Response(
                400,
                json={
                    "statusCode": 400,
                    "error": "BadRequestException",
                    "messages": ["Maximum number of records exceeded"],
                },
            )
        return httpx.Response(
            201, json={"data": {"createPeople": [{"id": r["city"]} for r in data]}}
        )

    records = [{"city": str(i)} for i in range(8)]
    async with make_client(handler, api="rest") as client:
        out = await client.upsert_many(PEOPLE, records)
        assert [r["id"] for r in out] == [str(i) for i in range(8)]  # input order kept
        assert client.max_batch_size == 2
        sizes.clear()
        await client.upsert_many(PEOPLE, records[:5])
    assert sizes == [2, 2, 1]  # the next call starts at the learned size


async def test_maximum_number_of_records_uses_the_stated_limit(make_client: Any) -> None:
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        data = json.loads(request.content)["variables"]["data"]
        sizes.append(len(data))
        if len(data) > 3:
            return httpx.Response(
                200,
                json={
                    "errors": [
                        {
                            "message": "Maximum number of records to upsert is 3.",
                            "extensions": {"code": "BAD_USER_INPUT"},
                        }
                    ]
                },
            )
        return gql_created(len(data))

    async with make_client(handler) as client:
        out = await client.upsert_many(PEOPLE, [{"city": "x"}] * 7)
    assert len(out) == 7
    assert sizes == [7, 3, 3, 1]
    assert client.max_batch_size == 3


async def test_retries_give_up_with_the_attempt_count(make_client: Any) -> None:
    handler, seen = sequence(*[httpx.Response(502, text="bad gateway")] * 4)
    async with make_client(handler, max_retries=3) as client:
        with pytest.raises(errors.ServerError, match="gave up after 4 attempts"):
            await client.metadata_fields()
    assert len(seen) == 4


async def test_html_answer_says_the_url_is_wrong(make_client: Any) -> None:
    handler, _ = sequence(
        httpx.Response(200, text="<html>app</html>", headers={"content-type": "text/html"})
    )
    async with make_client(handler) as client:
        with pytest.raises(errors.FatalApiError, match="TWENTY_API_URL"):
            await client.metadata_objects()


async def test_redirect_is_fatal_and_names_the_target(make_client: Any) -> None:
    handler, _ = sequence(httpx.Response(301, headers={"location": "https://new.example.com/"}))
    async with make_client(handler) as client:
        with pytest.raises(errors.FatalApiError, match=r"new\.example\.com"):
            await client.metadata_objects()


async def test_find_many_parses_envelope_and_pagination(make_client: Any) -> None:
    pages = [
        {
            "data": {"people": [{"id": "1"}, {"id": "2"}]},
            "totalCount": 3,
            "pageInfo": {
                "hasNextPage": True,
                "hasPreviousPage": False,
                "startCursor": "a",
                "endCursor": "c2",
            },
        },
        {
            "data": {"people": [{"id": "3"}]},
            "totalCount": 3,
            "pageInfo": {
                "hasNextPage": False,
                "hasPreviousPage": True,
                "startCursor": "c3",
                "endCursor": "c3",
            },
        },
    ]
    handler, seen = sequence(*[httpx.Response(200, json=p) for p in pages])
    async with make_client(handler) as client:
        got = [p async for p in client.iter_pages(PEOPLE, filter="city[eq]:Paris", page_size=2)]
    assert [r["id"] for p in got for r in p.records] == ["1", "2", "3"]
    assert got[0].total_count == 3
    assert seen[0].url.params["filter"] == "city[eq]:Paris"
    assert seen[0].url.params["limit"] == "2"
    assert "starting_after" not in seen[0].url.params
    assert seen[1].url.params["starting_after"] == "c2"
    assert client.stats.reads == 2


async def test_repeated_cursor_stops_the_pager(make_client: Any) -> None:
    page = {
        "data": {"people": [{"id": "1"}]},
        "pageInfo": {"hasNextPage": True, "endCursor": "same"},
    }
    handler, _ = sequence(*[httpx.Response(200, json=page)] * 3)
    async with make_client(handler) as client:
        with pytest.raises(errors.FatalApiError, match="repeated a page cursor"):
            async for _ in client.iter_pages(PEOPLE):
                pass


async def test_graphql_find_many_connection(make_client: Any) -> None:
    body = {
        "data": {
            "people": {
                "edges": [{"node": {"id": "1"}, "cursor": "x"}],
                "pageInfo": {"hasNextPage": False, "endCursor": "x"},
                "totalCount": 1,
            }
        }
    }
    handler, seen = sequence(httpx.Response(200, json=body))
    async with make_client(handler) as client:
        page = await client.find_many_graphql(
            PEOPLE, filter={"city": {"eq": "Paris"}}, selection="id city"
        )
    assert page.records == [{"id": "1"}]
    assert page.total_count == 1
    sent = json.loads(seen[0].content)
    assert sent["variables"]["filter"] == {"city": {"eq": "Paris"}}
    assert "PersonFilterInput" in sent["query"]


@pytest.mark.parametrize("legacy", [False, True])
async def test_metadata_envelopes_and_paging(make_client: Any, legacy: bool) -> None:
    def envelope(items: list[dict[str, Any]], more: bool, cursor: str) -> dict[str, Any]:
        data: Any = {"objects": items} if legacy else items
        return {"data": data, "pageInfo": {"hasNextPage": more, "endCursor": cursor}}

    handler, seen = sequence(
        httpx.Response(200, json=envelope([{"id": "o1"}], True, "k1")),
        httpx.Response(200, json=envelope([{"id": "o2"}], False, "k2")),
    )
    async with make_client(handler) as client:
        objects = await client.metadata_objects()
    assert [o["id"] for o in objects] == ["o1", "o2"]
    assert seen[1].url.params["starting_after"] == "k1"
    assert client.stats.metadata == 2
    assert client.stats.reads == 0


# ------------------------------------------------------------------ error mapping


def all_httpx_errors() -> list[type[httpx.HTTPError]]:
    found: list[type[httpx.HTTPError]] = []
    stack: list[type[httpx.HTTPError]] = [httpx.HTTPError]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("exc_class", all_httpx_errors(), ids=lambda c: c.__name__)
def test_every_httpx_exception_maps_to_a_pipeline_error(exc_class: type[httpx.HTTPError]) -> None:
    request = httpx.Request("GET", "https://crm.example.com/rest/people")
    if issubclass(exc_class, httpx.HTTPStatusError):
        exc: httpx.HTTPError = exc_class(
            "x", request=request, response=httpx.Response(500, request=request)
        )
    elif issubclass(exc_class, httpx.RequestError):
        exc = exc_class("x", request=request)
    else:
        exc = exc_class("x")
    with pytest.raises(errors.PipelineError) as info, map_httpx_errors("GET", "/rest/people"):
        raise exc
    assert isinstance(info.value, errors.ApiError)
    assert info.value.path == "/rest/people"


@pytest.mark.parametrize(
    ("exc_class", "retriable", "maybe_applied"),
    [
        (httpx.ConnectError, True, False),
        (httpx.ConnectTimeout, True, False),
        (httpx.PoolTimeout, True, False),
        (httpx.ReadTimeout, True, True),
        (httpx.WriteTimeout, True, True),
        (httpx.ReadError, True, True),
        (httpx.RemoteProtocolError, True, True),
        (httpx.LocalProtocolError, False, None),
        (httpx.UnsupportedProtocol, False, None),
    ],
)
def test_transport_errors_classified(
    exc_class: type[httpx.RequestError], retriable: bool, maybe_applied: bool | None
) -> None:
    request = httpx.Request("POST", "https://crm.example.com/graphql")
    with pytest.raises(errors.ApiError) as info, map_httpx_errors("POST", "/graphql"):
        raise exc_class("x", request=request)
    assert isinstance(info.value, errors.RetriableApiError) is retriable
    if maybe_applied is not None:
        assert isinstance(info.value, errors.TransportError)
        assert info.value.maybe_applied is maybe_applied


# ------------------------------------------------------------------ pacing


class LegacyBucket:
    """Twenty's legacy token bucket (twenty-api.md §5.1), clocked by the event loop."""

    def __init__(self, limit: int, window_ms: float, start_tokens: int) -> None:
        self.limit = limit
        self.window_ms = window_ms
        self.tokens = start_tokens
        self.last_refill_ms: float | None = None

    def consume(self, now_ms: float) -> bool:
        refill = 0
        if self.last_refill_ms is not None:
            refill = int((now_ms - self.last_refill_ms) * self.limit // self.window_ms)
        available = min(self.tokens + refill, self.limit)
        if available < 1:
            return False
        self.tokens = available - 1
        self.last_refill_ms = now_ms
        return True


async def test_pacing_spends_the_burst_then_never_drains_the_legacy_bucket(
    make_client: Any,
) -> None:
    """On the loop's real clock: a fresh legacy bucket, three times its size in calls.

    The first 40 calls spend the initial bucket (all but the one-token reserve) as fast
    as 4 in flight allow; the rest go in clusters that regain what they spend. Any call
    that arrives early, by the server's rounding, is a 429.
    """
    rate = Rate(40, 1)  # 25 ms a token
    bucket = LegacyBucket(40, 1000, start_tokens=40)
    starts: list[float] = []
    refused = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal refused
        now = asyncio.get_running_loop().time()
        starts.append(now)
        if not bucket.consume(now * 1000):
            refused += 1
            return LEGACY_429
        return gql_created(1)

    async with make_client(handler, rate=rate, concurrency=4, sleep=asyncio.sleep) as client:
        await asyncio.gather(*(client.upsert_many(PEOPLE, [{"city": "x"}]) for _ in range(120)))
    assert refused == 0
    assert client.stats.rate_limited == 0
    assert len(starts) == 120
    assert starts[38] - starts[0] < 40 * rate.interval  # the burst did not wait for refill
    assert bucket.tokens >= 1  # the reserve was never spent


async def test_pacer_widens_its_gap_then_slows_when_429s_keep_coming_and_recovers() -> None:
    pacer = Pacer(Rate(100, 60), group=4)
    news = LimitNews(bucket="legacy", limit=100, window_s=60.0)
    spreads = []
    for i in range(30):  # a 429 for every cluster: another client spends the bucket
        pacer.started(10.0 * i)
        pacer.refused(10.0 * i, 10.0 * i + 0.1, news)
        spreads.append(pacer.spread)
    # first the allowance for a cluster's arrivals grows, within a third of the interval
    assert spreads[0] == pytest.approx(Pacer.WIDENED_SPREAD)
    assert spreads[1] == pytest.approx(Pacer.WIDENED_SPREAD * 2)
    assert pacer.margin + pacer.spread * 3 <= 0.6 / 3
    # then the interval widens, up to four times
    assert pacer.interval == pytest.approx(0.6 * 4)
    for _ in range(Pacer.RECOVER_AFTER * 10):
        pacer.answered(400.0, 400.2)
    assert pacer.interval == pytest.approx(0.6)


async def test_a_departure_is_when_the_request_body_was_written(make_client: Any) -> None:
    """The bucket counts a call once it has read it whole: the hook reports the end of
    the body, not the headers or the start of the body, and nothing else."""
    handler, _ = sequence(gql_created(1))
    client: TwentyClient = make_client(handler, bucket="legacy")
    async with client:
        pacer = client._pacer
        noted: list[tuple[float, float]] = []
        pacer.sent = lambda started, now: noted.append((started, now))  # type: ignore[method-assign]
        hook = client.session._departure(1.0)
        for event in (
            "connection.connect_tcp.complete",
            "http11.send_request_headers.complete",
            "http11.send_request_body.started",
            "http11.receive_response_headers.complete",
        ):
            await hook(event, {})
        assert noted == []
        await hook("http11.send_request_body.complete", {})
        await hook("http2.send_request_body.complete", {})
    assert [started for started, _ in noted] == [1.0, 1.0]


async def test_one_http_client_per_run_and_closed(make_client: Any) -> None:
    handler, _ = sequence(gql_created(1), gql_created(1))
    client: TwentyClient = make_client(handler)
    async with client:
        http = client._http
        await client.upsert_many(PEOPLE, [{"city": "x"}])
        await client.upsert_many(PEOPLE, [{"city": "y"}])
        assert client._http is http
    assert http.is_closed


# ------------------------------------------------------------------ answers, faults, secrets


async def test_unconfirmed_answer_of_a_plain_create_is_not_resent(make_client: Any) -> None:
    """A create without upsert that answered badly may have been applied: never re-send it."""
    handler, seen = sequence(rest_created(0))
    async with make_client(handler, api="rest") as client:
        with pytest.raises(errors.UnconfirmedWriteError) as info:
            await client.upsert_many(PEOPLE, [{"city": "x"}], upsert=False)
    assert str(info.value) == (
        "POST /rest/batch/people: the answer does not confirm the write (1 records were "
        "sent, it holds 0); the batch is not recorded as done"
    )
    assert len(seen) == 1


async def test_unconfirmed_answer_is_retried_then_a_good_one_is_taken(
    make_client: Any, sleeps: Any
) -> None:
    empty = httpx.Response(200, json={"data": {"createPeople": [{}, {}]}})
    handler, seen = sequence(empty, gql_created(2))
    async with make_client(handler) as client:
        out = await client.upsert_many(PEOPLE, [{"city": "x"}, {"city": "y"}])
    assert out == [{"id": "id-0"}, {"id": "id-1"}]
    assert len(seen) == 2
    assert client.stats.retries == 1 and len(sleeps.delays) == 1


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("GRAPHQL_VALIDATION_FAILED", 'Cannot query field "foo" on type "Person".'),
        ("GRAPHQL_PARSE_FAILED", 'Syntax Error: Expected Name, found "}".'),
        ("", 'Cannot query field "foo" on type "Person".'),
        ("BAD_USER_INPUT", 'Field "foo" is not defined by type "PersonCreateInput".'),
    ],
)
async def test_graphql_request_faults_stop_at_once(
    make_client: Any, code: str, message: str
) -> None:
    extensions = {"code": code} if code else {}
    body = {"errors": [{"message": message, "extensions": extensions}]}
    handler, seen = sequence(httpx.Response(200, json=body))
    async with make_client(handler) as client:
        with pytest.raises(errors.RequestRejectedError) as info:
            await client.upsert_many(PEOPLE, [{"city": "x"}, {"city": "y"}])
    assert isinstance(info.value, errors.FatalApiError)
    assert not isinstance(info.value, errors.BatchRejectedError)
    assert info.value.server_message == message
    assert len(seen) == 1


@pytest.mark.parametrize(
    "message",
    [
        "A duplicate entry was detected",
        "Foreign key violation on companyId: no company with id 5",
        "Invalid value 'FOO' for field \"stage\"",
        'Variable "$data" got invalid value "x" at "data[0].id"; Expected type "UUID".',
    ],
)
async def test_graphql_data_errors_stay_batch_errors(make_client: Any, message: str) -> None:
    body = {"errors": [{"message": message, "extensions": {"code": "BAD_USER_INPUT"}}]}
    handler, _ = sequence(httpx.Response(200, json=body))
    async with make_client(handler) as client:
        with pytest.raises(errors.BatchRejectedError) as info:
            await client.upsert_many(PEOPLE, [{"city": "x"}])
    assert info.value.server_message == message


def tls_failure(request: httpx.Request) -> httpx.Response:
    cause = ssl.SSLCertVerificationError(
        1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate"
    )
    cause.verify_message = "self-signed certificate"
    raise httpx.ConnectError(str(cause), request=request) from cause


async def test_tls_verification_failure_is_not_retried(make_client: Any, sleeps: Any) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return tls_failure(request)

    async with make_client(handler) as client:
        with pytest.raises(errors.TlsError) as info:
            await client.metadata_objects()
    assert str(info.value) == (
        "TLS certificate of crm.example.com could not be verified: self-signed certificate; "
        "fix the certificate or set SSL_CERT_FILE to a CA bundle that trusts it"
    )
    assert info.value.exit_code == 1
    assert len(seen) == 1 and sleeps.delays == []


@pytest.mark.parametrize(
    "key",
    [
        "sk-test\n# prod key",
        "sk test",
        "sk-t\x00est",
        "sk-tëst",
        "",
    ],
    ids=["two-lines", "space", "control", "non-ascii", "empty"],
)
def test_client_refuses_a_key_it_cannot_send(make_client: Any, key: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        make_client(sequence()[0], api_key=Secret(key))
    assert str(info.value).startswith("TWENTY_API_KEY: the API key ")
    assert "(the key is not shown)" in str(info.value)
    if key:
        assert key not in str(info.value)
        assert "sk-t" not in str(info.value)


async def test_key_echoed_by_the_server_is_redacted_everywhere(
    make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    echo = "token sk-test-123 is not allowed here"
    answers = [
        httpx.Response(500, json={"statusCode": 500, "messages": [echo], "error": "x"}),
        httpx.Response(400, json={"statusCode": 400, "messages": [echo], "error": "x"}),
    ]
    handler, _ = sequence(*answers)
    caplog.set_level("WARNING", logger="pipeline.client")
    async with make_client(handler, api="rest") as client:
        with pytest.raises(errors.BatchRejectedError) as info:
            await client.upsert_many(PEOPLE, [{"city": "x"}])
    assert info.value.server_message == "token *** is not allowed here"
    assert str(info.value) == (
        "POST /rest/batch/people: Twenty refused the data: token *** is not allowed here"
    )
    assert "server error 500: token *** is not allowed here; retry 1/8" in caplog.text
    assert "sk-test-123" not in caplog.text


async def test_auth_error_echoing_the_key_is_redacted(make_client: Any) -> None:
    body = {"statusCode": 401, "messages": ["Invalid token Bearer sk-test-123"], "error": "x"}
    handler, _ = sequence(httpx.Response(401, json=body))
    async with make_client(handler) as client:
        with pytest.raises(errors.AuthError) as info:
            await client.metadata_objects()
    assert "Invalid token Bearer ***" in str(info.value)
    assert "sk-test-123" not in str(info.value)
    assert "sk-test-123" not in (info.value.server_message or "")


# ------------------------------------------------------------------ a trickling server


@pytest.fixture
async def trickling_server() -> Any:
    """A loopback server that sends its headers, then one byte of body every 50 ms."""
    tasks: set[asyncio.Task[None]] = set()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            body = b'{"data": []}' * 100
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
            )
            for byte in body:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.05)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def start(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(answer(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(start, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    server.close()
    await server.wait_closed()


async def test_trickling_body_trips_the_call_deadline_and_is_retried(
    trickling_server: str, sleeps: Any
) -> None:
    client = TwentyClient(
        base_url=trickling_server,
        api_key=Secret("sk-test-123"),
        rate=Rate(1000, 1.0),
        timeout=5.0,
        call_deadline=0.3,
        max_retries=1,
        sleep=sleeps,
    )
    started = asyncio.get_running_loop().time()
    async with client:
        with pytest.raises(errors.TransportError) as info:
            await client.find_many(PEOPLE)
    elapsed = asyncio.get_running_loop().time() - started
    assert str(info.value) == (
        "GET /rest/people: no complete answer within 0.3s (the server is too slow or "
        "stalled while answering) (gave up after 2 attempts)"
    )
    assert info.value.maybe_applied
    assert client.stats.reads == 2 and len(sleeps.delays) == 1
    assert elapsed < 3.0


def test_call_deadline_defaults_to_three_timeouts() -> None:
    client = TwentyClient(base_url="https://crm.example.com", api_key=Secret("k"), timeout=20)
    assert client.call_deadline == 60.0
    settings_client = TwentyClient.from_settings(
        Settings(api_url="https://crm.example.com", api_key=Secret("k"), call_deadline=7.5)
    )
    assert settings_client.call_deadline == 7.5


@pytest.fixture
def self_signed_cert(tmp_path: Any) -> tuple[Any, Any]:
    """A certificate and key that no CA vouches for (made with openssl)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
async def self_signed_server(self_signed_cert: tuple[Any, Any]) -> Any:
    """A loopback TLS server presenting the self-signed certificate."""
    cert, key = self_signed_cert
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    yield f"https://localhost:{port}"
    server.close()
    await server.wait_closed()


async def test_real_self_signed_certificate_fails_at_once_with_advice(
    self_signed_server: str, sleeps: Any
) -> None:
    client = TwentyClient(
        base_url=self_signed_server,
        api_key=Secret("sk-test-123"),
        rate=Rate(1000, 1.0),
        sleep=sleeps,
    )
    async with client:
        with pytest.raises(errors.TlsError) as info:
            await client.metadata_objects()
    assert str(info.value) == (
        "TLS certificate of localhost could not be verified: self-signed certificate; "
        "fix the certificate or set SSL_CERT_FILE to a CA bundle that trusts it"
    )
    assert sleeps.delays == [] and client.stats.metadata == 1


async def test_retries_and_429s_are_events_with_their_figures(
    make_client: Any, sleeps: Any, caplog: pytest.LogCaptureFixture
) -> None:
    handler, _ = sequence(
        httpx.Response(503, text="upstream down"), newest_429("7"), rest_created(1)
    )
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        async with make_client(handler, api="rest") as client:
            await client.upsert_many(PEOPLE, [{"city": "x"}])
    events = [(r.event, r.fields) for r in caplog.records if hasattr(r, "event")]  # type: ignore[attr-defined]
    assert [name for name, _ in events] == ["retry", "rate_limited"]
    retry, limited = events[0][1], events[1][1]
    assert (retry["call"], retry["method"], retry["status"], retry["attempt"]) == (
        "write",
        "POST",
        503,
        1,
    )
    assert retry["path"] == "/rest/batch/people" and "503" in retry["reason"]
    assert (limited["status"], limited["attempt"], limited["delay"]) == (429, 2, 7.0)
