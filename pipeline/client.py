"""TwentyClient: the one place that talks to a Twenty workspace.

One :class:`httpx.AsyncClient` per run (transport injectable for tests and the
in-process sandbox), bearer auth, pacing, retries and the translation of every
HTTP outcome into :mod:`pipeline.errors` live here and nowhere else.

Pacing (twenty-api.md §5.1). Twenty's legacy throttler is a token bucket whose
refill is ``floor(elapsed * limit / window)`` and whose clock restarts on every
accepted call, so a call that arrives less than ``window / limit`` after the
previous one regains no token at all. A client that merely stays under
"100 per minute" on average still drains the bucket and meets 429s. The
:class:`Pacer` therefore spaces call *starts* at least ``window / limit`` apart
(plus a small margin for network jitter), through an ``aiolimiter`` bucket of
capacity one, while up to ``concurrency`` calls stay in flight so that slow
answers do not waste the budget.

Trust (the answers are checked, the key never leaks). A write is confirmed only by an
answer with one record per record sent, each with an id, the ids distinct and equal to
the ids the client chose (:func:`confirm_written`); anything else is an
:class:`UnconfirmedWriteError`, retried like a server fault. Every error of a call
passes through one place (``TwentyClient._send_once``) that replaces the API key by
``***`` in whatever the server wrote. One call, body read included, has an overall
deadline (``call_deadline``), since httpx's timeout only bounds each read. Errors of the
request itself (GraphQL validation, an unknown field) are :class:`RequestRejectedError`
and stop the run instead of being bisected like bad data; TLS failures are
:class:`TlsError`, never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple

import httpx
from aiolimiter import AsyncLimiter

from pipeline.config import (
    DEFAULT_RATE,
    DEFAULT_TIMEOUT,
    ApiFlavour,
    Rate,
    Secret,
    Settings,
    key_advice,
    key_problem,
)
from pipeline.errors import (
    ApiError,
    AuthError,
    BatchRejectedError,
    BatchTooLargeError,
    ConfigError,
    FatalApiError,
    NotFoundError,
    RateLimitedError,
    RequestRejectedError,
    RetriableApiError,
    ServerError,
    TlsError,
    TransportError,
    UnconfirmedWriteError,
)

log = logging.getLogger("pipeline.client")

CallKind = Literal["read", "write", "metadata"]
Record = dict[str, Any]

USER_AGENT = "twenty-pipeline"
PAGE_SIZE = 200  # QUERY_MAX_RECORDS: the largest page Twenty serves (twenty-api.md §2.2)


class ObjectNames(NamedTuple):
    """The two names under which Twenty routes an object (``person`` / ``people``)."""

    singular: str
    plural: str

    @property
    def singular_type(self) -> str:
        """GraphQL type stem: ``Person`` (first letter capitalised, as Twenty does)."""
        return self.singular[:1].upper() + self.singular[1:]

    @property
    def plural_type(self) -> str:
        """Plural stem for resolver names: ``People`` in ``createPeople``."""
        return self.plural[:1].upper() + self.plural[1:]


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
class Page:
    """One page of a list call."""

    records: list[Record]
    has_next_page: bool
    end_cursor: str | None
    total_count: int | None


# --------------------------------------------------------------------------- pacing


class Pacer:
    """Spaces call starts so that Twenty's token bucket never runs dry.

    The spacing is widened by ``margin`` (2 %) or ``min_margin`` (15 ms), whichever
    is larger, because the server measures *arrival* times: a call that arrives even
    1 ms early regains no token, and jitter of a few milliseconds is common even on
    loopback. At Twenty's 100/60 that is 615 ms, 97.6 % of the ceiling. After a 429 the spacing
    grows (up to 4x) and every caller waits out the announced ``Retry-After``;
    after a long run of successes it shrinks back to the base spacing.
    """

    SLOWDOWN = 1.25
    MAX_SLOWDOWN = 4.0
    RECOVER_AFTER = 100

    def __init__(
        self,
        rate: Rate,
        *,
        margin: float = 0.02,
        min_margin: float = 0.015,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._sleep = sleep
        self.base_interval: float = rate.interval + max(rate.interval * margin, min_margin)
        self.interval: float = self.base_interval
        self._limiter = AsyncLimiter(1, self.base_interval)
        self._pending_swap = False
        self._lock = asyncio.Lock()
        self._resume_at = 0.0
        self._last_start: float | None = None
        self._successes = 0

    async def wait(self) -> None:
        """Return when the next call may start."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            if self._resume_at > loop.time():
                await self._sleep(self._resume_at - loop.time())
            if self._pending_swap:
                self._pending_swap = False
                self._limiter = AsyncLimiter(1, self.interval)
                if self._last_start is not None:
                    gap = self._last_start + self.interval - loop.time()
                    if gap > 0:
                        await self._sleep(gap)
            await self._limiter.acquire()
            self._last_start = loop.time()

    def pause(self, seconds: float) -> None:
        """Hold every caller for ``seconds`` from now (the bucket is per workspace)."""
        loop = asyncio.get_running_loop()
        self._resume_at = max(self._resume_at, loop.time() + seconds)

    def slow_down(self) -> None:
        """Widen the spacing after a 429."""
        self._successes = 0
        new = min(self.interval * self.SLOWDOWN, self.base_interval * self.MAX_SLOWDOWN)
        if new != self.interval:
            self.interval = new
            self._pending_swap = True

    def succeeded(self) -> None:
        """Note a call that was not rate limited; recover the pace after a long run of them."""
        self._successes += 1
        if self.interval > self.base_interval and self._successes >= self.RECOVER_AFTER:
            self._successes = 0
            self.interval = max(self.base_interval, self.interval / self.SLOWDOWN)
            self._pending_swap = True


