"""Open the workspace a run talks to: a real Twenty server, or the local sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pipeline.client import TwentyClient
from pipeline.config import Settings


@asynccontextmanager
async def open_workspace(settings: Settings) -> AsyncIterator[TwentyClient]:
    """Yield one :class:`TwentyClient` for the whole run and close it afterwards."""
    async with TwentyClient.from_settings(settings) as client:
        yield client
