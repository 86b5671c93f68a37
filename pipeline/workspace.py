"""Open the workspace a run talks to: a real Twenty server, or the local sandbox."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from pipeline.client import TwentyClient
from pipeline.config import Secret, Settings
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.sandbox import Sandbox

SANDBOX_BASE_URL = "http://sandbox.local"


@asynccontextmanager
async def open_workspace(settings: Settings) -> AsyncIterator[TwentyClient]:
    """Yield one :class:`TwentyClient` for the whole run and close it afterwards.

    With ``settings.sandbox`` the client talks to an in-process sandbox stored at
    that path (created and seeded with Twenty's standard objects on first use),
    through ``httpx.ASGITransport``: same client, same pacing, no socket.
    """
    if settings.sandbox is None:
        async with TwentyClient.from_settings(settings) as client:
            yield client
        return
    sandbox = open_sandbox(settings.sandbox)
    try:
        async with TwentyClient(
            base_url=SANDBOX_BASE_URL,
            api_key=Secret(sandbox.api_key),
            key_source=f"the sandbox at {settings.sandbox}",
            rate=settings.rate,
            concurrency=settings.concurrency,
            api=settings.api,
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
