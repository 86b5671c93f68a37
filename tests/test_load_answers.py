"""Write answers the loader must not trust: no ids, request faults, an echoed key.

Each test runs a real import on the in-process sandbox through a transport that
rewrites the answers of write calls, as a faulty or hostile server would.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.config import Rate, Secret
from pipeline.errors import RequestRejectedError, UnconfirmedWriteError
from pipeline.mapping import load_mapping
from pipeline.runner import ImportReport, import_file
from pipeline.sandbox import Sandbox, SandboxOptions
from pipeline.twenty import TwentyClient

ROWS = 120
Rewrite = Callable[[httpx.Request, Any], httpx.Response | None]


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path / "ws.sqlite", SandboxOptions(throttle=False))
    yield box
    box.close()


@pytest.fixture
def mapping(tmp_path: Path) -> Path:
    path = tmp_path / "people.yaml"
    path.write_text("object: person\nkey: [emails.primaryEmail]\nfields:\n  emails: email\n")
    (tmp_path / "people.csv").write_text(
        "email\n" + "".join(f"u{i}@x.io\n" for i in range(ROWS)), encoding="utf-8"
    )
    return path


def is_write(request: httpx.Request) -> bool:
    if request.url.path.startswith("/rest/batch/"):
        return True
    return request.url.path == "/graphql" and b"mutation" in request.content


class Rewriting(httpx.AsyncBaseTransport):
    """The sandbox, except that ``rewrite`` may answer a write call in its place."""

    def __init__(self, sandbox: Sandbox, rewrite: Rewrite) -> None:
        self.inner = httpx.ASGITransport(app=sandbox.app)
        self.rewrite = rewrite
        self.writes = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if is_write(request):
            self.writes += 1
            answer = self.rewrite(request, json.loads(request.content))
            if answer is not None:
                return answer
        return await self.inner.handle_async_request(request)


def make_client(sandbox: Sandbox, transport: httpx.AsyncBaseTransport, api: str) -> TwentyClient:
    return TwentyClient(
        base_url="http://sandbox",
        api_key=Secret(sandbox.api_key),
        key_source="TWENTY_API_KEY",
        rate=Rate(10_000, 1),
        api=api,  # type: ignore[arg-type]
        transport=transport,
        max_retries=2,
        backoff_base=0.001,
        backoff_cap=0.01,
    )


async def run(
    tmp_path: Path, mapping: Path, sandbox: Sandbox, api: str, rewrite: Rewrite | None = None
) -> tuple[ImportReport, Rewriting]:
    transport = Rewriting(sandbox, rewrite or (lambda _request, _body: None))
    async with make_client(sandbox, transport, api) as client:
        report = await import_file(
            load_mapping(mapping),
            client,
            state_dir=tmp_path / "state",
            source=tmp_path / "people.csv",
            batch_size=60,
            concurrency=1,
        )
    return report, transport


def records_sent(body: Any) -> list[Any]:
    return list(body) if isinstance(body, list) else list(body["variables"]["data"])


def answer_with(records: list[Any], api: str) -> httpx.Response:
    if api == "rest":
        return httpx.Response(201, json={"data": {"createPeople": records}})
    return httpx.Response(200, json={"data": {"createPeople": records}})


def checkpoint_batches(tmp_path: Path) -> dict[str, int]:
    [path] = (tmp_path / "state").glob("*/state.sqlite")
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT status, COUNT(*) FROM batches GROUP BY status").fetchall()
    return {str(status): int(count) for status, count in rows}


def success_rows(tmp_path: Path) -> list[dict[str, str]]:
    paths = list((tmp_path / "state").glob("*/success.csv"))
    if not paths:
        return []
    with paths[0].open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def everything_written(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (tmp_path / "state").rglob("*") if p.is_file())


# ------------------------------------------------------------------ answers without ids


@pytest.mark.parametrize("api", ["graphql", "rest"])
@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (lambda sent: [{} for _ in sent], "record 1 of 60 has no id"),
        (lambda sent: [{"id": None} for _ in sent], "record 1 of 60 has no id"),
        (lambda sent: [{"id": "same"} for _ in sent], "id same is given to two records"),
        (
            lambda sent: [{"id": f"id-{i}"} for i in range(len(sent) - 1)],
            "60 records were sent, it holds 59",
        ),
        (lambda sent: None, "it holds no list of records"),
    ],
    ids=["empty-records", "null-ids", "repeated-id", "short-list", "no-list"],
)
async def test_answer_that_does_not_confirm_the_write_is_never_recorded_as_done(
    tmp_path: Path,
    mapping: Path,
    sandbox: Sandbox,
    api: str,
    answer: Callable[[list[Any]], Any],
    problem: str,
) -> None:
    def rewrite(_request: httpx.Request, body: Any) -> httpx.Response:
        return answer_with(answer(records_sent(body)), api)

    with pytest.raises(UnconfirmedWriteError) as info:
        await run(tmp_path, mapping, sandbox, api, rewrite)
    path = "/graphql" if api == "graphql" else "/rest/batch/people"
    assert str(info.value) == (
        f"POST {path}: the answer does not confirm the write ({problem}); "
        "the batch is not recorded as done (gave up after 3 attempts)"
    )
    assert info.value.exit_code == 1
    assert checkpoint_batches(tmp_path) == {"sent": 1}
    assert success_rows(tmp_path) == []
    assert sandbox.engine.count_records(sandbox.engine.object("person")) == 0

    # The checkpoint is resumable: a healthy server loads every row, each with its id.
    report, transport = await run(tmp_path, mapping, sandbox, api)
    assert report.resumed
    assert (report.loaded, report.rejected) == (ROWS, 0)
    assert transport.writes == 2
    ids = [r["id"] for r in success_rows(tmp_path)]
    assert len(ids) == ROWS and len(set(ids)) == ROWS and "None" not in ids and "" not in ids


async def test_answer_with_other_ids_than_the_ones_sent_is_not_confirmed(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    mapping = tmp_path / "by_id.yaml"
    mapping.write_text("object: person\nkey: [id]\nfields:\n  id: id\n  emails: email\n")
    chosen = "0b4c9f3e-2f6a-4c7e-9a51-0d1c2b3a4f5e"
    (tmp_path / "people.csv").write_text(f"id,email\n{chosen},ada@x.io\n", encoding="utf-8")

    def rewrite(_request: httpx.Request, body: Any) -> httpx.Response:
        assert records_sent(body)[0]["id"] == chosen
        return answer_with([{"id": "11111111-2222-4333-8444-555555555555"}], "graphql")

    with pytest.raises(UnconfirmedWriteError) as info:
        await run(tmp_path, mapping, sandbox, "graphql", rewrite)
    assert str(info.value) == (
        "POST /graphql: the answer does not confirm the write (record 1 was sent with id "
        f"{chosen}, the answer has id 11111111-2222-4333-8444-555555555555); the batch is "
        "not recorded as done (gave up after 3 attempts)"
    )
    assert checkpoint_batches(tmp_path) == {"sent": 1}


# ------------------------------------------------------------------ request faults


GRAPHQL_VALIDATION = httpx.Response(
    200,
    json={
        "errors": [
            {
                "message": 'Cannot query field "jobTitle" on type "Person".',
                "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
            }
        ]
    },
)
COERCION = httpx.Response(
    200,
    json={
        "data": None,
        "errors": [
            {
                "message": 'Variable "$data" got invalid value { foo: 1 } at "data[0]"; '
                'Field "foo" is not defined by type "PersonCreateInput".',
                "extensions": {"code": "BAD_USER_INPUT"},
            }
        ],
    },
)
REST_UNKNOWN_FIELD = httpx.Response(
    400,
    json={
        "statusCode": 400,
        "error": "BadRequestException",
        "messages": ['Object person doesn\'t have any "foo" field.'],
    },
)


@pytest.mark.parametrize(
    ("api", "answer", "message"),
    [
        ("graphql", GRAPHQL_VALIDATION, 'Cannot query field "jobTitle" on type "Person".'),
        (
            "graphql",
            COERCION,
            'Variable "$data" got invalid value { foo: 1 } at "data[0]"; '
            'Field "foo" is not defined by type "PersonCreateInput".',
        ),
        ("rest", REST_UNKNOWN_FIELD, 'Object person doesn\'t have any "foo" field.'),
    ],
    ids=["graphql-validation", "graphql-unknown-input-field", "rest-unknown-field"],
)
async def test_request_fault_stops_at_the_first_call_instead_of_bisecting(
    tmp_path: Path, mapping: Path, sandbox: Sandbox, api: str, answer: httpx.Response, message: str
) -> None:
    transport_box: list[Rewriting] = []

    def rewrite(_request: httpx.Request, _body: Any) -> httpx.Response:
        return answer

    with pytest.raises(RequestRejectedError) as info:
        transport = Rewriting(sandbox, rewrite)
        transport_box.append(transport)
        async with make_client(sandbox, transport, api) as client:
            await import_file(
                load_mapping(mapping),
                client,
                state_dir=tmp_path / "state",
                source=tmp_path / "people.csv",
                batch_size=60,
                concurrency=1,
            )
    path = "/graphql" if api == "graphql" else "/rest/batch/people"
    assert str(info.value) == (
        f"POST {path}: Twenty refused the request itself, so every batch would fail the "
        "same way; stopped (checkpoint kept: fix the mapping or the API flavour and run "
        f"again): {message}"
    )
    assert info.value.server_message == message
    assert info.value.exit_code == 1
    assert transport_box[0].writes == 1  # not 238 calls bisecting 120 rows
    assert checkpoint_batches(tmp_path) == {"sent": 1}
    assert success_rows(tmp_path) == []


async def test_data_error_of_one_record_is_still_isolated(
    tmp_path: Path, mapping: Path, sandbox: Sandbox
) -> None:
    def rewrite(_request: httpx.Request, body: Any) -> httpx.Response | None:
        emails = [r["emails"]["primaryEmail"] for r in records_sent(body)]
        if "u7@x.io" not in emails:
            return None
        return httpx.Response(
            200,
            json={
                "data": None,
                "errors": [
                    {
                        "message": "A duplicate entry was detected",
                        "extensions": {"code": "BAD_USER_INPUT"},
                    }
                ],
            },
        )

    report, transport = await run(tmp_path, mapping, sandbox, "graphql", rewrite)
    assert (report.loaded, report.rejected) == (ROWS - 1, 1)
    assert transport.writes == 1 + 2 * 6 + 1  # 60 -> 30 -> 15 -> 8 -> 4 -> 2 -> 1, + batch 2


# ------------------------------------------------------------------ an echoed key


async def test_key_echoed_by_the_server_never_reaches_rejects_or_checkpoint(
    tmp_path: Path, mapping: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    key = sandbox.api_key

    def rewrite(request: httpx.Request, body: Any) -> httpx.Response | None:
        emails = [r["emails"]["primaryEmail"] for r in records_sent(body)]
        if "u3@x.io" not in emails:
            return None
        echoed = (
            f'Invalid value for field "emails" (request had {request.headers["authorization"]})'
        )
        return httpx.Response(
            200,
            json={"errors": [{"message": echoed, "extensions": {"code": "BAD_USER_INPUT"}}]},
        )

    report, _ = await run(tmp_path, mapping, sandbox, "graphql", rewrite)
    assert (report.loaded, report.rejected) == (ROWS - 1, 1)
    [rejects] = (tmp_path / "state").glob("*/rejects.csv")
    with rejects.open(encoding="utf-8", newline="") as f:
        [row] = list(csv.DictReader(f))
    assert row["_reason"] == (
        'Twenty refused the record: Invalid value for field "emails" (request had Bearer ***)'
    )
    assert key.encode() not in everything_written(tmp_path)
    assert key not in caplog.text
