"""TwentyClient: the one object callers hold to talk to one Twenty workspace.

A facade over the layers of :mod:`pipeline.twenty`: a :class:`~.session.Session`
(connection pool, pacing, retries, error mapping, redaction) and the resources on
top of it, :class:`~.records.Records` (batch upserts, finds, paged lists) and
:class:`~.metadata.Metadata` (objects and fields). Loaders, the schema reader, the
runner and the tests call its methods; the layers stay swappable beneath it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from pipeline.config import (
    DEFAULT_RATE,
    DEFAULT_RESERVE,
    DEFAULT_TIMEOUT,
    ApiFlavour,
    BucketKind,
    Rate,
    Secret,
    Settings,
    Workspace,
)
from pipeline.errors import FatalApiError
from pipeline.twenty.deletes import soft_delete_many
from pipeline.twenty.metadata import Metadata
from pipeline.twenty.names import ObjectNames, Record
from pipeline.twenty.pacing import Pacer
from pipeline.twenty.paginate import PAGE_SIZE, Page
from pipeline.twenty.records import Records
from pipeline.twenty.session import CallKind, CallStats, RetryPolicy, Session


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
        reserve: tokens of the workspace's bucket left for other clients.
        bucket: the server's rate-limit bucket (``legacy``/``v2``) when known.
        pace_margin: seconds of network jitter the pacer absorbs (None: its default).
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
        reserve: int = DEFAULT_RESERVE,
        bucket: BucketKind | None = None,
        pace_margin: float | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.session = Session(
            base_url=base_url,
            api_key=api_key,
            key_source=key_source,
            rate=rate,
            concurrency=concurrency,
            transport=transport,
            timeout=timeout,
            call_deadline=call_deadline,
            retry=RetryPolicy(max_retries, backoff_base, backoff_cap),
            reserve=reserve,
            bucket=bucket,
            pace_margin=pace_margin,
            rng=rng,
            sleep=sleep,
        )
        self.records = Records(self.session, api)
        self.metadata = Metadata(self.session)

    @classmethod
    def for_workspace(
        cls, workspace: Workspace, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> TwentyClient:
        """A client for a real workspace (not the sandbox: see :mod:`pipeline.workspace`)."""
        if workspace.url is None or workspace.key is None:
            raise FatalApiError("no workspace URL or API key in the settings")
        return cls(
            base_url=workspace.url,
            api_key=workspace.key,
            key_source=workspace.key_source,
            rate=workspace.rate,
            concurrency=workspace.concurrency,
            reserve=workspace.reserve,
            bucket=workspace.bucket,
            api=workspace.api,
            transport=transport,
            timeout=workspace.timeout,
            call_deadline=workspace.call_deadline,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> TwentyClient:
        """A client for the workspace ``settings`` names (not the sandbox: see workspace.py)."""
        return cls.for_workspace(settings.workspace, transport=transport)

    async def __aenter__(self) -> TwentyClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.session.aclose()

    # ------------------------------------------------------------------ state

    @property
    def api(self) -> ApiFlavour:
        """The flavour writes go through."""
        return self.records.api

    @property
    def key_source(self) -> str | None:
        """Where the key came from (named in auth errors)."""
        return self.session.key_source

    @property
    def call_deadline(self) -> float:
        """Seconds one whole call may take, body included."""
        return self.session.call_deadline

    @property
    def stats(self) -> CallStats:
        """Calls made so far, for the run report."""
        return self.session.stats

    @property
    def max_batch_size(self) -> int | None:
        """The largest batch the server took, once it refused a larger one; else None."""
        return self.records.max_batch_size

    @property
    def pace_interval(self) -> float:
        """Current spacing between call starts, in seconds."""
        return self.session.pacer.interval

    def note_backlog(self, calls: int | None) -> None:
        """Tell the pacer at least how many calls a job still has queued (None: unknown).

        Near the end of a job, the calls in flight will not all be followed by others;
        knowing it, the pacer does not hold the last ones for a cluster that will not
        come. One job at a time says it (the loader, which runs one object at a time).
        """
        self.session.pacer.backlog = calls

    @property
    def _pacer(self) -> Pacer:
        return self.session.pacer

    @property
    def _http(self) -> httpx.AsyncClient:
        return self.session.http

    # ------------------------------------------------------------------ calls

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
        """One paced, retried call; see :meth:`Session.request`."""
        return await self.session.request(
            kind,
            method,
            path,
            params=params,
            json_body=json_body,
            idempotent=idempotent,
            answer=answer,
        )

    async def graphql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        kind: CallKind = "read",
        idempotent: bool = True,
    ) -> dict[str, Any]:
        """Run one GraphQL document on ``/graphql``; return its ``data``."""
        return await self.session.graphql(query, variables, kind=kind, idempotent=idempotent)

    async def upsert_many(
        self,
        obj: ObjectNames,
        records: list[Record],
        *,
        upsert: bool = True,
        selection: str = "id",
    ) -> list[Record]:
        """Create or update ``records``; see :meth:`Records.upsert_many`."""
        return await self.records.upsert_many(obj, records, upsert=upsert, selection=selection)

    async def soft_delete_many(self, obj: ObjectNames, ids: list[str]) -> set[str]:
        """Soft-delete ``ids`` in one call; the ids Twenty deleted now (lower case).

        See :func:`pipeline.twenty.deletes.soft_delete_many`.
        """
        return await soft_delete_many(self.session, self.api, obj, ids)

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
        """One page of ``GET /rest/{plural}``; see :meth:`Records.find_many`."""
        return await self.records.find_many(
            obj,
            filter=filter,
            order_by=order_by,
            limit=limit,
            starting_after=starting_after,
            fields=fields,
            depth=depth,
        )

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
        """One page of a GraphQL connection; see :meth:`Records.find_many_graphql`."""
        return await self.records.find_many_graphql(
            obj, filter=filter, order_by=order_by, first=first, after=after, selection=selection
        )

    def iter_pages(
        self,
        obj: ObjectNames,
        *,
        filter: str | None = None,
        order_by: str | None = None,
        page_size: int = PAGE_SIZE,
        fields: list[str] | None = None,
    ) -> AsyncIterator[Page]:
        """Every page of a REST list; see :meth:`Records.iter_pages`."""
        return self.records.iter_pages(
            obj, filter=filter, order_by=order_by, page_size=page_size, fields=fields
        )

    def iter_pages_graphql(
        self,
        obj: ObjectNames,
        *,
        filter: dict[str, Any] | None = None,
        order_by: list[dict[str, Any]] | None = None,
        page_size: int = PAGE_SIZE,
        selection: str = "id",
    ) -> AsyncIterator[Page]:
        """Every page of a GraphQL connection; see :meth:`Records.iter_pages_graphql`."""
        return self.records.iter_pages_graphql(
            obj, filter=filter, order_by=order_by, page_size=page_size, selection=selection
        )

    async def learn_bucket(self) -> BucketKind | None:
        """Ask the workspace which rate-limit bucket it has; see :meth:`Session.learn_bucket`."""
        return await self.session.learn_bucket()

    async def metadata_objects(self) -> list[Record]:
        """Every object of the workspace (with ``fields`` when the server embeds them)."""
        return await self.metadata.objects()

    async def metadata_fields(self) -> list[Record]:
        """Every field of the workspace, each with its ``objectMetadataId``."""
        return await self.metadata.fields()
