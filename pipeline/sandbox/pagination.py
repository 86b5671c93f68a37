"""Ordering, cursors and pages of a find-many (twenty-api.md §2.2-2.3).

Twenty orders by the asked paths with ``id`` as the last tiebreaker, and a cursor is
base64 of the ordered values of a record plus its id; both faces page alike.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from pipeline.sandbox.errors import InvalidArgs

OrderBy = list[tuple[str, str]]


@dataclass(frozen=True)
class PageResult:
    """One page of a find-many."""

    records: list[dict[str, Any]]
    total_count: int
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


def _get(record: dict[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def sort_records(records: list[dict[str, Any]], order: OrderBy) -> list[dict[str, Any]]:
    """Sort by ``order`` then ``id`` ascending (Twenty's tiebreaker), nulls as asked."""
    ordered = list(records)
    for path, direction in reversed([*order, ("id", "AscNullsFirst")]):
        desc = direction.startswith("Desc")
        nulls_first = direction.endswith("NullsFirst")
        # With reverse=True the null rank flips too; choose it so nulls land where asked.
        null_rank = 0 if nulls_first != desc else 2

        def key(r: dict[str, Any], path: str = path, null_rank: int = null_rank) -> Any:
            value = _get(r, path)
            return (null_rank, "") if value is None else (1, value)

        ordered.sort(key=key, reverse=desc)
    return ordered


def encode_cursor(record: dict[str, Any], order: OrderBy) -> str:
    """base64 of JSON ``{...order values, "id": id}`` (twenty-api.md §2.3)."""
    values = {path: _get(record, path) for path, _ in order}
    values["id"] = record["id"]
    return base64.b64encode(json.dumps(values).encode()).decode()


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The values a cursor holds; a malformed one is Twenty's ``Invalid cursor`` 400."""
    try:
        values = json.loads(base64.b64decode(cursor.encode(), validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidArgs(f"Invalid cursor: {cursor}") from None
    if not isinstance(values, dict) or "id" not in values:
        raise InvalidArgs(f"Invalid cursor: {cursor}")
    return values


def cursor_record(values: dict[str, Any]) -> dict[str, Any]:
    """A stand-in record carrying a cursor's values, to find its place in a sorted list."""
    record: dict[str, Any] = {}
    for path, value in values.items():
        node = record
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return record


def sorted_page(
    rows: list[dict[str, Any]],
    order: OrderBy,
    cursor: dict[str, Any] | None,
    limit: int,
    *,
    after: bool,
    before: bool,
) -> tuple[list[dict[str, Any]], bool]:
    """The page of ``rows`` (sorted by ``order``) after or before ``cursor``; and if more.

    The cursor's record may be gone: a stand-in carrying its values is sorted in to
    find where the page starts.
    """
    rows = sort_records(rows, order)
    if cursor is not None:
        marker = cursor_record(cursor)
        placed = sort_records([marker, *[r for r in rows if r["id"] != cursor["id"]]], order)
        index = next(i for i, r in enumerate(placed) if r is marker)
        rest = [r for r in placed if r is not marker]
        rows = rest[index:] if after else rest[:index]
    more = len(rows) > limit
    if before:
        return (rows[-limit:] if limit else []), more
    return rows[:limit], more


def page_of(
    rows: list[dict[str, Any]],
    presented: list[dict[str, Any]],
    *,
    order: OrderBy,
    total: int,
    more: bool,
    had_cursor: bool,
    before: bool,
) -> PageResult:
    """The page envelope: a page read backwards has a next page whenever it had a cursor."""
    return PageResult(
        records=presented,
        total_count=total,
        has_next_page=had_cursor if before else more,
        has_previous_page=more if before else had_cursor,
        start_cursor=encode_cursor(rows[0], order) if rows else None,
        end_cursor=encode_cursor(rows[-1], order) if rows else None,
    )
