"""A local Twenty-compatible workspace: REST + GraphQL + metadata API on SQLite.

The server classes load on first use, so that reading the standard seed
(``pipeline.sandbox.standard``) does not pay for starlette and graphql.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.sandbox.app import Sandbox, SandboxOptions
    from pipeline.sandbox.faults import Faults

_HOMES = {"Faults": "pipeline.sandbox.faults", "Sandbox": "pipeline.sandbox.app"}
_HOMES["SandboxOptions"] = "pipeline.sandbox.app"

__all__ = ["Faults", "Sandbox", "SandboxOptions"]


def __getattr__(name: str) -> object:
    """Import ``Sandbox``, ``SandboxOptions`` or ``Faults`` from its module when first asked."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pipeline.sandbox' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
