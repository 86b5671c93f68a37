"""A local Twenty-compatible workspace: REST + GraphQL + metadata API on SQLite."""

from __future__ import annotations

from pipeline.sandbox.app import Faults, Sandbox, SandboxOptions

__all__ = ["Faults", "Sandbox", "SandboxOptions"]
