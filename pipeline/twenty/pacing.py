"""Pacing: space call starts so that Twenty's token bucket never runs dry.

Twenty's legacy throttler (twenty-api.md §5.1) is a token bucket whose refill is
``floor(elapsed * limit / window)`` and whose clock restarts on every accepted call,
so a call that arrives less than ``window / limit`` after the previous one regains no
token at all. A client that merely stays under "100 per minute" on average still
drains the bucket and meets 429s. :class:`Pacer` therefore spaces call *starts* at
least ``window / limit`` apart (plus a small margin for network jitter), through an
``aiolimiter`` bucket of capacity one; the session keeps up to ``concurrency`` calls
in flight so that slow answers do not waste the budget. The bucket is per workspace,
so each workspace's session owns its own pacer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiolimiter import AsyncLimiter

from pipeline.config import Rate


class Pacer:
    """Spaces call starts so that Twenty's token bucket never runs dry.

    The spacing is widened by ``margin`` (2 %) or ``min_margin`` (15 ms), whichever
    is larger, because the server measures *arrival* times: a call that arrives even
    1 ms early regains no token, and jitter of a few milliseconds is common even on
    loopback. At Twenty's 100/60 that is 615 ms, 97.6 % of the ceiling. After a 429 the spacing
    grows (up to 4x) and every caller waits out the announced ``Retry-After``;
    after a long run of successes it shrinks back to the base spacing.
    """

    SLOWDOWN = 1.25
    MAX_SLOWDOWN = 4.0
    RECOVER_AFTER = 100

    def __init__(
        self,
        rate: Rate,
        *,
        margin: float = 0.02,
        min_margin: float = 0.015,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._sleep = sleep
        self.base_interval: float = rate.interval + max(rate.interval * margin, min_margin)
        self.interval: float = self.base_interval
        self._limiter = AsyncLimiter(1, self.base_interval)
        self._pending_swap = False
        self._lock = asyncio.Lock()
        self._resume_at = 0.0
        self._last_start: float | None = None
        self._successes = 0

    async def wait(self) -> None:
        """Return when the next call may start."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            if self._resume_at > loop.time():
                await self._sleep(self._resume_at - loop.time())
            if self._pending_swap:
                self._pending_swap = False
                self._limiter = AsyncLimiter(1, self.interval)
                if self._last_start is not None:
                    gap = self._last_start + self.interval - loop.time()
                    if gap > 0:
                        await self._sleep(gap)
            await self._limiter.acquire()
            self._last_start = loop.time()

    def pause(self, seconds: float) -> None:
        """Hold every caller for ``seconds`` from now (the bucket is per workspace)."""
        loop = asyncio.get_running_loop()
        self._resume_at = max(self._resume_at, loop.time() + seconds)

    def slow_down(self) -> None:
        """Widen the spacing after a 429."""
        self._successes = 0
        new = min(self.interval * self.SLOWDOWN, self.base_interval * self.MAX_SLOWDOWN)
        if new != self.interval:
            self.interval = new
            self._pending_swap = True

    def succeeded(self) -> None:
        """Note a call that was not rate limited; recover the pace after a long run of them."""
        self._successes += 1
        if self.interval > self.base_interval and self._successes >= self.RECOVER_AFTER:
            self._successes = 0
            self.interval = max(self.base_interval, self.interval / self.SLOWDOWN)
            self._pending_swap = True
