"""Which rate-limit bucket a workspace has, asked before the first counted call.

Twenty switches a workspace from the legacy throttler (twenty-api.md §5.1) to the
usage-limit engine (§5.2) with the feature flag ``IS_API_RATE_LIMIT_V2_ENABLED``
(``throttleQueryExecution`` in the common base query runner). The flag can be read
with the API key itself: ``currentWorkspace`` on ``/metadata`` is guarded by the
workspace guard alone and its ``featureFlags`` field by nothing more
(``workspace.resolver.ts``), and metadata calls spend no token. One such call tells the
pacer which rule the server counts by, so it need neither guess (clusters that suit
both) nor wait for a 429 to learn.

The answer is a hint, never a condition: any failure (an old server, a proxy that
only passes ``/rest``, a changed schema) leaves the kind unknown and the pacer on its
careful default, with a debug line saying why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx

from pipeline.config import BucketKind

log = logging.getLogger("pipeline.client")

RATE_LIMIT_V2_FLAG = "IS_API_RATE_LIMIT_V2_ENABLED"
PROBE_QUERY = "query WorkspaceFeatureFlags { currentWorkspace { featureFlags { key value } } }"
PROBE_DEADLINE = 10.0
"""Seconds the probe may take; past them the run goes on without its answer."""


def bucket_from_answer(body: Any) -> BucketKind | None:
    """The bucket a ``currentWorkspace { featureFlags }`` answer implies, or None.

    A workspace whose flags list lacks the key, or has it false, is throttled by the
    legacy bucket (``isFeatureEnabled`` reads a missing flag as false).
    """
    if not isinstance(body, dict) or body.get("errors"):
        return None
    data = body.get("data")
    workspace = data.get("currentWorkspace") if isinstance(data, dict) else None
    flags = workspace.get("featureFlags") if isinstance(workspace, dict) else None
    if not isinstance(flags, list):
        return None
    for flag in flags:
        if isinstance(flag, dict) and flag.get("key") == RATE_LIMIT_V2_FLAG:
            return "v2" if flag.get("value") is True else "legacy"
    return "legacy"


async def probe_bucket(
    http: httpx.AsyncClient, *, redact: Callable[[str], str]
) -> BucketKind | None:
    """Ask the workspace which bucket counts its calls; None when it cannot say.

    One unpaced call, never retried: the run does not depend on it.
    """
    try:
        async with asyncio.timeout(PROBE_DEADLINE):
            response = await http.post("/metadata", json={"query": PROBE_QUERY})
        if response.status_code != 200:
            log.debug("bucket probe: POST /metadata answered %d", response.status_code)
            return None
        body = response.json()
    except (httpx.HTTPError, TimeoutError, ValueError) as exc:
        log.debug("bucket probe: %s", redact(f"{type(exc).__name__}: {exc}"))
        return None
    kind = bucket_from_answer(body)
    if kind is None:
        log.debug("bucket probe: the answer does not give the workspace's feature flags")
    return kind