# --------------------------------------------------------------------------- error mapping


@contextlib.contextmanager
def map_httpx_errors(method: str, path: str) -> Iterator[None]:
    """Translate every httpx exception raised inside into a :mod:`pipeline.errors` one."""
    where: dict[str, Any] = {"method": method, "path": path}
    try:
        yield
    except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise TransportError(
            f"{method} {path}: timed out connecting to the server ({type(exc).__name__})",
            maybe_applied=False,
            **where,
        ) from exc
    except httpx.TimeoutException as exc:
        raise TransportError(
            f"{method} {path}: the server did not answer in time ({type(exc).__name__})",
            maybe_applied=True,
            **where,
        ) from exc
    except (httpx.ConnectError, httpx.ProxyError) as exc:
        tls = _tls_failure(exc)
        if tls is not None:
            raise TlsError(_tls_message(exc, tls), **where) from exc
        raise TransportError(
            f"{method} {path}: cannot connect to {_origin(exc)} ({exc or type(exc).__name__})",
            maybe_applied=False,
            **where,
        ) from exc
    except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        raise TransportError(
            f"{method} {path}: the connection dropped before the answer arrived "
            f"({type(exc).__name__})",
            maybe_applied=True,
            **where,
        ) from exc
    except httpx.DecodingError as exc:
        raise ServerError(
            f"{method} {path}: the answer could not be decoded ({exc})", **where
        ) from exc
    except httpx.UnsupportedProtocol as exc:
        raise FatalApiError(
            f"{method} {path}: unsupported URL scheme; the API URL must start with "
            "http:// or https://",
            **where,
        ) from exc
    except httpx.TooManyRedirects as exc:
        raise FatalApiError(
            f"{method} {path}: too many redirects; set TWENTY_API_URL to the final address",
            **where,
        ) from exc
    except httpx.HTTPStatusError as exc:
        raise error_for_status(exc.response, method=method, path=path) from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        # LocalProtocolError and anything httpx adds later: not something a retry fixes.
        raise FatalApiError(f"{method} {path}: {type(exc).__name__}: {exc}", **where) from exc


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The ``ssl`` error behind a connect failure (httpx chains httpcore's, which chains it)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _tls_message(exc: httpx.HTTPError, tls: ssl.SSLError) -> str:
    try:
        host = exc.request.url.host
    except RuntimeError:
        host = "the server"
    if isinstance(tls, ssl.SSLCertVerificationError):
        reason = tls.verify_message or tls.reason or str(tls)
        return (
            f"TLS certificate of {host} could not be verified: {reason}; fix the certificate "
            "or set SSL_CERT_FILE to a CA bundle that trusts it"
        )
    reason = tls.reason or str(tls)
    return (
        f"TLS handshake with {host} failed: {reason}; check that the URL's scheme and port "
        "serve https (or set SSL_CERT_FILE to a CA bundle that trusts the server)"
    )


def _origin(exc: httpx.HTTPError) -> str:
    try:
        url = exc.request.url
    except RuntimeError:  # an exception raised without its request
        return "the server"
    return f"{url.scheme}://{url.netloc.decode()}"


def _server_message(body: Any, response: httpx.Response) -> str:
    if isinstance(body, dict):
        messages = body.get("messages")
        if isinstance(messages, list) and messages:
            return "; ".join(str(m) for m in messages)
        for key in ("message", "error"):
            if isinstance(body.get(key), str):
                return str(body[key])
    text = response.text.strip()
    return text[:300] if text else response.reason_phrase


def _retry_after(response: httpx.Response, body: Any) -> float | None:
    header = response.headers.get("retry-after")
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            with contextlib.suppress(TypeError, ValueError):
                moment = email.utils.parsedate_to_datetime(header)
                return max(0.0, moment.timestamp() - time.time())
    if isinstance(body, dict) and isinstance(body.get("retryAfterSeconds"), int | float):
        return float(body["retryAfterSeconds"])
    return None


_MAX_RECORDS_RE = re.compile(r"Maximum number of records[^0-9]*(\d+)", re.IGNORECASE)


def _too_large_limit(message: str) -> int | None:
    match = _MAX_RECORDS_RE.search(message)
    return int(match.group(1)) if match else None


# Twenty's (and graphql-js's) wording for a request that is wrong whatever its records
# hold: an unknown or unwritable field, a document that fails validation. Per-record
# data errors ("Invalid value ...", "A duplicate entry ...", "Foreign key violation ...")
# do not match.
_REQUEST_FAULT_RE = re.compile(
    r"Cannot query field"
    r"|is not defined by type"
    r"|Unknown (?:argument|type|field)"
    r"|doesn't have any \"[^\"]*\" field"
    r"|does not support write operations"
    r"|is written through its join column"
    r"|Must provide query string"
    r"|^Syntax Error",
    re.IGNORECASE,
)
SYSTEMIC_GRAPHQL_CODES = ("GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED")


def is_request_fault(message: str) -> bool:
    """True when ``message`` says the request itself is wrong, not one record's data."""
    return bool(_REQUEST_FAULT_RE.search(message))


def _request_rejected(method: str, path: str, messages: str, where: dict[str, Any]) -> ApiError:
    return RequestRejectedError(
        f"{method} {path}: Twenty refused the request itself, so every batch would fail "
        f"the same way; stopped (checkpoint kept: fix the mapping or the API flavour and "
        f"run again): {messages}",
        **where,
    )


def error_for_status(
    response: httpx.Response, *, method: str, path: str, key_source: str | None = None
) -> ApiError:
    """The error for a non-2xx REST answer (twenty-api.md §1, §2.8, §5)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    status = response.status_code
    message = _server_message(body, response)
    where: dict[str, Any] = {
        "status_code": status,
        "method": method,
        "path": path,
        "server_message": message,
    }
    if status in (401, 403):
        return AuthError(_auth_message(status, message, key_source), **where)
    if status == 429:
        return RateLimitedError(
            f"{method} {path}: rate limited ({message})",
            retry_after=_retry_after(response, body),
            **where,
        )
    if status == 408 or status >= 500:
        return ServerError(f"{method} {path}: server error {status}: {message}", **where)
    if status in (400, 422):
        if is_request_fault(message):
            return _request_rejected(method, path, message, where)
        if "maximum number of records" in message.lower():
            return BatchTooLargeError(
                f"{method} {path}: {message}", limit=_too_large_limit(message), **where
            )
        return BatchRejectedError(f"{method} {path}: Twenty refused the data: {message}", **where)
    if status == 404:
        return NotFoundError(f"{method} {path}: not found: {message}", **where)
    if 300 <= status < 400:
        target = response.headers.get("location", "?")
        return FatalApiError(
            f"{method} {path}: redirected ({status}) to {target}; "
            "set TWENTY_API_URL to the server's final address",
            **where,
        )
    return FatalApiError(f"{method} {path}: unexpected answer {status}: {message}", **where)


def _auth_message(status: int, message: str, key_source: str | None) -> str:
    source = key_source or "the configured key"
    return (
        f"the workspace refused the API key from {source} ({status}: {message}). "
        "Check that the key exists, has not expired or been revoked, and belongs to this "
        "workspace (Settings > APIs & Webhooks)."
    )


def _is_systemic_graphql_error(error: Any) -> bool:
    if not isinstance(error, dict):
        return False
    extensions = error.get("extensions")
    code = extensions.get("code") if isinstance(extensions, dict) else None
    return code in SYSTEMIC_GRAPHQL_CODES or is_request_fault(str(error.get("message", "")))


def graphql_error(
    errors: list[Any], *, method: str, path: str, key_source: str | None = None
) -> ApiError:
    """The error for a GraphQL answer carrying ``errors`` (twenty-api.md §3, §5)."""
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    message = str(first.get("message", "unknown GraphQL error"))
    raw_extensions = first.get("extensions")
    extensions: dict[str, Any] = raw_extensions if isinstance(raw_extensions, dict) else {}
    code = str(extensions.get("code", ""))
    messages = "; ".join(str(e.get("message")) for e in errors if isinstance(e, dict))
    where: dict[str, Any] = {"method": method, "path": path, "server_message": messages}
    if code in ("UNAUTHENTICATED", "FORBIDDEN"):
        return AuthError(_auth_message(200, messages, key_source), **where)
    if code == "RATE_LIMITED" or message.startswith("Limit reached"):
        retry_ms = extensions.get("retryAfterMs")
        retry = float(retry_ms) / 1000 if isinstance(retry_ms, int | float) else None
        return RateLimitedError(
            f"{method} {path}: rate limited ({message})", retry_after=retry, **where
        )
    if code in ("INTERNAL_SERVER_ERROR", "TIMEOUT") or "timeout" in message.lower():
        return ServerError(f"{method} {path}: server error: {messages}", **where)
    if "maximum number of records" in message.lower():
        return BatchTooLargeError(
            f"{method} {path}: {message}", limit=_too_large_limit(message), **where
        )
    if code == "NOT_FOUND":
        return NotFoundError(f"{method} {path}: not found: {messages}", **where)
    if any(_is_systemic_graphql_error(e) for e in errors):
        return _request_rejected(method, path, messages, where)
    if code in ("BAD_USER_INPUT", "GRAPHQL_VALIDATION_FAILED", "CONFLICT", ""):
        return BatchRejectedError(f"{method} {path}: Twenty refused the data: {messages}", **where)
    return FatalApiError(f"{method} {path}: {code}: {messages}", **where)


def decode_answer(
    response: httpx.Response, *, method: str, path: str, key_source: str | None = None
) -> Any:
    """Return the JSON body of a successful answer, or raise the matching error."""
    status = response.status_code
    is_graphql = path in ("/graphql", "/metadata")
    if not 200 <= status < 300 and not (is_graphql and status == 400):
        raise error_for_status(response, method=method, path=path, key_source=key_source)
    try:
        body = response.json()
    except ValueError:
        if not 200 <= status < 300:
            raise error_for_status(
                response, method=method, path=path, key_source=key_source
            ) from None
        kind = response.headers.get("content-type", "unknown type")
        raise FatalApiError(
            f"{method} {path}: the server answered {status} with non-JSON ({kind}); "
            "is TWENTY_API_URL the base URL of your Twenty server?",
            status_code=status,
            method=method,
            path=path,
        ) from None
    if is_graphql and isinstance(body, dict) and body.get("errors"):
        raise graphql_error(body["errors"], method=method, path=path, key_source=key_source)
    if not 200 <= status < 300:
        raise error_for_status(response, method=method, path=path, key_source=key_source)
    return body


def single_list(data: Any, *, what: str) -> list[Any]:
    """The one list under ``data``, whatever its key (``createPeople``, ``people``, ``objects``)."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
    raise FatalApiError(f"unexpected answer shape for {what}: no single list under 'data'")


def confirm_written(result: Any, sent: list[Record], *, method: str, path: str) -> list[Record]:
    """``result`` if it confirms every record of ``sent``, else :class:`UnconfirmedWriteError`.

    Confirmed means: a list with exactly one record per record sent, each with an id,
    the ids distinct, and each equal to the id sent where the client chose it. A 2xx
    answer that says less (``{}`` per record, a short list) proves nothing was stored.
    """
    problem: str | None = None
    if not isinstance(result, list):
        problem = "it holds no list of records"
    elif len(result) != len(sent):
        problem = f"{len(sent)} records were sent, it holds {len(result)}"
    else:
        seen: set[str] = set()
        for number, (record, answer) in enumerate(zip(sent, result, strict=True), start=1):
            got = answer.get("id") if isinstance(answer, dict) else None
            if not isinstance(got, str) or not got:
                problem = f"record {number} of {len(sent)} has no id"
                break
            chosen = record.get("id")
            if isinstance(chosen, str) and chosen and chosen.lower() != got.lower():
                problem = f"record {number} was sent with id {chosen}, the answer has id {got}"
                break
            if got.lower() in seen:
                problem = f"id {got} is given to two records"
                break
            seen.add(got.lower())
    if problem is None:
        return list(result)
    raise UnconfirmedWriteError(
        f"{method} {path}: the answer does not confirm the write ({problem}); "
        "the batch is not recorded as done",
        method=method,
        path=path,
    )


# --------------------------------------------------------------------------- client


class TwentyClient:
    """An async client for one Twenty workspace.

    Use it as an async context manager; it owns one ``httpx.AsyncClient``.

    Args:
        base_url: workspace base URL (``https://crm.example.com``).
        api_key: the API key.
        key_source: where the key came from; named in auth errors instead of the key.
        rate: the workspace's call budget, paced per :class:`Pacer`.
        concurrency: calls in flight at once.
        api: flavour for writes (``graphql`` batch upsert, or REST ``/rest/batch``).
        transport: an httpx transport (``MockTransport``, ``ASGITransport``) for tests.
        timeout: seconds httpx waits to connect, and for each read or write.
        call_deadline: seconds one whole call may take, body included (default three
            times ``timeout``); an overdue call is a retriable transport error.
        max_retries: attempts after the first before a retriable error is raised.
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
        api: ApiFlavour = "graphql",
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        call_deadline: float | None = None,
        max_retries: int = 8,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        pace_margin: float = 0.02,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        problem = key_problem(api_key.reveal())
        if problem is not None:
            raise ConfigError(key_advice(key_source or "the API key", problem))
        self.api = api
        self.key_source = key_source
        self.call_deadline = call_deadline if call_deadline is not None else 3 * timeout
        self._secret = api_key.reveal()
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stats = CallStats()
        self.max_batch_size: int | None = None
        """Lowered when the server refuses a batch as too large; the loader reads it."""
        self._pacer = Pacer(rate, margin=pace_margin, sleep=sleep)
        self._slots = asyncio.Semaphore(concurrency)
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._http = httpx.AsyncClient(
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

    @classmethod
    def from_settings(
        cls, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> TwentyClient:
        """A client for the workspace ``settings`` names (not the sandbox: see workspace.py)."""
        if settings.api_url is None or settings.api_key is None:
            raise FatalApiError("no workspace URL or API key in the settings")
        return cls(
            base_url=settings.api_url,
            api_key=settings.api_key,
            key_source=settings.api_key_source,
            rate=settings.rate,
            concurrency=settings.concurrency,
            api=settings.api,
            transport=transport,
            timeout=settings.timeout,
            call_deadline=settings.call_deadline,
        )

    async def __aenter__(self) -> TwentyClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    @property
    def pace_interval(self) -> float:
        """Current spacing between call starts, in seconds."""
        return self._pacer.interval

    # ------------------------------------------------------------------ core request

    def _backoff(self, attempt: int) -> float:
        """Exponential back-off with 'equal jitter': half fixed, half random."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2.0 ** (attempt - 1))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

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
                if attempt > self.max_retries:
                    exc.args = (f"{exc.args[0]} (gave up after {attempt} attempts)",)
                    raise
                self.stats.retries += 1
                if isinstance(exc, RateLimitedError):
                    self.stats.rate_limited += 1
                    self._pacer.slow_down()
                    delay = exc.retry_after
                    if delay is None:
                        delay = max(self._backoff(attempt), self._pacer.interval)
                    self._pacer.pause(delay)
                else:
                    delay = self._backoff(attempt)
                log.warning(
                    "%s; retry %d/%d in %.1fs", exc.args[0], attempt, self.max_retries, delay
                )
                await self._sleep(delay)

    async def _send_once(
        self,
        kind: CallKind,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        body: Any,
        answer: Callable[[Any], Any] | None,
    ) -> Any:
        try:
            async with self._slots:
                if kind != "metadata":
                    await self._pacer.wait()
                self.stats.count(kind)
                with map_httpx_errors(method, path):
                    response = await self._request_in_time(method, path, params, body)
                self.stats.bytes_sent += len(response.request.content)
                self.stats.bytes_received += len(response.content)
            result = decode_answer(response, method=method, path=path, key_source=self.key_source)
            if answer is not None:
                result = answer(result)
        except ApiError as exc:
            self._redact(exc)
            raise
        if kind != "metadata":
            self._pacer.succeeded()
        return result

    async def _request_in_time(
        self, method: str, path: str, params: dict[str, Any] | None, body: Any
    ) -> httpx.Response:
        """One request, body read included, within :attr:`call_deadline`.

        httpx's timeout applies to each read, so a server that sends one byte a second
        never trips it; this deadline bounds the whole call.
        """
        try:
            async with asyncio.timeout(self.call_deadline):
                return await self._http.request(method, path, params=params, json=body)
        except TimeoutError as exc:
            raise TransportError(
                f"{method} {path}: no complete answer within {self.call_deadline:g}s "
                "(the server is too slow or stalled while answering)",
                maybe_applied=True,
                method=method,
                path=path,
            ) from exc

    def _redact(self, exc: ApiError) -> None:
        """``exc`` with the API key replaced by ``***`` wherever the server echoed it.

        Every error of a call passes here, so no message, reject reason, checkpoint
        entry or log line downstream can hold the key.
        """
        secret = self._secret
        exc.args = tuple(a.replace(secret, "***") if isinstance(a, str) else a for a in exc.args)
        if exc.server_message is not None:
            exc.server_message = exc.server_message.replace(secret, "***")

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

    # ------------------------------------------------------------------ writes

    async def upsert_many(
        self,
        obj: ObjectNames,
        records: list[Record],
        *,
        upsert: bool = True,
        selection: str = "id",
    ) -> list[Record]:
        """Create or update ``records`` (in order) and return what Twenty answered for each.

        Records are sent in one call when they fit; a "Maximum number of records"
        answer lowers :attr:`max_batch_size` for the rest of the run (to the limit
        the server states, else half) and the records go again in smaller calls.
        """
        if not records:
            return []
        limit = self.max_batch_size or len(records)
        out: list[Record] = []
        for start in range(0, len(records), limit):
            out.extend(
                await self._create_fitting(obj, records[start : start + limit], upsert, selection)
            )
        return out

    async def _create_fitting(
        self, obj: ObjectNames, chunk: list[Record], upsert: bool, selection: str
    ) -> list[Record]:
        try:
            return await self._create_many(obj, chunk, upsert, selection)
        except BatchTooLargeError as exc:
            if len(chunk) <= 1:
                raise
            stated = exc.limit if exc.limit is not None and exc.limit < len(chunk) else None
            new_limit = max(1, stated or len(chunk) // 2)
            self.max_batch_size = min(self.max_batch_size or new_limit, new_limit)
            log.warning(
                "the server takes at most %s records a call; sending %d records in calls of %d",
                exc.limit if exc.limit is not None else "fewer",
                len(chunk),
                self.max_batch_size,
            )
            out: list[Record] = []
            size = self.max_batch_size
            for start in range(0, len(chunk), size):
                out.extend(
                    await self._create_fitting(obj, chunk[start : start + size], upsert, selection)
                )
            return out

    async def _create_many(
        self, obj: ObjectNames, chunk: list[Record], upsert: bool, selection: str
    ) -> list[Record]:
        if self.api == "graphql":
            name = f"create{obj.plural_type}"
            query = (
                f"mutation Create{obj.plural_type}($data: [{obj.singular_type}CreateInput!]!, "
                f"$upsert: Boolean) {{ {name}(data: $data, upsert: $upsert) {{ {selection} }} }}"
            )

            def confirm_graphql(body: Any) -> list[Record]:
                data = body.get("data") if isinstance(body, dict) else None
                result = data.get(name) if isinstance(data, dict) else None
                return confirm_written(result, chunk, method="POST", path="/graphql")

            confirmed: list[Record] = await self.request(
                "write",
                "POST",
                "/graphql",
                json_body={"query": query, "variables": {"data": chunk, "upsert": upsert}},
                idempotent=upsert,
                answer=confirm_graphql,
            )
            return confirmed
        path = f"/rest/batch/{obj.plural}"

        def confirm_rest(body: Any) -> list[Record]:
            data = body.get("data") if isinstance(body, dict) else None
            try:
                result = single_list(data, what=f"POST {path}")
            except FatalApiError:
                result = None
            return confirm_written(result, chunk, method="POST", path=path)

        params = {"upsert": "true"} if upsert else None
        try:
            confirmed = await self.request(
                "write",
                "POST",
                path,
                params=params,
                json_body=chunk,
                idempotent=upsert,
                answer=confirm_rest,
            )
        except BatchRejectedError as exc:
            text = (exc.server_message or "").lower()
            ignored = "record already exists" in text or (
                len(chunk) == 1 and "duplicate entry" in text
            )
            if upsert and ignored:
                # The legacy REST batch handler ignores ?upsert=true (twenty-api.md
                # §2.4a): it answers "Record already exists" for a known id, and a
                # unique violation for a known key - which an honoured upsert of one
                # record cannot cause. Every existing record would fail the same way,
                # so stop instead of rejecting them one by one.
                raise FatalApiError(
                    f"{exc.args[0]} - this Twenty server ignores ?upsert=true on REST "
                    "batch calls (older releases); run again with --api graphql",
                    status_code=exc.status_code,
                    method=exc.method,
                    path=exc.path,
                    server_message=exc.server_message,
                ) from exc
            if upsert and "duplicate entry" in text:
                exc.args = (
                    f"{exc.args[0]} (if records that already exist fail like this, the "
                    "server may ignore ?upsert=true on REST: try --api graphql)",
                )
            raise
        return confirmed

    # ------------------------------------------------------------------ reads

    async def find_many(
        self,
        obj: ObjectNames,
        *,
        filter: str | None = None,
        order_by: str | None = None,
        limit: int = PAGE_SIZE,
        starting_after: str | None = None,
        fields: list[str] | None = None,
        depth: int | None = None,
    ) -> Page:
        """One page of ``GET /rest/{plural}`` (twenty-api.md §2.2-2.3)."""
        params: dict[str, Any] = {"limit": limit}
        if filter:
            params["filter"] = filter
        if order_by:
            params["order_by"] = order_by
        if starting_after:
            params["starting_after"] = starting_after
        if fields:
            params["fields"] = ",".join(fields)
        if depth is not None:
            params["depth"] = depth
        body = await self.request("read", "GET", f"/rest/{obj.plural}", params=params)
        records = single_list(body.get("data"), what=f"GET /rest/{obj.plural}")
        return _page(records, body)

    async def find_many_graphql(
        self,
        obj: ObjectNames,
        *,
        filter: dict[str, Any] | None = None,
        order_by: list[dict[str, Any]] | None = None,
        first: int = PAGE_SIZE,
        after: str | None = None,
        selection: str = "id",
    ) -> Page:
        """One page of the GraphQL connection ``{plural}(filter, orderBy, first, after)``."""
        query = (
            f"query Find{obj.plural_type}($filter: {obj.singular_type}FilterInput, "
            f"$orderBy: [{obj.singular_type}OrderByInput], $first: Int, $after: String) {{ "
            f"{obj.plural}(filter: $filter, orderBy: $orderBy, first: $first, after: $after) {{ "
            f"edges {{ node {{ {selection} }} }} "
            "pageInfo { hasNextPage endCursor } totalCount } }"
        )
        variables = {"filter": filter, "orderBy": order_by, "first": first, "after": after}
        data = await self.graphql(query, variables, kind="read")
        connection = data.get(obj.plural)
        if not isinstance(connection, dict):
            raise FatalApiError(f"query {obj.plural}: answer without a connection")
        records = [edge["node"] for edge in connection.get("edges", [])]
        return _page(records, connection)

    async def iter_pages(
        self,
        obj: ObjectNames,
        *,
        filter: str | None = None,
        order_by: str | None = None,
        page_size: int = PAGE_SIZE,
        fields: list[str] | None = None,
    ) -> AsyncIterator[Page]:
        """Every page of a REST list, following ``endCursor``; a repeated cursor is an error."""
        seen: set[str] = set()
        cursor: str | None = None
        while True:
            page = await self.find_many(
                obj,
                filter=filter,
                order_by=order_by,
                limit=page_size,
                starting_after=cursor,
                fields=fields,
            )
            yield page
            if not page.has_next_page or not page.records:
                return
            if page.end_cursor is None or page.end_cursor in seen:
                raise FatalApiError(
                    f"GET /rest/{obj.plural}: the server repeated a page cursor; "
                    "stopping instead of looping"
                )
            seen.add(page.end_cursor)
            cursor = page.end_cursor

    # ------------------------------------------------------------------ metadata

    async def _metadata_list(self, path: str) -> list[Record]:
        out: list[Record] = []
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            params: dict[str, Any] = {"limit": PAGE_SIZE}
            if cursor:
                params["starting_after"] = cursor
            body = await self.request("metadata", "GET", path, params=params)
            out.extend(single_list(body.get("data"), what=f"GET {path}"))
            info = body.get("pageInfo") or {}
            cursor = info.get("endCursor")
            if not info.get("hasNextPage") or not cursor:
                return out
            if cursor in seen:
                raise FatalApiError(f"GET {path}: the server repeated a page cursor")
            seen.add(cursor)

    async def metadata_objects(self) -> list[Record]:
        """Every object of the workspace (with ``fields`` when the server embeds them)."""
        return await self._metadata_list("/rest/metadata/objects")

    async def metadata_fields(self) -> list[Record]:
        """Every field of the workspace, each with its ``objectMetadataId``."""
        return await self._metadata_list("/rest/metadata/fields")


def _page(records: list[Record], body: dict[str, Any]) -> Page:
    info = body.get("pageInfo") or {}
    total = body.get("totalCount")
    return Page(
        records=records,
        has_next_page=bool(info.get("hasNextPage")),
        end_cursor=info.get("endCursor"),
        total_count=int(total) if isinstance(total, int | float) else None,
    )


__all__ = [
    "PAGE_SIZE",
    "CallStats",
    "ObjectNames",
    "Pacer",
    "Page",
    "TwentyClient",
    "decode_answer",
    "error_for_status",
    "graphql_error",
    "map_httpx_errors",
]
