"""Twenty's standard objects as the client's model, for work without a workspace.

``validate --offline`` and ``init-mapping`` check a mapping against what a fresh
workspace holds. That is the sandbox's knowledge (``pipeline.sandbox.standard``); here
the client reads the sandbox's metadata answer through its own parser, as it reads a
real server's, so the standard objects are described once.
"""

from __future__ import annotations

from pipeline.sandbox.standard import fresh_workspace_objects
from pipeline.schema import WorkspaceSchema, parse_schema


def standard_schema() -> WorkspaceSchema:
    """The standard objects as a workspace model (no custom objects or fields)."""
    return parse_schema(fresh_workspace_objects())
