"""Workspace records: batch upserts, finds and paged lists, over REST or GraphQL.

Writes go through GraphQL's ``create{Plural}(data, upsert)`` (what Twenty documents
for batch upserts) or REST's ``POST /rest/batch/{plural}?upsert=true``; each answer
must confirm every record sent (:func:`~pipeline.twenty.answers.confirm_written`).
Reads page through :func:`~pipeline.twenty.paginate.paginate`, the same paginator
the metadata resource uses.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from pipeline.config import ApiFlavour
from pipeline.errors import (
    MAYBE_USE_GRAPHQL_WRITES,
    USE_GRAPHQL_WRITES,
    ApiError,
    BatchRejectedError,
    BatchTooLargeError,
    FatalApiError,
    UpsertIgnoredError,
)
from pipeline.twenty.answers import confirm_written, single_list
from pipeline.twenty.names import ObjectNames, Record
from pipeline.twenty.paginate import PAGE_SIZE, Page, page_of, paginate
from pipeline.twenty.session import Session

log = logging.getLogger("pipeline.client")


class Records:
    """The records of one workspace, written in the session's API flavour."""

    def __init__(self, session: Session, api: ApiFlavour) -> None:
        self.session = session
        self.api = api
        self.max_batch_size: int | None = None
        """Lowered when the server refuses a batch as too large; the loader reads it."""

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
            return await self._create_many_graphql(obj, chunk, upsert, selection)
        try:
            return await self._create_many_rest(obj, chunk, upsert)
        except BatchRejectedError as exc:
            refusal = _upsert_refusal(exc, len(chunk)) if upsert else None
            if refusal is None:
                raise
            raise refusal from exc

    async def _create_many_graphql(
        self, obj: ObjectNames, chunk: list[Record], upsert: bool, selection: str
    ) -> list[Record]:
        name = f"create{obj.plural_type}"
        query = (
            f"mutation Create{obj.plural_type}($data: [{obj.singular_type}CreateInput!]!, "
            f"$upsert: Boolean) {{ {name}(data: $data, upsert: $upsert) {{ {selection} }} }}"
        )

        def confirm(body: Any) -> list[Record]:
            data = body.get("data") if isinstance(body, dict) else None
            result = data.get(name) if isinstance(data, dict) else None
            return confirm_written(
                result, chunk, method="POST", path="/graphql", redact=self.session.redact
            )

        confirmed: list[Record] = await self.session.request(
            "write",
            "POST",
            "/graphql",
            json_body={"query": query, "variables": {"data": chunk, "upsert": upsert}},
            idempotent=upsert,
            answer=confirm,
        )
        return confirmed

    async def _create_many_rest(
        self, obj: ObjectNames, chunk: list[Record], upsert: bool
    ) -> list[Record]:
        path = f"/rest/batch/{obj.plural}"

        def confirm(body: Any) -> list[Record]:
            data = body.get("data") if isinstance(body, dict) else None
            try:
                result = single_list(data, what=f"POST {path}")
            except FatalApiError:
                result = None
            return confirm_written(
                result, chunk, method="POST", path=path, redact=self.session.redact
            )

        confirmed: list[Record] = await self.session.request(
            "write",
            "POST",
            path,
            params={"upsert": "true"} if upsert else None,
            json_body=chunk,
            idempotent=upsert,
            answer=confirm,
        )
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
        body = await self.session.request("read", "GET", f"/rest/{obj.plural}", params=params)
        records = single_list(body.get("data"), what=f"GET /rest/{obj.plural}")
        return page_of(records, body)

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
        data = await self.session.graphql(query, variables, kind="read")
        connection = data.get(obj.plural)
        if not isinstance(connection, dict):
            raise FatalApiError(f"query {obj.plural}: answer without a connection")
        records = [edge["node"] for edge in connection.get("edges", [])]
        return page_of(records, connection)

    def iter_pages(
        self,
        obj: ObjectNames,
        *,
        filter: str | None = None,
        order_by: str | None = None,
        page_size: int = PAGE_SIZE,
        fields: list[str] | None = None,
        after: str | None = None,
    ) -> AsyncIterator[Page]:
        """Every page of a REST list, through the one paginator (from ``after``, a cursor
        an earlier listing ended on, when given)."""

        async def fetch(cursor: str | None) -> Page:
            return await self.find_many(
                obj,
                filter=filter,
                order_by=order_by,
                limit=page_size,
                starting_after=cursor,
                fields=fields,
            )

        return paginate(fetch, what=f"GET /rest/{obj.plural}", start=after)

    def iter_pages_graphql(
        self,
        obj: ObjectNames,
        *,
        filter: dict[str, Any] | None = None,
        order_by: list[dict[str, Any]] | None = None,
        page_size: int = PAGE_SIZE,
        selection: str = "id",
    ) -> AsyncIterator[Page]:
        """Every page of a GraphQL connection, through the one paginator."""

        async def fetch(cursor: str | None) -> Page:
            return await self.find_many_graphql(
                obj,
                filter=filter,
                order_by=order_by,
                first=page_size,
                after=cursor,
                selection=selection,
            )

        return paginate(fetch, what=f"query {obj.plural}")


def _upsert_refusal(exc: BatchRejectedError, sent: int) -> ApiError | None:
    """What a REST batch upsert that Twenty refused most likely means; None: just ``exc``.

    The legacy REST batch handler ignores ``?upsert=true`` (twenty-api.md §2.4a): it
    answers "Record already exists" for a known id, and a unique violation for a known
    key - which an honoured upsert of one record cannot cause. Every existing record
    would fail the same way, so that is :class:`UpsertIgnoredError` (the run stops
    instead of rejecting them one by one). A duplicate entry in a larger batch may be
    that or bad data: the batch error goes on to be bisected, carrying the advice.
    """
    text = (exc.server_message or "").lower()
    where: dict[str, Any] = {
        "status_code": exc.status_code,
        "method": exc.method,
        "path": exc.path,
        "server_message": exc.server_message,
    }
    if "record already exists" in text or (sent == 1 and "duplicate entry" in text):
        return UpsertIgnoredError(
            f"{exc.message} - this Twenty server ignores ?upsert=true on REST batch calls "
            "(older releases)",
            advice=USE_GRAPHQL_WRITES,
            **where,
        )
    if "duplicate entry" in text:
        return BatchRejectedError(
            f"{exc.message} (if records that already exist fail like this, the server may "
            "ignore ?upsert=true on REST)",
            advice=MAYBE_USE_GRAPHQL_WRITES,
            **where,
        )
    return None
