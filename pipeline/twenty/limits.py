"""What a 429 says about the workspace's bucket (twenty-api.md §5.1, §5.2).

The two generations of Twenty's rate limit refuse differently:

- the legacy throttler: REST 429 ``{"error": "HttpException", "messages": ["Limit reached
  (100 tokens per 60000 ms)"]}`` with no header; GraphQL ``BAD_USER_INPUT`` with the same
  message;
- the usage-limit engine: REST 429 ``{"error": "RATE_LIMITED", "limit": 100,
  "periodCount": 60, "periodUnit": "second", "retryAfterSeconds": 12, ...}`` with
  ``Retry-After`` and ``X-RateLimit-*`` headers; GraphQL ``RATE_LIMITED`` with the same
  figures in ``extensions`` and ``retryAfterMs``.

:func:`rest_refusal` and :func:`graphql_refusal` read the bucket's generation, its limit
and window and the announced wait out of either, each as far as the answer says it.
"""

from __future__ import annotations

import contextlib
import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any, Literal, TypedDict

import httpx

_LEGACY_RE = re.compile(r"Limit reached \((\d+) tokens per (\d+(?:\.\d+)?) ms\)")
_V2_RE = re.compile(r"(\d+) requests per (\d+(?:\.\d+)?)\s*(s|ms|m|h)\b")
_UNIT_SECONDS = {
    "millisecond": 0.001,
    "second": 1.0,
    "minute": 60.0,
    "hour": 3600.0,
    "day": 86400.0,
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


class Refusal(TypedDict):
    """The keyword arguments of :class:`~pipeline.errors.RateLimitedError`."""

    retry_after: float | None
    bucket: Literal["legacy", "v2"] | None
    limit: int | None
    window_s: float | None


def rest_refusal(response: httpx.Response, body: Any, message: str) -> Refusal:
    """What a REST 429 (its headers, body and message) says of the bucket."""
    fields: Mapping[str, Any] = body if isinstance(body, dict) else {}
    headers = response.headers
    v2 = (
        fields.get("error") == "RATE_LIMITED"
        or "retry-after" in headers
        or "x-ratelimit-limit" in headers
    )
    retry = _retry_after_header(headers.get("retry-after"))
    if retry is None:
        retry = _number(fields.get("retryAfterSeconds"))
    limit, window = _stated_limit(fields, message)
    if limit is None:
        limit = _int(headers.get("x-ratelimit-limit"))
    return Refusal(retry_after=retry, bucket=_generation(v2, message), limit=limit, window_s=window)


def graphql_refusal(extensions: Mapping[str, Any], message: str) -> Refusal:
    """What a GraphQL rate-limit error (its extensions and message) says of the bucket."""
    v2 = extensions.get("code") == "RATE_LIMITED"
    retry_ms = _number(extensions.get("retryAfterMs"))
    limit, window = _stated_limit(extensions, message)
    return Refusal(
        retry_after=retry_ms / 1000 if retry_ms is not None else None,
        bucket=_generation(v2, message),
        limit=limit,
        window_s=window,
    )


def _generation(v2: bool, message: str) -> Literal["legacy", "v2"] | None:
    if v2:
        return "v2"
    return "legacy" if _LEGACY_RE.search(message) else None


def _stated_limit(fields: Mapping[str, Any], message: str) -> tuple[int | None, float | None]:
    """(calls, window in seconds) from the structured figures, else from the message."""
    limit = _int(fields.get("limit"))
    count = _number(fields.get("periodCount"))
    unit = _unit_seconds(str(fields.get("periodUnit", "")))
    if limit is not None and count is not None and unit is not None:
        return limit, count * unit
    legacy = _LEGACY_RE.search(message)
    if legacy:
        return int(legacy.group(1)), float(legacy.group(2)) / 1000
    v2 = _V2_RE.search(message)
    if v2:
        return int(v2.group(1)), float(v2.group(2)) * _UNIT_SECONDS[v2.group(3)]
    return limit, None


def _unit_seconds(name: str) -> float | None:
    """Seconds in a period unit (``second``, ``seconds``, ``minute``, ``ms``…)."""
    name = name.strip().lower()
    if name in _UNIT_SECONDS:
        return _UNIT_SECONDS[name]
    return _UNIT_SECONDS.get(name[:-1]) if name.endswith("s") else None


def _retry_after_header(header: str | None) -> float | None:
    if not header:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(header))
    with contextlib.suppress(TypeError, ValueError):
        moment = email.utils.parsedate_to_datetime(header)
        return max(0.0, moment.timestamp() - time.time())
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None
