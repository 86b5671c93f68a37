"""Who may call, and how often: API-key authentication (§1) and the throttled answers (§5).

A refusal is shaped by the bucket that made it: the legacy throttler's bare
``Limit reached (N tokens per M ms)``, or the usage-limit engine's 429 with
``Retry-After`` and ``X-RateLimit-*`` (twenty-api.md §5.1, §5.2).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import JSONResponse

from pipeline.sandbox.engine import Engine
from pipeline.sandbox.errors import SandboxError
from pipeline.sandbox.http_errors import rest_error
from pipeline.sandbox.throttle import Refusal, Throttler

Profile = Literal["newest", "legacy"]


class Gatekeeper:
    """Authenticates each call and spends its token, answering refusals per bucket."""

    def __init__(
        self,
        engine: Engine,
        throttler: Throttler,
        profile: Profile,
        *,
        database_wait_s: float = 0.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.engine = engine
        self.throttler = throttler
        self.profile = profile
        self.database_wait_s = database_wait_s
        self._sleep = sleep

    def _token(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip() or None
        return request.query_params.get("token") or None

    def authenticate(self, request: Request) -> tuple[dict[str, Any] | None, SandboxError | None]:
        """The caller's actor, or the auth error Twenty would answer (twenty-api.md §1)."""
        token = self._token(request)
        if token is None:
            return None, _auth_error(
                403, "FORBIDDEN_EXCEPTION", "FORBIDDEN", "Missing authentication token"
            )
        key = self.engine.find_api_key(token)
        if key is None:
            return None, _auth_error(401, "UNAUTHENTICATED", "UNAUTHENTICATED", "Token invalid.")
        if key.revoked_at is not None:
            return None, _auth_error(
                403, "FORBIDDEN_EXCEPTION", "FORBIDDEN", "This API Key is revoked"
            )
        if key.expires_at is not None and key.expires_at <= _utc_now():
            return None, _auth_error(
                401, "UNAUTHENTICATED", "UNAUTHENTICATED", "Token has expired."
            )
        actor: dict[str, Any] = {
            "source": "API",
            "name": key.name,
            "workspaceMemberId": None,
            "context": {},
        }
        return actor, None

    @property
    def _legacy_bucket(self) -> bool:
        return self.throttler.kind == "legacy"

    def _limit_message(self, refusal: Refusal) -> str:
        if self._legacy_bucket:
            return f"Limit reached ({refusal.limit} tokens per {refusal.window_ms:g} ms)"
        return (
            f"Rate limit exceeded for apiKey: {refusal.limit} requests per "
            f"{refusal.window_ms / 1000:g}s."
        )

    def _retry_after_s(self, refusal: Refusal) -> int:
        return max(1, math.ceil(refusal.retry_after_ms / 1000))

    def rest_throttled(self, refusal: Refusal) -> JSONResponse:
        """The 429 of the configured profile (twenty-api.md §5.1 / §5.2)."""
        message = self._limit_message(refusal)
        if self._legacy_bucket:
            return rest_error(429, "HttpException", message)
        retry = self._retry_after_s(refusal)
        body = {
            "statusCode": 429,
            "error": "RATE_LIMITED",
            "messages": [message],
            "limitKind": "speed",
            "exhaustedKind": "limit",
            "scope": {"spenderType": "apiKey", "spenderId": None, "operationType": "API_REQUEST"},
            "limit": refusal.limit,
            "remaining": 0,
            "periodCount": int(refusal.window_ms / 1000) or 1,
            "periodUnit": "second",
            "retryAfterSeconds": retry,
        }
        headers = {
            "Retry-After": str(retry),
            "X-RateLimit-Limit": str(refusal.limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(time.time()) + retry),
        }
        return JSONResponse(body, status_code=429, headers=headers)

    def graphql_throttled(self, refusal: Refusal) -> GraphQLError:
        """The GraphQL error of the configured profile for a refused root field."""
        message = self._limit_message(refusal)
        if self._legacy_bucket:
            return GraphQLError(
                message, extensions={"code": "BAD_USER_INPUT", "userFriendlyMessage": message}
            )
        return GraphQLError(
            message,
            extensions={
                "code": "RATE_LIMITED",
                "userFriendlyMessage": message,
                "limitKind": "speed",
                "limit": refusal.limit,
                "remaining": 0,
                "periodCount": int(refusal.window_ms / 1000) or 1,
                "periodUnit": "second",
                "retryAfterMs": max(1, math.ceil(refusal.retry_after_ms)),  # exact (no 1 s floor)
                "scope": {
                    "spenderType": "apiKey",
                    "spenderId": None,
                    "operationType": "API_REQUEST",
                },
            },
        )

    async def await_database(self) -> None:
        """What a counted call awaits before it is applied: Twenty's database round trip.

        Other calls are read and counted meanwhile (even with no wait, the event loop
        takes its turn), so a cluster's calls reach the bucket together, not each after
        the previous one's write.
        """
        await self._sleep(self.database_wait_s)

    def spend_rest(self) -> JSONResponse | None:
        """Spend one token; the 429 to answer when the bucket is empty."""
        refusal = self.throttler.check()
        return None if refusal is None else self.rest_throttled(refusal)

    def spend_graphql(self) -> GraphQLError | None:
        """Spend one token for a root field; the error to raise when the bucket is empty."""
        refusal = self.throttler.check()
        return None if refusal is None else self.graphql_throttled(refusal)


class _AuthError(SandboxError):
    """An auth failure; status and codes are set per case by :func:`_auth_error`."""


def _auth_error(status: int, rest_error_name: str, graphql_code: str, message: str) -> SandboxError:
    exc = _AuthError(message)
    exc.status = status
    exc.rest_error = rest_error_name
    exc.graphql_code = graphql_code
    return exc


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
