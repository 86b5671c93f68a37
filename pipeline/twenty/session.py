"""The transport policy of one workspace: one connection pool, pacing, retries, trust.

A :class:`Session` owns one :class:`httpx.AsyncClient` (transport injectable for tests
and the in-process sandbox), the bearer key, the :class:`~pipeline.twenty.pacing.Pacer`
of its workspace's call budget and the retry loop. Each call's answer is decoded and
every failure becomes a :mod:`pipeline.errors` exception through
:mod:`pipeline.twenty.answers`, with the API key replaced by ``***`` in whatever text
the server or the network contributed. The resources (records, metadata) build
requests on top and know nothing of HTTP status codes; two workspaces are two
sessions, each with its own pool and pace.

One call, body read included, has an overall deadline (``call_deadline``), since
httpx's timeout only bounds each read. A call that may have reached the server (a
read timeout, an unconfirmed write) is re-sent only when it is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import httpx

from pipeline.config import (
    DEFAULT_RATE,
    DEFAULT_RESERVE,
    DEFAULT_TIMEOUT,
    BucketKind,
    Rate,
    Secret,
    key_advice,
    key_problem,
)
from pipeline.errors import (
    ConfigError,
    FatalApiError,
    RateLimitedError,
    RetriableApiError,
    TransportError,
    UnconfirmedWriteError,
)
from pipeline.twenty.answers import decode_answer, map_httpx_errors
from pipeline.twenty.bucket_probe import probe_bucket
from pipeline.twenty.pacing import LimitNews, Pacer

log = logging.getLogger("pipeline.client")
"""The logger name users filter retries and warnings on (kept from the one-module client)."""

CallKind = Literal["read", "write", "metadata"]
USER_AGENT = "twenty-pipeline"


@dataclass
class CallStats:
    """Counters for the run report. Every attempt counts: a retry spends budget too."""

    reads: int = 0
    writes: int = 0
    metadata: int = 0
    retries: int = 0
    rate_limited: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0

    def count(self, kind: CallKind) -> None:
        """Count one call of ``kind``."""
        if kind == "read":
            self.reads += 1
        elif kind == "write":
            self.writes += 1
        else:
            self.metadata += 1

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict, for report.json."""
        return asdict(self)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a session retries a passing failure."""

    max_retries: int = 8
    """Attempts after the first before a retriable error is raised."""
    backoff_base: float = 1.0
    backoff_cap: float = 60.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Exponential back-off with 'equal jitter': half fixed, half random."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2.0 ** (attempt - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


class Session:
    """Every call to one workspace goes through here: paced, retried, decoded, redacted.

    Args:
        base_url: workspace base URL (``https://crm.example.com``).
        api_key: the API key.
        key_source: where the key came from; named in auth errors instead of the key.
        rate: the workspace's call budget, paced per :class:`Pacer`.
        concurrency: calls in flight at once.
        transport: an httpx transport (``MockTransport``, ``ASGITransport``) for tests.
        timeout: seconds httpx waits to connect, and for each read or write.
        call_deadline: seconds one whole call may take, body included (default three
            times ``timeout``); an overdue call is a retriable transport error.
        retry: how often and how long to retry.
        reserve: tokens of the workspace's bucket the pacer leaves for other clients.
        bucket: the server's bucket generation when known (``legacy``/``v2``); learnt
            from the first 429 otherwise.
        pace_margin: seconds of network jitter the pacer absorbs (None: its default).
        rng: the jitter source of back-off waits.
        sleep: the coroutine used for back-off waits (tests pass a recorder).
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: Secret,
        key_source: str | None = None,
        rate: Rate = DEFAULT_RATE,
        concurrency: int = 4,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        call_deadline: float | None = None,
        retry: RetryPolicy = RetryPolicy(),
        reserve: int = DEFAULT_RESERVE,
        bucket: BucketKind | None = None,
        pace_margin: float | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        problem = key_problem(api_key.reveal())
        if problem is not None:
            raise ConfigError(key_advice(key_source or "the API key", problem))
        self.key_source = key_source
        self.call_deadline = call_deadline if call_deadline is not None else 3 * timeout
        self.retry = retry
        self.stats = CallStats()
        self.pacer = Pacer(
            rate, reserve=reserve, group=concurrency, margin=pace_margin, bucket=bucket, sleep=sleep
        )
        self._secret = api_key.reveal()
        self._probed = False
        self._slots = asyncio.Semaphore(concurrency)
        self._rng = rng or random.Random()
        self._sleep = sleep
        self.http = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            headers={
                "Authorization": f"Bearer {api_key.reveal()}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            limits=httpx.Limits(
                max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2
            ),
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def learn_bucket(self) -> BucketKind | None:
        """Tell the pacer which rate-limit bucket the workspace has, unless it knows.

        One metadata call (no token spent, see :mod:`.bucket_probe`), made once a
        session; the kind, or None when the server would not say.
        """
        if self.pacer.bucket is not None or self._probed:
            return self.pacer.bucket
        self._probed = True
        self.stats.count("metadata")
        kind = await probe_bucket(self.http, redact=self.redact)
        if kind is not None and self.pacer.bucket is None:
            self.pacer.bucket = kind
            log.debug("the workspace's API calls are counted by the %s rate-limit bucket", kind)
        return kind

    def redact(self, text: str) -> str:
        """``text`` with the API key replaced by ``***`` wherever the server echoed it.

        Every message built from what the server or the network said passes here, so
        no error, reject reason, checkpoint entry or log line downstream holds the key.
        """
        return text.replace(self._secret, "***")

    async def request(
        self,
        kind: CallKind,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        idempotent: bool = True,
        answer: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Send one call with pacing and retries; return its decoded JSON body.

        Metadata calls are not paced: Twenty does not count them against the
        workspace bucket (twenty-api.md §5.1). ``idempotent`` false (plain creates)
        forbids re-sending a call that may have reached the server. ``answer``, when
        given, turns the decoded body into the result and may raise a retriable error
        (an unconfirmed write), which is retried like any other.
        """
        attempt = 0
        while True:
            try:
                return await self._send_once(kind, method, path, params, json_body, answer)
            except RetriableApiError as exc:
                maybe_applied = isinstance(exc, UnconfirmedWriteError) or (
                    isinstance(exc, TransportError) and exc.maybe_applied
                )
                if maybe_applied and not idempotent:
                    raise
                attempt += 1
                if attempt > self.retry.max_retries:
                    exc.attempts = attempt
                    raise
                delay = self._delay_before_retry(exc, attempt)
                limited = isinstance(exc, RateLimitedError)
                log.warning(
                    "%s; retry %d/%d in %.1fs",
                    exc,
                    attempt,
                    self.retry.max_retries,
                    delay,
                    extra={
                        "event": "rate_limited" if limited else "retry",
                        "fields": {
                            "call": kind,
                            "method": method,
                            "path": path,
                            "status": exc.status_code,
                            "attempt": attempt,
                            "max_retries": self.retry.max_retries,
                            "delay": round(delay, 3),
                            "reason": str(exc),
                        },
                    },
                )
                await self._sleep(delay)

    def _delay_before_retry(self, exc: RetriableApiError, attempt: int) -> float:
        """Count the retry and return how long to wait; a 429 also slows every caller."""
        self.stats.retries += 1
        if not isinstance(exc, RateLimitedError):
            return self.retry.backoff(attempt, self._rng)
        self.stats.rate_limited += 1
        # the pacer took the refusal in when it came (``_send_once``) and holds every
        # caller until the bucket has a token again; the retry then waits in line there
        return self.pacer.held_for(self.pacer.now())

    async def _send_once(
        self,
        kind: CallKind,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        body: Any,
        answer: Callable[[Any], Any] | None,
    ) -> Any:
        paced = kind != "metadata"
        # built before the wait, so a call leaves as soon as the pacer lets it start
        with map_httpx_errors(method, path, redact=self.redact):
            request = self.http.build_request(method, path, params=params, json=body)
        async with self._slots:
            started = await self.pacer.wait() if paced else 0.0
            self.stats.count(kind)
            if paced:
                request.extensions["trace"] = self._departure(started)
            try:
                with map_httpx_errors(method, path, redact=self.redact):
                    response = await self._send_in_time(request, method, path)
            except BaseException:
                if paced:
                    self.pacer.failed()
                raise
            self.stats.bytes_sent += len(response.request.content)
            self.stats.bytes_received += len(response.content)
        try:
            result = decode_answer(
                response, method=method, path=path, key_source=self.key_source, redact=self.redact
            )
            if answer is not None:
                result = answer(result)
        except RateLimitedError as exc:
            if paced:
                self.pacer.refused(started, self.pacer.now(), _news(exc))
            raise
        except BaseException:
            if paced:
                self.pacer.answered(started, self.pacer.now())  # the server counted it
            raise
        if paced:
            self.pacer.answered(started, self.pacer.now())
        return result

    def _departure(self, started: float) -> Callable[[str, Any], Awaitable[None]]:
        """An httpcore trace hook telling the pacer when the call's request left."""

        async def trace(event: str, info: Any) -> None:
            if event.endswith("send_request_body.complete"):
                self.pacer.sent(started, self.pacer.now())

        return trace

    async def _send_in_time(self, request: httpx.Request, method: str, path: str) -> httpx.Response:
        """One request, body read included, within :attr:`call_deadline`.

        httpx's timeout applies to each read, so a server that sends one byte a second
        never trips it; this deadline bounds the whole call.
        """
        try:
            async with asyncio.timeout(self.call_deadline):
                return await self.http.send(request)
        except TimeoutError as exc:
            raise TransportError(
                f"{method} {path}: no complete answer within {self.call_deadline:g}s "
                "(the server is too slow or stalled while answering)",
                maybe_applied=True,
                method=method,
                path=path,
            ) from exc

    async def graphql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        kind: CallKind = "read",
        idempotent: bool = True,
    ) -> dict[str, Any]:
        """Run one GraphQL document on ``/graphql``; return its ``data``."""
        body = await self.request(
            kind,
            "POST",
            "/graphql",
            json_body={"query": query, "variables": variables or {}},
            idempotent=idempotent,
        )
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise FatalApiError("POST /graphql: answer without 'data'")
        return data


def _news(exc: RateLimitedError) -> LimitNews:
    """What a 429 said about the server's bucket, for the pacer."""
    return LimitNews(
        bucket=exc.bucket, limit=exc.limit, window_s=exc.window_s, retry_after=exc.retry_after
    )
