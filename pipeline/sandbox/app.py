"""The sandbox workspace as an ASGI app: Twenty's REST, GraphQL and metadata faces.

Usable in-process (``httpx.ASGITransport(app=sandbox.app)``) and served by uvicorn
(``twenty-pipeline sandbox serve``). Envelopes, status codes and messages follow
twenty-api.md section by section; where a behaviour depends on the Twenty release,
``profile`` picks ``newest`` or ``legacy``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipeline.sandbox.auth import Gatekeeper, Profile
from pipeline.sandbox.engine import Engine
from pipeline.sandbox.faults import FaultInjector, Faults, InjectedDisconnect
from pipeline.sandbox.graphql_http import GraphQLEndpoints
from pipeline.sandbox.rest_core import RestCore
from pipeline.sandbox.rest_metadata import RestMetadata
from pipeline.sandbox.throttle import BucketKind, Throttler, wall_clock_ms

__all__ = ["Faults", "InjectedDisconnect", "Profile", "Sandbox", "SandboxOptions"]


@dataclass(frozen=True)
class SandboxOptions:
    """How the sandbox behaves; defaults are Twenty's own."""

    profile: Profile = "newest"
    bucket: BucketKind | None = None
    """Which token bucket (twenty-api.md §5): ``legacy`` or ``v2``; None: the
    profile's (``newest`` has the usage-limit engine, ``legacy`` the throttler)."""
    rate_limit: int = 100
    rate_window_ms: float = 60_000
    short_limit: int = 100
    short_window_ms: float = 1_000
    throttle: bool = True
    max_records: int = 200
    database_wait_ms: float = 0.0
    """How long a counted call awaits its database before it is applied. Twenty counts
    a call, then awaits Postgres, and counts the next calls meanwhile; ``sandbox serve``
    sets 1 ms so that calls arriving together are counted together over a socket, as
    they would be by Twenty, rather than each after the previous one's SQLite write."""
    faults: Faults = field(default_factory=Faults)

    @property
    def bucket_kind(self) -> BucketKind:
        """The bucket in force: the one asked for, or the profile's."""
        if self.bucket is not None:
            return self.bucket
        return "legacy" if self.profile == "legacy" else "v2"


async def health(request: Request) -> Response:
    """Readiness probe for ``sandbox serve``."""
    return JSONResponse({"status": "ok"})


class Sandbox:
    """A local Twenty-compatible workspace over one SQLite file."""

    def __init__(
        self,
        db_path: str | Path,
        options: SandboxOptions | None = None,
        *,
        api_key: str | None = None,
        clock_ms: Callable[[], float] = wall_clock_ms,
    ) -> None:
        self.options = options or SandboxOptions()
        self.engine = Engine(db_path, max_records=self.options.max_records)
        self.api_key = self.engine.ensure_api_key(api_key)
        self.throttler = Throttler(
            self.options.rate_limit,
            self.options.rate_window_ms,
            short_limit=self.options.short_limit,
            short_window_ms=self.options.short_window_ms,
            clock=clock_ms,
            enabled=self.options.throttle,
            kind=self.options.bucket_kind,
        )
        self.gate = Gatekeeper(
            self.engine,
            self.throttler,
            self.options.profile,
            database_wait_s=self.options.database_wait_ms / 1000,
        )
        self.app = FaultInjector(
            Starlette(routes=self._routes()),
            self.options.faults,
            random.Random(self.options.faults.seed),
        )

    def _routes(self) -> list[Route]:
        rest = RestCore(self.engine, self.gate)
        metadata = RestMetadata(self.engine, self.gate)
        graphql = self.graphql = GraphQLEndpoints(self.engine, self.gate)
        return [
            Route("/healthz", health, methods=["GET"]),
            Route("/rest/metadata/{kind:str}", metadata.metadata_list, methods=["GET", "POST"]),
            Route(
                "/rest/metadata/{kind:str}/{id:str}",
                metadata.metadata_one,
                methods=["GET", "PATCH"],
            ),
            Route("/rest/open-api/core", metadata.open_api, methods=["GET"]),
            Route("/open-api/core", metadata.open_api, methods=["GET"]),
            Route("/rest/batch/{plural:str}", rest.batch, methods=["POST"]),
            Route("/rest/restore/{plural:str}/{id:str}", rest.restore_one, methods=["PATCH"]),
            Route("/rest/restore/{plural:str}", rest.restore_many, methods=["PATCH"]),
            Route("/rest/{plural:str}/{id:str}/restore", rest.restore_one, methods=["PATCH"]),
            Route("/rest/{plural:str}/duplicates", rest.duplicates, methods=["POST"]),
            Route(
                "/rest/{plural:str}", rest.collection, methods=["GET", "POST", "PATCH", "DELETE"]
            ),
            Route(
                "/rest/{plural:str}/{id:str}",
                rest.member,
                methods=["GET", "PATCH", "PUT", "DELETE"],
            ),
            Route("/graphql", graphql.graphql_endpoint, methods=["POST"]),
            Route("/metadata", graphql.metadata_graphql, methods=["POST"]),
        ]

    def warm_up(self) -> None:
        """Build both GraphQL schemas now, so the first call costs what any other does."""
        _ = self.graphql.workspace.schema
        self.graphql.metadata_schema()

    def close(self) -> None:
        """Close the database (and the fault trace)."""
        self.app.close()
        self.engine.close()
