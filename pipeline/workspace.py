"""Open a workspace a run talks to: a real Twenty server, or the local sandbox."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from pipeline.config import Secret, Settings, Workspace
from pipeline.errors import ConfigError
from pipeline.twenty import TwentyClient

if TYPE_CHECKING:
    from pipeline.sandbox import Sandbox

SANDBOX_BASE_URL = "http://sandbox.local"


@asynccontextmanager
async def open_workspace(
    workspace: Workspace | Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[TwentyClient]:
    """Yield one :class:`TwentyClient` for ``workspace`` and close it afterwards.

    With ``workspace.sandbox`` the client talks to an in-process sandbox stored at
    that path (created and seeded with Twenty's standard objects on first use),
    through ``httpx.ASGITransport``: same client, same pacing, no socket. Each call
    opens its own client, pool and pacer, so two workspaces (a migration's source
    and target) can be open at once without sharing a call budget. ``transport``
    replaces the network of a real workspace (tests). :class:`Settings` is taken
    too, for its ``workspace``, until every caller passes the workspace itself.
    """
    if isinstance(workspace, Settings):
        workspace = workspace.workspace
    if workspace.sandbox is None:
        async with TwentyClient.for_workspace(workspace, transport=transport) as client:
            yield client
        return
    sandbox = open_sandbox(workspace.sandbox)
    try:
        async with TwentyClient(
            base_url=SANDBOX_BASE_URL,
            api_key=Secret(sandbox.api_key),
            key_source=f"the sandbox at {workspace.sandbox}",
            rate=workspace.rate,
            concurrency=workspace.concurrency,
            reserve=workspace.reserve,
            bucket=workspace.bucket,
            api=workspace.api,
            transport=httpx.ASGITransport(app=sandbox.app),
        ) as client:
            yield client
    finally:
        sandbox.close()


def open_sandbox(path: Path, *args: Any, **kwargs: Any) -> Sandbox:
    """The sandbox stored at ``path``, or a one-line ConfigError if it cannot be one."""
    from pipeline.sandbox import Sandbox  # only runs that use it pay for its import

    try:
        return Sandbox(path, *args, **kwargs)
    except (sqlite3.Error, OSError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"--sandbox {path}: cannot open it as a sandbox workspace ({why}); "
            "give another path, or move the file away to start a fresh sandbox"
        ) from None
