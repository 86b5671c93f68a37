"""Reading an export's pages: the first one, then id ranges side by side.

A cursor only reaches the next page once the previous one has answered, so one reader
makes one call per round trip: at a short interval (a self-hosted server allowing 30
calls in 3 s) the round trip, not the rate limit, would set the pace. After the first
page, the ids left (Twenty's ids are UUIDs, spread evenly) are split into ``readers``
ranges (``id[gt]:<last id of page 1>,id[lt]:<bound>``, ``id[gte]:<bound>,…``), each
paged in id order by its own reader with its own cursor. The pacer keeps their calls
within the rate limit. Pages are recorded per range, and the file is assembled range by
range, so it is still in id order. The ranges are decided once and stored, so a resumed
export reads the same ones.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import polars as pl

from pipeline.export_state import ExportState
from pipeline.schema import ObjectSchema
from pipeline.twenty import TwentyClient
from pipeline.twenty.paginate import PAGE_SIZE, Page

Flatten = Callable[[list[dict[str, Any]]], Awaitable[pl.DataFrame]]
"""A page's records -> the frame recorded for it."""
Seen = Callable[[Page, int, int], None]
"""Told about every page recorded: the page, its rows and its range (0: the first)."""

_TOP = 1 << 128


def split_after(last_id: str, readers: int) -> list[list[str | None]]:
    """``readers`` id ranges ``[after, below]`` covering every UUID above ``last_id``."""
    try:
        low = uuid.UUID(last_id).int
    except ValueError:
        return []  # not a UUID: one reader
    step = (_TOP - low) // readers
    if step < 1:
        return []
    bounds = [str(uuid.UUID(int=low + step * i)) for i in range(1, readers)]
    edges: list[str | None] = [last_id, *bounds, None]
    return [[edges[i], edges[i + 1]] for i in range(readers)]


def range_filter(where: str | None, part: int, bounds: list[str | None]) -> str:
    """The filter of one range: the export's own, ANDed with the id bounds."""
    after, below = bounds
    conditions = [where] if where else []
    conditions.append(f"id[gt]:{after}" if part == 1 else f"id[gte]:{after}")
    if below is not None:
        conditions.append(f"id[lt]:{below}")
    return ",".join(conditions)


async def read_pages(
    client: TwentyClient,
    obj: ObjectSchema,
    where: str | None,
    state: ExportState,
    *,
    readers: int,
    flatten: Flatten,
    seen: Seen,
) -> None:
    """Every page not yet recorded: the first, then the ranges (or on, one reader)."""
    if state.ranges is None:
        if not state.range_done(0):
            await _read_range(client, obj, where, state, 0, flatten, seen, first_only=True)
        last = state.last_id(0)
        ranges: list[list[str | None]] = []
        if readers > 1 and not state.range_done(0) and last is not None:
            ranges = split_after(last, readers)
        state.set_ranges(ranges)
    ranges = state.ranges or []
    if not ranges:
        if not state.range_done(0):
            await _read_range(client, obj, where, state, 0, flatten, seen)
        return
    state.mark_range_done(0)
    readers_left = [
        asyncio.create_task(
            _read_range(client, obj, range_filter(where, i, bounds), state, i, flatten, seen)
        )
        for i, bounds in enumerate(ranges, start=1)
        if not state.range_done(i)
    ]
    try:
        await asyncio.gather(*readers_left)
    except BaseException:
        # one reader failed (or the run is interrupted): stop the others before the
        # state closes, so nothing is recorded after the error
        for task in readers_left:
            task.cancel()
        await asyncio.gather(*readers_left, return_exceptions=True)
        raise


async def _read_range(
    client: TwentyClient,
    obj: ObjectSchema,
    where: str | None,
    state: ExportState,
    part: int,
    flatten: Flatten,
    seen: Seen,
    *,
    first_only: bool = False,
) -> None:
    pages = client.records.iter_pages(
        obj.names, filter=where, order_by="id", page_size=PAGE_SIZE, after=state.cursor(part)
    )
    async for page in pages:
        if page.records:
            frame = await flatten(page.records)
            latest = max((str(r.get("updatedAt") or "") for r in page.records), default="")
            last_id = str(page.records[-1].get("id") or "")
            state.add_page(frame, page.end_cursor, latest or None, part=part, last_id=last_id)
            seen(page, frame.height, part)
        if not page.has_next_page or not page.records:
            state.mark_range_done(part)
            return
        if first_only:
            return
