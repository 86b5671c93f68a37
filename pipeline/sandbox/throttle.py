"""Twenty's per-workspace token buckets, to the millisecond (twenty-api.md §5.1).

Refill is ``floor(elapsed_ms * limit / window_ms)`` and the refill clock restarts on
every *accepted* call, so the fractional part of a refill is lost each time; a
refused call writes nothing. A missing bucket counts as full. Both the short and
the long bucket are checked, in that order, per counted call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


def wall_clock_ms() -> float:
    """Milliseconds on a monotonic clock."""
    return time.monotonic() * 1000.0


@dataclass
class TokenBucket:
    """One bucket: ``limit`` tokens refilled over ``window_ms``."""

    limit: int
    window_ms: float
    tokens: int | None = None
    last_refill_ms: float = 0.0

    def available(self, now_ms: float) -> int:
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
        self.tokens = available - 1
        self.last_refill_ms = now_ms
        return True

    def retry_after_ms(self, now_ms: float) -> float:
        """How long until one token is back (for the newest profile's Retry-After)."""
        per_token = self.window_ms / self.limit
        return max(0.0, self.last_refill_ms + per_token - now_ms)


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
    ) -> None:
        self.short = TokenBucket(short_limit, short_window_ms)
        self.long = TokenBucket(limit, window_ms)
        self.clock = clock
        self.enabled = enabled
        self.accepted = 0
        self.refused = 0

    def check(self) -> Refusal | None:
        """Spend one token from each bucket; the refusal of the first that is empty."""
        if not self.enabled:
            return None
        now = self.clock()
        for bucket in (self.short, self.long):
            if not bucket.consume(now):
                self.refused += 1
                return Refusal(bucket.limit, bucket.window_ms, bucket.retry_after_ms(now))
        self.accepted += 1
        return None
