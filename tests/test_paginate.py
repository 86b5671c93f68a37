"""The one paginator: REST records, metadata and GraphQL connections page alike.

Unit tests drive :func:`paginate` with a scripted fetch; the sandbox tests page real
answers (through ``httpx.ASGITransport``) in small pages and compare them with one
big page, recording the cursor each request sent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from pipeline.config import Rate, Secret
from pipeline.errors import FatalApiError
from pipeline.sandbox import Sandbox, SandboxOptions
from pipeline.twenty import ObjectNames, Page, TwentyClient, paginate
from pipeline.twenty.metadata import Metadata
from pipeline.twenty.paginate import FetchPage, collect

PEOPLE = ObjectNames("person", "people")
PEOPLE_COUNT = 7


def page(ids: list[str], more: bool, cursor: str | None) -> Page:
    return Page([{"id": i} for i in ids], has_next_page=more, end_cursor=cursor, total_count=None)


def scripted(*pages: Page) -> tuple[list[str | None], FetchPage]:
    """A fetch serving ``pages`` in order, and the cursors it was asked for."""
    asked: list[str | None] = []
    queue: Iterator[Page] = iter(pages)

    async def fetch(cursor: str | None) -> Page:
        asked.append(cursor)
        return next(queue)

    return asked, fetch


async def test_paginate_follows_each_end_cursor_until_the_last_page() -> None:
    asked, fetch = scripted(page(["1", "2"], True, "c2"), page(["3"], False, "c3"))
    pages = [p async for p in paginate(fetch, what="GET /x")]
    assert [[r["id"] for r in p.records] for p in pages] == [["1", "2"], ["3"]]
    assert asked == [None, "c2"]


async def test_paginate_stops_at_an_empty_page_that_claims_more() -> None:
    asked, fetch = scripted(page(["1"], True, "c1"), page([], True, "c9"))
    pages = [p async for p in paginate(fetch, what="GET /x")]
    assert len(pages) == 2 and asked == [None, "c1"]


async def test_paginate_refuses_a_repeated_cursor() -> None:
    _, fetch = scripted(page(["1"], True, "same"), page(["2"], True, "same"))
    with pytest.raises(FatalApiError, match="GET /x: the server repeated a page cursor"):
        async for _ in paginate(fetch, what="GET /x"):
            pass


async def test_paginate_refuses_a_next_page_without_a_cursor() -> None:
    _, fetch = scripted(page(["1"], True, None))
    with pytest.raises(FatalApiError, match="next page without a cursor"):
        async for _ in paginate(fetch, what="GET /x"):
            pass


# ------------------------------------------------------------------ against the sandbox


class Recording(httpx.AsyncBaseTransport):
    """The sandbox's ASGI transport, keeping every request it carried."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.seen: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return await self.inner.handle_async_request(request)


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    sandbox = Sandbox(tmp_path / "ws.sqlite", SandboxOptions(throttle=False))
    yield sandbox
    sandbox.close()


@pytest.fixture
async def client(box: Sandbox) -> AsyncIterator[tuple[TwentyClient, Recording]]:
    """A client on ``box`` holding PEOPLE_COUNT people, and the transport it records on."""
    transport = Recording(httpx.ASGITransport(app=box.app))
    async with TwentyClient(
        base_url="http://sandbox",
        api_key=Secret(box.api_key),
        rate=Rate(10_000, 1),
        transport=transport,
    ) as made:
        people = [
            {"name": {"firstName": f"P{i}", "lastName": "Pager"}, "city": f"City {i}"}
            for i in range(PEOPLE_COUNT)
        ]
        await made.upsert_many(PEOPLE, people, upsert=False)
        transport.seen.clear()
        yield made, transport


async def test_rest_records_page_through_the_paginator(
    client: tuple[TwentyClient, Recording],
) -> None:
    twenty, transport = client
    pages = [p async for p in twenty.iter_pages(PEOPLE, page_size=3)]
    whole = await twenty.find_many(PEOPLE, limit=200)
    assert [len(p.records) for p in pages] == [3, 3, 1]
    assert [r["id"] for p in pages for r in p.records] == [r["id"] for r in whole.records]
    assert len(whole.records) == PEOPLE_COUNT
    cursors = [r.url.params.get("starting_after") for r in transport.seen[:3]]
    assert cursors == [None, pages[0].end_cursor, pages[1].end_cursor]
    assert not pages[-1].has_next_page


async def test_graphql_connections_page_through_the_paginator(
    client: tuple[TwentyClient, Recording],
) -> None:
    twenty, transport = client
    pages = [p async for p in twenty.iter_pages_graphql(PEOPLE, page_size=3, selection="id city")]
    whole = await twenty.find_many_graphql(PEOPLE, first=200, selection="id city")
    assert [len(p.records) for p in pages] == [3, 3, 1]
    assert [r["id"] for p in pages for r in p.records] == [r["id"] for r in whole.records]
    assert {r["city"] for p in pages for r in p.records} == {
        f"City {i}" for i in range(PEOPLE_COUNT)
    }
    sent = [json.loads(r.content)["variables"] for r in transport.seen[:3]]
    assert [v["after"] for v in sent] == [None, pages[0].end_cursor, pages[1].end_cursor]
    assert all(v["first"] == 3 for v in sent)
    assert pages[0].total_count == PEOPLE_COUNT


async def test_metadata_pages_through_the_paginator(
    client: tuple[TwentyClient, Recording],
) -> None:
    twenty, transport = client
    whole = await twenty.metadata_objects()
    transport.seen.clear()
    paged = await Metadata(twenty.session, page_size=2).objects()
    assert len(whole) > 2
    assert [o["id"] for o in paged] == [o["id"] for o in whole]
    calls = transport.seen
    assert len(calls) == -(-len(whole) // 2)  # ceil: every page but the last was full
    assert calls[0].url.params.get("starting_after") is None
    assert all(c.url.params.get("starting_after") for c in calls[1:])
    assert all(c.url.params["limit"] == "2" for c in calls)


async def test_collect_gathers_every_page_in_order(
    client: tuple[TwentyClient, Recording],
) -> None:
    twenty, _ = client
    records = await collect(twenty.iter_pages(PEOPLE, page_size=2))
    assert len(records) == PEOPLE_COUNT
    assert len({r["id"] for r in records}) == PEOPLE_COUNT
