"""One cursor paginator for every list Twenty serves.

REST record lists (``GET /rest/{plural}``), metadata lists (``/rest/metadata/...``)
and GraphQL connections (``{plural}(first, after)``) all page the same way
(twenty-api.md §2.3): an answer carries ``pageInfo {hasNextPage, endCursor}`` and the
next request passes that cursor back (``starting_after`` or ``after``). What differs
is only how one page is asked for, so a resource hands :func:`paginate` a
:data:`FetchPage` and the paging rules (when to stop, a cursor the server repeats)
live here once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pipeline.errors import FatalApiError
from pipeline.twenty.names import Record

PAGE_SIZE = 200  # QUERY_MAX_RECORDS: the largest page Twenty serves (twenty-api.md §2.2)


@dataclass(frozen=True)
class Page:
    """One page of a list call."""

    records: list[Record]
    has_next_page: bool
    end_cursor: str | None
    total_count: int | None


def page_of(records: list[Record], envelope: dict[str, Any]) -> Page:
    """The :class:`Page` of ``records`` whose ``pageInfo``/``totalCount`` are in ``envelope``.

    ``envelope`` is a REST answer body or a GraphQL connection: both carry the same keys.
    """
    info = envelope.get("pageInfo") or {}
    total = envelope.get("totalCount")
    cursor = info.get("endCursor")
    return Page(
        records=records,
        has_next_page=bool(info.get("hasNextPage")),
        end_cursor=cursor if isinstance(cursor, str) and cursor else None,
        total_count=int(total) if isinstance(total, int | float) else None,
    )


FetchPage = Callable[[str | None], Awaitable[Page]]
"""Fetch the page after a cursor (None: the first page)."""


async def paginate(fetch: FetchPage, *, what: str, start: str | None = None) -> AsyncIterator[Page]:
    """Every page ``fetch`` serves, following ``endCursor`` until the last one.

    Paging stops after a page that says there is no next one, or that holds no
    records (a server that keeps saying "more" about nothing would never end). A
    next page without a cursor, or a cursor seen before, is a :class:`FatalApiError`:
    following it would loop or silently lose the rest of the list. ``what`` names
    the list in that error (``GET /rest/people``). ``start`` resumes after a cursor.
    """
    seen: set[str] = set()
    cursor: str | None = start
    while True:
        page = await fetch(cursor)
        yield page
        if not page.has_next_page or not page.records:
            return
        if page.end_cursor is None:
            raise FatalApiError(
                f"{what}: the server announced a next page without a cursor to reach it; "
                "stopping instead of losing the rest of the list"
            )
        if page.end_cursor in seen:
            raise FatalApiError(
                f"{what}: the server repeated a page cursor; stopping instead of looping"
            )
        seen.add(page.end_cursor)
        cursor = page.end_cursor


async def collect(pages: AsyncIterator[Page]) -> list[Record]:
    """Every record of every page, in order."""
    return [record async for page in pages for record in page.records]
