"""The sandbox served by uvicorn on a loopback socket, where the wire matters.

Each test starts ``twenty-pipeline sandbox serve --port 0`` as a subprocess and stops
it by process id at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from pipeline import errors
from pipeline.config import Rate, Secret
from pipeline.schema import load_schema
from pipeline.twenty import ObjectNames, TwentyClient
from tests.conftest import Served

PEOPLE = ObjectNames("person", "people")


def client(served: Served, **kw: object) -> TwentyClient:
    options: dict[str, object] = {"rate": Rate(1000, 1), "backoff_base": 0.01, "backoff_cap": 0.05}
    options.update(kw)
    return TwentyClient(base_url=served.url, api_key=Secret(served.key), **options)  # type: ignore[arg-type]


async def test_client_over_loopback(serve: Callable[..., Served]) -> None:
    served = serve("--no-throttle")
    async with client(served) as c:
        schema = await load_schema(c)
        person = schema.object("person")
        assert person is not None and person.unique_paths == ["id", "emails.primaryEmail"]
        out = await c.upsert_many(
            PEOPLE,
            [{"emails": {"primaryEmail": "wire@example.com"}}],
            selection="id emails { primaryEmail }",
        )
        page = await c.find_many(PEOPLE, filter="emails.primaryEmail[eq]:wire@example.com")
    assert page.records[0]["id"] == out[0]["id"]


async def test_answer_lost_after_apply_is_retried_without_duplicate(
    serve: Callable[..., Served],
) -> None:
    served = serve("--no-throttle", "--drop-after-apply-rate", "0.5", "--seed", "7")
    records = [{"emails": {"primaryEmail": f"d{i}@example.com"}} for i in range(6)]
    async with client(served, max_retries=20) as c:
        for record in records:
            await c.upsert_many(PEOPLE, [record])
        assert c.stats.retries > 0  # some answers were really lost on the wire
    assert served.count("person") == 6


async def test_reset_before_apply_writes_nothing(serve: Callable[..., Served]) -> None:
    served = serve("--no-throttle", "--reset-rate", "1")
    async with client(served, max_retries=1) as c:
        with pytest.raises(errors.TransportError) as info:
            await c.upsert_many(PEOPLE, [{"emails": {"primaryEmail": "r@example.com"}}])
    assert info.value.maybe_applied  # the client cannot know; upserts make the retry safe
    assert served.count("person") == 0


async def test_drop_after_apply_writes_once(serve: Callable[..., Served]) -> None:
    served = serve("--no-throttle", "--drop-after-apply-rate", "1")
    async with client(served, max_retries=2) as c:
        with pytest.raises(errors.TransportError):
            await c.upsert_many(PEOPLE, [{"emails": {"primaryEmail": "a@example.com"}}])
    assert served.count("person") == 1  # applied three times, one record
    log = served.db.with_suffix(".log").read_text()
    assert "Traceback" not in log  # injected faults are not logged as crashes


async def test_server_errors_exhaust_retries(serve: Callable[..., Served]) -> None:
    served = serve("--no-throttle", "--error-rate", "1")
    async with client(served, max_retries=2) as c:
        with pytest.raises(errors.ServerError, match="gave up after 3 attempts"):
            await c.upsert_many(PEOPLE, [{"emails": {"primaryEmail": "e@example.com"}}])
        # metadata is never faulted: the workspace itself is fine
        assert await c.metadata_objects()
    assert served.count("person") == 0


async def test_legacy_429_over_the_wire_is_retried(serve: Callable[..., Served]) -> None:
    served = serve("--profile", "legacy", "--rate", "2/1")
    notes = ObjectNames("note", "notes")
    async with client(served, rate=Rate(100, 1)) as c:  # the client paces too fast on purpose
        for i in range(4):
            await c.upsert_many(notes, [{"title": str(i)}])
        assert c.stats.rate_limited >= 1
    assert served.count("note") == 4


async def test_the_pacer_learns_when_each_request_left(serve: Callable[..., Served]) -> None:
    """Over a socket, httpcore tells when each request's body was written; the pacer's
    legacy clock follows those departures, not the starts it allowed."""
    served = serve("--profile", "legacy", "--rate", "100/1")
    notes = ObjectNames("note", "notes")
    async with client(served, rate=Rate(100, 1), bucket="legacy") as c:
        pacer = c.session.pacer
        departures: list[tuple[float, float]] = []
        note_departure = pacer.sent

        def noted(started_at: float, now: float) -> None:
            departures.append((started_at, now))
            note_departure(started_at, now)

        pacer.sent = noted  # type: ignore[method-assign]
        for i in range(3):
            await c.upsert_many(notes, [{"title": str(i)}])
            assert pacer.stamp == departures[-1][1]  # the model's clock: the departure
        await load_schema(c)  # metadata calls are not paced: no departure to note
    assert len(departures) == 3
    assert all(started <= left for started, left in departures)
    assert served.count("note") == 3


def test_cli_schema_against_the_served_sandbox(serve: Callable[..., Served]) -> None:
    served = serve("--no-throttle")
    env = {**os.environ, "TWENTY_API_URL": served.url, "TWENTY_API_KEY": served.key}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "schema", "company"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "domainName" in done.stdout and "unique" in done.stdout
    assert served.key not in done.stdout + done.stderr


def test_cli_wrong_key_is_exit_1_without_the_key(serve: Callable[..., Served]) -> None:
    served = serve("--no-throttle")
    env = {**os.environ, "TWENTY_API_URL": served.url, "TWENTY_API_KEY": "sk-wrong-123"}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "schema"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Token invalid." in done.stderr and "TWENTY_API_KEY" in done.stderr
    assert "sk-wrong-123" not in done.stdout + done.stderr
