"""Twenty's per-workspace token buckets, both generations, to the millisecond.

- ``legacy`` (the throttler, twenty-api.md §5.1): refill is
  ``floor(elapsed_ms * limit / window_ms)`` and the refill clock restarts on every
  *accepted* call, so the fractional part of a refill is lost each time. The short
  and the long bucket are checked one after the other: a call the long bucket
  refuses has already spent its short-bucket token.
- ``v2`` (the usage-limit engine, §5.2, behind ``IS_API_RATE_LIMIT_V2_ENABLED``):
  refill is ``elapsed_ms * limit / window_ms`` with its fractions kept; every bucket of
  a call is checked at once, and a refusal names the exact wait,
  ``ceil((1 - tokens) * window_ms / limit)``.

In both, a missing bucket counts as full and a refused call writes nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

BucketKind = Literal["legacy", "v2"]


def wall_clock_ms() -> float:
    """Milliseconds on a monotonic clock."""
    return time.monotonic() * 1000.0


@dataclass
class TokenBucket:
    """One legacy bucket: ``limit`` tokens refilled over ``window_ms``, rounded down."""

    limit: int
    window_ms: float
    tokens: int | None = None
    last_refill_ms: float = 0.0

    def available(self, now_ms: float) -> float:
        """Tokens a call arriving at ``now_ms`` would find."""
        if self.tokens is None:
            return self.limit
        refill = math.floor((now_ms - self.last_refill_ms) * self.limit / self.window_ms)
        return min(self.tokens + max(refill, 0), self.limit)

    def consume(self, now_ms: float) -> bool:
        """Take one token; False (and no state change) when none is available."""
        available = self.available(now_ms)
        if available < 1:
            return False
        self.tokens = int(available) - 1
        self.last_refill_ms = now_ms
        return True

    def retry_after_ms(self, now_ms: float) -> float:
        """How long until one token is back (what a refusal announces)."""
        per_token = self.window_ms / self.limit
        return max(0.0, self.last_refill_ms + per_token - now_ms)


@dataclass
class FractionalBucket:
    """One v2 bucket: refill with its fractions kept, ``burst`` (= limit) at most."""

    limit: int
    window_ms: float
    tokens: float | None = None
    stamp_ms: float = 0.0

    def available(self, now_ms: float) -> float:
        """Tokens (with their fraction) a call arriving at ``now_ms`` would find."""
        if self.tokens is None:
            return float(self.limit)
        elapsed = max(now_ms - self.stamp_ms, 0.0)
        return min(float(self.limit), self.tokens + elapsed * self.limit / self.window_ms)

    def take(self, now_ms: float) -> None:
        """Spend one token (the caller checked :meth:`available`)."""
        self.tokens = self.available(now_ms) - 1
        self.stamp_ms = now_ms

    def retry_after_ms(self, now_ms: float) -> float:
        """The script's ``retryAfterMs``: when one whole token will be there."""
        missing = 1 - self.available(now_ms)
        return float(max(0, math.ceil(missing * self.window_ms / self.limit)))


@dataclass(frozen=True)
class Refusal:
    """Why a call was refused: the bucket's limit and window, and when to come back."""

    limit: int
    window_ms: float
    retry_after_ms: float


class Throttler:
    """The workspace's two buckets (short: per second, long: per minute by default)."""

    def __init__(
        self,
        limit: int = 100,
        window_ms: float = 60_000,
        *,
        short_limit: int = 100,
        short_window_ms: float = 1_000,
        clock: Callable[[], float] = wall_clock_ms,
        enabled: bool = True,
        kind: BucketKind = "legacy",
    ) -> None:
        self.kind = kind
        self.short = TokenBucket(short_limit, short_window_ms)
        self.long = TokenBucket(limit, window_ms)
        self.short_v2 = FractionalBucket(short_limit, short_window_ms)
        self.long_v2 = FractionalBucket(limit, window_ms)
        self.clock = clock
        self.enabled = enabled
        self.accepted = 0
        self.refused = 0

    def preset(self, tokens: int) -> None:
        """Leave ``tokens`` in the long bucket now (another client spent the rest)."""
        now = self.clock()
        if self.kind == "v2":
            self.long_v2.tokens, self.long_v2.stamp_ms = float(tokens), now
        else:
            self.long.tokens, self.long.last_refill_ms = tokens, now

    def check(self) -> Refusal | None:
        """Spend one token from each bucket; the refusal of the first that is empty."""
        if not self.enabled:
            return None
        now = self.clock()
        refusal = self._check_v2(now) if self.kind == "v2" else self._check_legacy(now)
        if refusal is None:
            self.accepted += 1
        else:
            self.refused += 1
        return refusal

    def _check_legacy(self, now: float) -> Refusal | None:
        for bucket in (self.short, self.long):
            if not bucket.consume(now):
                return Refusal(bucket.limit, bucket.window_ms, bucket.retry_after_ms(now))
        return None

    def _check_v2(self, now: float) -> Refusal | None:
        buckets = (self.short_v2, self.long_v2)
        for bucket in buckets:
            if bucket.available(now) < 1:
                return Refusal(bucket.limit, bucket.window_ms, bucket.retry_after_ms(now))
        for bucket in buckets:
            bucket.take(now)
        return None
