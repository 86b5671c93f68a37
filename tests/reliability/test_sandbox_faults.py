"""The sandbox's new fault modes, in-process: each one does exactly what it says, by seed."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.sandbox import Faults, Sandbox, SandboxOptions

NOTES = [{"title": f"N{i}"} for i in range(3)]
MUTATION = (
    "mutation C($data: [NoteCreateInput!]!) { createNotes(data: $data, upsert: true) { id title } }"
)


OPENED: list[Sandbox] = []


@pytest.fixture(autouse=True)
def close_sandboxes() -> Iterator[None]:
    yield
    while OPENED:
        OPENED.pop().close()


def sandbox_with(tmp_path: Path, **faults: Any) -> Sandbox:
    return opened(
        Sandbox(
            tmp_path / "ws.sqlite", SandboxOptions(throttle=False, faults=Faults(seed=1, **faults))
        )
    )


def opened(sandbox: Sandbox) -> Sandbox:
    OPENED.append(sandbox)
    return sandbox


def client(sandbox: Sandbox, **kw: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sandbox.app),
        base_url="http://sandbox",
        headers={"Authorization": f"Bearer {sandbox.api_key}"},
        **kw,
    )


def stored_titles(sandbox: Sandbox) -> list[str]:
    rows = sandbox.engine.db.execute(
        "SELECT json_extract(data, '$.title') FROM records WHERE object = 'note' ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


async def batch(sandbox: Sandbox) -> httpx.Response:
    async with client(sandbox) as api:
        return await api.post("/rest/batch/notes", json=NOTES)


async def test_no_ids(tmp_path: Path) -> None:
    sandbox = sandbox_with(tmp_path, no_ids_rate=1)
    r = await batch(sandbox)
    assert r.status_code == 201
    assert r.json() == {"data": {"createNotes": [{}, {}, {}]}}
    assert stored_titles(sandbox) == ["N0", "N1", "N2"]  # applied all the same


async def test_wrong_ids_differ_from_the_stored_ones(tmp_path: Path) -> None:
    sandbox = sandbox_with(tmp_path, wrong_ids_rate=1)
    r = await batch(sandbox)
    answered = [rec["id"] for rec in r.json()["data"]["createNotes"]]
    stored = {
        row[0] for row in sandbox.engine.db.execute("SELECT id FROM records WHERE object='note'")
    }
    assert len(set(answered)) == 3 and not set(answered) & stored
    assert [rec["title"] for rec in r.json()["data"]["createNotes"]] == ["N0", "N1", "N2"]


async def test_duplicate_ids(tmp_path: Path) -> None:
    sandbox = sandbox_with(tmp_path, duplicate_ids_rate=1)
    records = (await batch(sandbox)).json()["data"]["createNotes"]
    assert len(records) == 3 and len({rec["id"] for rec in records}) == 1
    assert len(stored_titles(sandbox)) == 3


async def test_short_answer_over_graphql(tmp_path: Path) -> None:
    sandbox = sandbox_with(tmp_path, short_rate=1)
    async with client(sandbox) as api:
        r = await api.post("/graphql", json={"query": MUTATION, "variables": {"data": NOTES}})
    assert [rec["title"] for rec in r.json()["data"]["createNotes"]] == ["N0", "N1"]
    assert stored_titles(sandbox) == ["N0", "N1", "N2"]


async def test_garbage_bodies_are_200_and_unreadable(tmp_path: Path) -> None:
    sandbox = sandbox_with(tmp_path, garbage_rate=1)
    seen = set()
    async with client(sandbox) as api:
        for _ in range(12):
            r = await api.post("/rest/batch/notes", json=NOTES)
            assert r.status_code == 201
            with pytest.raises(ValueError):
                json.loads(r.content)
            seen.add((r.headers["content-type"], r.content[:6]))
    assert seen == {
        ("application/json", b'{"data'),
        ("application/json", b""),
        ("text/html", b"<html>"),
    }


async def test_reads_pass_unchanged_under_answer_faults(tmp_path: Path) -> None:
    sandbox = sandbox_with(tmp_path)
    await batch(sandbox)
    faulty = opened(
        Sandbox(
            tmp_path / "ws.sqlite", SandboxOptions(throttle=False, faults=Faults(no_ids_rate=1))
        )
    )
    async with client(faulty) as api:
        r = await api.get("/rest/notes")
    assert len(r.json()["data"]["notes"]) == 3 and all("id" in n for n in r.json()["data"]["notes"])


async def test_trickle_sends_one_byte_at_a_time(tmp_path: Path) -> None:
    sandbox = sandbox_with(tmp_path, trickle_rate=1, trickle_bytes_per_s=2000)
    started = time.monotonic()
    r = await batch(sandbox)
    took = time.monotonic() - started
    size = len(r.content)
    assert r.json()["data"]["createNotes"][2]["title"] == "N2"
    assert took >= (size - 1) / 2000 * 0.9  # one byte every 0.5 ms


async def test_echo_key_quotes_the_authorization_header(tmp_path: Path) -> None:
    sandbox = sandbox_with(tmp_path, echo_key_rate=1)
    r = await batch(sandbox)
    assert r.status_code == 500
    assert r.json()["messages"] == [
        f"upstream refused the request with Authorization: Bearer {sandbox.api_key}"
    ]
    assert stored_titles(sandbox) == []


async def test_outage_window_then_recovery(tmp_path: Path) -> None:
    sandbox = sandbox_with(tmp_path, outage=(0.0, 0.3))
    async with client(sandbox) as api:
        first = await api.post("/rest/batch/notes", json=NOTES)
        assert first.status_code == 503 and b"503" in first.content
        assert stored_titles(sandbox) == []
        await asyncio.sleep(0.35)
        after = await api.post("/rest/batch/notes", json=NOTES)
    assert after.status_code == 201 and stored_titles(sandbox) == ["N0", "N1", "N2"]


async def test_outage_reset_mode_cuts_the_connection(tmp_path: Path) -> None:
    sandbox = sandbox_with(tmp_path, outage=(0.0, 10.0), outage_mode="reset")
    with pytest.raises(httpx.RemoteProtocolError):
        await batch(sandbox)
    assert stored_titles(sandbox) == []


async def test_spike_past_a_timeout_after_applying(tmp_path: Path) -> None:
    sandbox = sandbox_with(tmp_path, spike_rate=1, spike_s=5)
    async with client(sandbox) as api:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(api.post("/rest/batch/notes", json=NOTES), 0.3)
    assert stored_titles(sandbox) == ["N0", "N1", "N2"]


async def test_metadata_faulted_only_when_asked(tmp_path: Path) -> None:
    async with client(sandbox_with(tmp_path, error_rate=1)) as api:
        assert (await api.get("/rest/metadata/objects")).status_code == 200
    async with client(sandbox_with(tmp_path, error_rate=1, metadata=True)) as api:
        assert (await api.get("/rest/metadata/objects")).status_code == 500


def outcome(response: httpx.Response) -> tuple[int, object]:
    body = response.json()
    if response.status_code == 201:
        return 201, body["data"]["createNotes"][0] == {}
    return response.status_code, body["messages"][0]


async def test_trace_lines_and_same_seed_same_faults(tmp_path: Path) -> None:
    outcomes = []
    for run in range(2):
        trace = tmp_path / f"trace{run}"
        sandbox = opened(
            Sandbox(
                tmp_path / f"ws{run}.sqlite",
                SandboxOptions(
                    throttle=False,
                    faults=Faults(seed=3, error_rate=0.3, no_ids_rate=0.3, trace=str(trace)),
                ),
            )
        )
        async with client(sandbox) as api:
            answers = [await api.post("/rest/batch/notes", json=NOTES) for _ in range(8)]
        outcomes.append([outcome(r) for r in answers])
        lines = trace.read_text().splitlines()
        assert lines[:2] == ["arrive 1 POST /rest/batch/notes", lines[1]]
        assert {line.split()[0] for line in lines} == {
            "arrive",
            "applied",
            "answered",
            "fault:error",
            "fault:no_ids",
        }
        assert sum(line.startswith("answered") for line in lines) == 8
    assert outcomes[0] == outcomes[1]
    assert set(outcomes[0]) == {(500, "Injected fault"), (201, True), (201, False)}
