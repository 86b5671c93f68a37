"""Fault injection for tests: latency, 500s, cut connections, outages and bad answers.

An ASGI wrapper around the sandbox app, off unless :class:`Faults` sets a rate; each
faulted call draws one number, so a seed gives the same faults every run.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.sandbox.http_errors import rest_error


class InjectedDisconnect(httpx.RemoteProtocolError):
    """Raised by the fault injector to cut a connection mid-answer.

    In-process, httpx sees it as the transport error it is; over a socket, uvicorn
    closes the connection because the answer had already started.
    """


AnswerFault = Literal["no_ids", "wrong_ids", "duplicate_ids", "short", "garbage", "trickle"]
ANSWER_FAULTS: tuple[AnswerFault, ...] = (
    "no_ids",
    "wrong_ids",
    "duplicate_ids",
    "short",
    "garbage",
    "trickle",
)
GARBAGE_BODIES: tuple[tuple[bytes, bytes], ...] = (
    (b"application/json", b'{"data": {"createNotes": [{"id": '),  # malformed JSON
    (b"application/json", b""),  # empty body
    (b"text/html", b"<html><body><h1>Welcome to nginx!</h1></body></html>"),
)


@dataclass(frozen=True)
class Faults:
    """Fault injection for tests, off by default; applies to core REST and GraphQL calls.

    Each call draws one number; the shares below are consecutive slices of [0, 1), so
    at most one fault hits a call. With only the first four set, the draws are the
    same as before the later ones existed (same seed, same faults).

    Attributes:
        latency: (min, max) seconds by which each answer is held back. The call is
            applied on arrival and its answer is late, like a slow database or a long
            way back; arrival times (what the token bucket measures) are not jittered.
        error_rate: share of calls answered 500 before anything is applied.
        reset_rate: share of calls whose connection is cut before anything is applied.
        drop_after_apply_rate: share of calls applied, whose answer is then lost.
        seed: seed of the random draws, so a test sees the same faults every run.
        no_ids_rate: share of calls applied whose batch-create answer lists ``{}``
            for every record (no id at all).
        wrong_ids_rate: ... whose answer carries fresh ids, not those stored.
        duplicate_ids_rate: ... whose answer repeats the first record's id throughout.
        short_rate: ... whose answer lists one record fewer than were sent.
        garbage_rate: ... answered 200 with malformed JSON, an empty body or an HTML page.
        trickle_rate: ... whose answer body comes ``trickle_bytes_per_s`` bytes a second.
        echo_key_rate: share of calls answered 500, before anything is applied, with
            a message that quotes the caller's Authorization header (a leaky proxy).
        spike_rate: share of calls applied whose answer is held ``spike_s`` seconds
            (past the client's timeout, if ``spike_s`` is larger).
        outage: (start, duration) seconds, counted from the first faulted call: while
            it lasts, every faulted call gets ``outage_mode`` and nothing is applied.
        outage_mode: ``503`` (an HTML page from a load balancer) or ``reset`` (the
            connection is cut before an answer).
        metadata: fault the metadata API too (schema reads), not only core calls.
        trace: a file to which lines are appended as calls pass: ``arrive``,
            ``applied``, ``answered`` and ``fault:<kind>``, each with the call's number,
            method and path, so a test can act at a precise moment of a run and count
            the faults it met.

    The answer faults (``no_ids`` to ``trickle``) change only the answers of batch
    creates (REST ``/rest/batch/...``, GraphQL ``create<Plural>``); other calls that
    draw them pass unchanged.
    """

    latency: tuple[float, float] = (0.0, 0.0)
    error_rate: float = 0.0
    reset_rate: float = 0.0
    drop_after_apply_rate: float = 0.0
    seed: int | None = None
    no_ids_rate: float = 0.0
    wrong_ids_rate: float = 0.0
    duplicate_ids_rate: float = 0.0
    short_rate: float = 0.0
    garbage_rate: float = 0.0
    trickle_rate: float = 0.0
    trickle_bytes_per_s: float = 1.0
    echo_key_rate: float = 0.0
    spike_rate: float = 0.0
    spike_s: float = 0.0
    outage: tuple[float, float] = (0.0, 0.0)
    outage_mode: Literal["503", "reset"] = "503"
    metadata: bool = False
    trace: str | None = None

    def answer_rate(self, kind: AnswerFault) -> float:
        """The share of calls whose batch-create answer gets fault ``kind``."""
        rate: float = getattr(self, f"{kind}_rate")
        return rate

    @property
    def active(self) -> bool:
        """Whether any fault is configured."""
        return (
            self.latency[1] > 0
            or self.error_rate > 0
            or self.reset_rate > 0
            or self.drop_after_apply_rate > 0
            or any(self.answer_rate(kind) > 0 for kind in ANSWER_FAULTS)
            or self.echo_key_rate > 0
            or self.spike_rate > 0
            or self.outage[1] > 0
            or self.trace is not None
        )


class FaultInjector:
    """ASGI wrapper that adds latency, 500s, cut connections and bad answers to API calls."""

    def __init__(self, app: ASGIApp, faults: Faults, rng: random.Random) -> None:
        self.app = app
        self.faults = faults
        self.rng = rng
        self._calls = 0
        self._first_call: float | None = None
        self._trace = open(faults.trace, "a", buffering=1) if faults.trace else None  # noqa: SIM115

    def close(self) -> None:
        """Close the trace file, if any."""
        if self._trace is not None:
            self._trace.close()
            self._trace = None

    def _note(self, event: str, number: int, scope: Scope) -> None:
        if self._trace is not None:
            self._trace.write(f"{event} {number} {scope.get('method')} {scope.get('path')}\n")

    def _in_outage(self) -> bool:
        start, duration = self.faults.outage
        if duration <= 0:
            return False
        now = time.monotonic()
        if self._first_call is None:
            self._first_call = now
        return start <= now - self._first_call < start + duration

    def _faulted_path(self, scope: Scope) -> bool:
        """Core REST and GraphQL calls; the metadata API too when ``faults.metadata``."""
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == "/graphql" or (
            path.startswith("/rest/") and not path.startswith("/rest/metadata")
        ):
            return True
        return self.faults.metadata and (path == "/metadata" or path.startswith("/rest/metadata"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.faults.active or not self._faulted_path(scope):
            await self.app(scope, receive, send)
            return
        self._calls += 1
        number = self._calls
        self._note("arrive", number, scope)
        traced = send

        async def answered(message: Message) -> None:
            await traced(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self._note("answered", number, scope)

        send = answered
        if self._in_outage():
            await self._outage(scope, receive, send, number)
            return
        low, high = self.faults.latency
        delay = self.rng.uniform(low, high) if high > 0 else 0.0
        if delay:
            send = _delayed(send, delay)
        await self._draw(self.rng.random(), scope, receive, send, number)

    async def _outage(self, scope: Scope, receive: Receive, send: Send, number: int) -> None:
        """A call during the outage: a cut connection or a load balancer's HTML 503."""
        self._note(f"fault:outage-{self.faults.outage_mode}", number, scope)
        if self.faults.outage_mode == "reset":
            await _cut(send, "injected fault: outage, connection reset")
        await Response(
            b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>",
            status_code=503,
            media_type="text/html",
        )(scope, receive, send)

    async def _draw(
        self, roll: float, scope: Scope, receive: Receive, send: Send, number: int
    ) -> None:
        """The fault whose slice of [0, 1) holds ``roll``, or the call passed through."""
        faults = self.faults
        if roll < faults.reset_rate:
            self._note("fault:reset", number, scope)
            await _cut(send, "injected fault: connection reset before the call was applied")
            return
        roll -= faults.reset_rate
        if roll < faults.error_rate:
            self._note("fault:error", number, scope)
            response = rest_error(500, "InternalServerErrorException", "Injected fault")
            await response(scope, receive, send)
            return
        roll -= faults.error_rate
        if roll < faults.drop_after_apply_rate:
            await self._drop_after_apply(scope, receive, send, number)
            return
        roll -= faults.drop_after_apply_rate
        for kind in ANSWER_FAULTS:
            rate = faults.answer_rate(kind)
            if roll < rate:
                await self._bad_answer(kind, scope, receive, send, number)
                return
            roll -= rate
        if roll < faults.echo_key_rate:
            self._note("fault:echo_key", number, scope)
            header = dict(scope.get("headers") or []).get(b"authorization", b"").decode()
            response = rest_error(
                500,
                "InternalServerErrorException",
                f"upstream refused the request with Authorization: {header}",
            )
            await response(scope, receive, send)
            return
        roll -= faults.echo_key_rate
        if roll < faults.spike_rate:
            self._note("fault:spike", number, scope)
            send = _delayed(send, faults.spike_s)
        await self.app(scope, receive, _applied(send, lambda: self._note("applied", number, scope)))

    async def _drop_after_apply(
        self, scope: Scope, receive: Receive, send: Send, number: int
    ) -> None:
        """Apply the call, swallow its answer, then cut the connection."""
        self._note("fault:drop_after_apply", number, scope)

        async def swallow(message: Message) -> None:
            return None

        await self.app(scope, receive, swallow)
        self._note("applied", number, scope)
        await _cut(send, "injected fault: the call was applied, then the connection dropped")

    async def _bad_answer(
        self, kind: AnswerFault, scope: Scope, receive: Receive, send: Send, number: int
    ) -> None:
        """Apply the call, then send its answer changed by ``kind`` (batch creates only)."""
        start: Message = {}
        chunks: list[bytes] = []

        async def keep(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            else:
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, keep)
        self._note("applied", number, scope)
        body = b"".join(chunks)
        content_type = b"application/json"
        changed = _changed_answer(kind, body, self.rng)
        if changed is None:  # not a batch create, or an error: the answer passes unchanged
            changed = body
        else:
            self._note(f"fault:{kind}", number, scope)
            if kind == "garbage":
                content_type, changed = self.rng.choice(GARBAGE_BODIES)
        headers = [
            (name, value)
            for name, value in start.get("headers", [])
            if name not in (b"content-length", b"content-type")
        ]
        headers += [
            (b"content-type", content_type),
            (b"content-length", str(len(changed)).encode()),
        ]
        await send({**start, "headers": headers})
        if kind == "trickle" and changed is not body:
            pause = 1 / self.faults.trickle_bytes_per_s
            for index in range(len(changed)):
                last = index == len(changed) - 1
                await send(
                    {
                        "type": "http.response.body",
                        "body": changed[index : index + 1],
                        "more_body": not last,
                    }
                )
                if not last:
                    await asyncio.sleep(pause)
            return
        await send({"type": "http.response.body", "body": changed})


def _created_list(answer: Any) -> list[Any] | None:
    """The record list of a batch-create answer (REST or GraphQL), or None."""
    if not isinstance(answer, dict) or not isinstance(answer.get("data"), dict):
        return None
    data = answer["data"]
    if len(data) != 1:
        return None
    ((name, value),) = data.items()
    if not name.startswith("create") or not isinstance(value, list):
        return None
    return value


def _changed_answer(kind: AnswerFault, body: bytes, rng: random.Random) -> bytes | None:
    """``body`` with fault ``kind``, or None when it is no batch-create answer."""
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    records = _created_list(answer)
    if not records:
        return None
    if kind == "no_ids":
        records[:] = [{} for _ in records]
    elif kind == "wrong_ids":
        for record in records:
            if isinstance(record, dict):
                record["id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    elif kind == "duplicate_ids":
        first = records[0].get("id") if isinstance(records[0], dict) else None
        for record in records:
            if isinstance(record, dict):
                record["id"] = first
    elif kind == "short":
        del records[-1]
    return json.dumps(answer).encode()


def _applied(send: Send, note: Callable[[], None]) -> Send:
    """A ``send`` that notes the call as applied when its answer starts."""

    async def noting(message: Message) -> None:
        if message["type"] == "http.response.start":
            note()
        await send(message)

    return noting


def _delayed(send: Send, delay: float) -> Send:
    """A ``send`` that holds the answer back for ``delay`` seconds before it starts."""

    async def delayed_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            await asyncio.sleep(delay)
        await send(message)

    return delayed_send


async def _cut(send: Send, reason: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"data":', "more_body": True})
    raise InjectedDisconnect(reason)
