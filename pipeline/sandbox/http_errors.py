"""Error bodies as each face answers them: REST's envelope (§2.8) and GraphQL's ``errors``."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError
from starlette.responses import JSONResponse

from pipeline.sandbox.errors import SandboxError


def rest_error(status: int, error: str, message: str) -> JSONResponse:
    """Twenty's REST error body (twenty-api.md §2.8)."""
    return JSONResponse(
        {"statusCode": status, "error": error, "messages": [message]}, status_code=status
    )


def sandbox_error(exc: SandboxError) -> JSONResponse:
    """A sandbox error as its REST answer."""
    return rest_error(exc.status, exc.rest_error, exc.message)


def format_graphql_error(error: GraphQLError, default_code: str) -> dict[str, Any]:
    """One entry of ``errors``, with Twenty's ``code`` and ``userFriendlyMessage``."""
    formatted: dict[str, Any] = dict(error.formatted)
    extensions = dict(formatted.get("extensions") or {})
    extensions.setdefault("code", default_code)
    extensions.setdefault("userFriendlyMessage", error.message)
    formatted["extensions"] = extensions
    return formatted


def graphql_errors(message: str, code: str) -> JSONResponse:
    """A 200 answer carrying one GraphQL error (GraphQL reports failures in the body)."""
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}]})
