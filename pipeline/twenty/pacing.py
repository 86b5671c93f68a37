"""Pacing: spend the workspace's token bucket as fast as Twenty allows, and no faster.

Twenty counts API calls in a per-workspace token bucket that starts **full** (``limit``
tokens, 100 by default) and refills ``limit`` tokens per ``window`` (twenty-api.md §5).
Two generations exist; the session asks the workspace's feature flags which one counts
its calls (:mod:`.bucket_probe`), and otherwise a 429's shape tells:

- **legacy** (the throttler, §5.1): the refill is ``floor(elapsed / interval)`` and the
  refill clock restarts on every admitted call, so a call arriving less than an
  ``interval`` after the previous one regains nothing and the fraction is lost.
- **v2** (the usage-limit engine, §5.2): the refill keeps its fractions.

In both a refused call writes nothing: a 429 costs a round trip, not a token.

:class:`Pacer` keeps a model of the server's bucket, fed with the start time of each
call (and when its request actually left, :meth:`Pacer.sent`), and lets a call start
only when the model says the server will admit it:

- The initial bucket is spent first (all but ``reserve`` tokens, left for other clients
  of the workspace), then the refill rate is held.
- Unless the server is known to keep fractions, calls go out in **clusters** of up to
  ``group`` calls (the session's concurrency) at once. The first call of a cluster
  arrives at least ``m`` intervals (plus a jitter ``margin``) after the last call of the
  previous one and regains ``m`` tokens; the others arrive right after it and spend
  stock without losing a fraction. The margin is paid once per cluster, not per call,
  and the legacy bucket's rounding costs nothing else. The model counts a gain as
  ``floor((start - previous start - margin) / interval)``, which the server's own gain
  (measured on arrival times) is never below while the network jitter stays under
  ``margin``.
- On a **v2** server (told by its flags or a 429's shape) calls start as soon as the fluid
  bucket holds a token above the reserve: fractions accumulate and no margin is paid.
- A 429 tells the pacer which bucket the server has and, when it says so, its real
  limit (``Limit reached (N tokens per M ms)``, ``X-RateLimit-Limit`` and the period):
  a limit lower than the configured rate is adopted for the rest of the run. The model
  is then reset to an empty bucket (on legacy, as of its clock plus the cluster's gap:
  the server's clock stands at its last admitted call), so a bucket that another client had
  half spent costs the calls already in flight (at most ``group``) and then the steady
  rate. A cluster's calls reach the server one after the other (it parses and
  authenticates each before counting it), so the gap after a cluster is the margin plus
  ``SPREAD`` for each further call; the first 429 of a run raises that allowance to
  ``WIDENED_SPREAD`` at least and each 429 that keeps coming doubles it, and once the
  gap would pass a third of the interval, calls go one at a time. 429s that keep coming
  (within ``ISOLATED_AFTER`` admitted calls: another client spending the same bucket)
  hold every caller an interval and widen the interval, up to four times; a long run of
  admitted calls narrows it back.

The scheduling core (:meth:`next_start`, :meth:`started`, :meth:`answered`,
:meth:`refused`) is synchronous and takes the time as an argument, so it runs under a
fake clock in tests; :meth:`wait` drives it on the event loop. ``aiolimiter``'s leaky
bucket is not used here: it keeps fractions (the v2 rule) but cannot express the legacy
bucket's rounding and restart, which is what clusters are for.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pipeline.config import DEFAULT_RESERVE, BucketKind, Rate

log = logging.getLogger("pipeline.client")


@dataclass(frozen=True)
class LimitNews:
    """What a refusal said about the server's bucket (each part when it said it)."""

    bucket: BucketKind | None = None
    limit: int | None = None
    window_s: float | None = None
    retry_after: float | None = None


def default_margin(rate: Rate) -> float:
    """Seconds of network jitter a cluster absorbs: 2.5 % of the interval, 5 ms at least."""
    return max(0.005, 0.025 * rate.interval)


SPREAD = 0.001
"""Seconds by which each further call of a cluster is assumed to reach the server's
bucket after the one before, once its request has left: the server reads, parses and
authenticates them one after the other before it counts them (its writes come after
the count and overlap). Widened by each 429 while the server proves slower."""


class Pacer:
    """Lets a call start when the server's token bucket will admit it (module docstring).

    Args:
        rate: the configured budget (``limit`` calls per ``window``).
        reserve: tokens of the bucket never spent (for other clients, and a cushion for
            a jitter the margin did not cover).
        group: calls started together in a cluster; the session's concurrency.
        margin: seconds of network jitter a cluster's spacing absorbs (default:
            :func:`default_margin`, plus ``SPREAD`` per further call of a cluster; a
            margin given is taken as the whole allowance).
        bucket: the server's bucket when known; None until a 429 tells (clusters,
            which suit both).
        sleep: the coroutine :meth:`wait` sleeps with.
        clock: the time source of :meth:`wait` (the event loop's by default).
    """

    SLOWDOWN = 1.25
    MAX_SLOWDOWN = 4.0
    RECOVER_AFTER = 100
    CLUSTER_WINDOW = 0.005
    """Seconds after a cluster's first start during which more calls may join it."""
    LATENCY_SAMPLES = 16
    ISOLATED_AFTER = 30
    """Admitted calls after which a new 429 is taken for a passing delay, not a pattern."""
    WIDENED_SPREAD = 0.004
    """The least allowance for a cluster's further calls after a 429: a server that
    counts a little slower than ``SPREAD`` allows for is met in one refusal, not in
    several doublings (each later 429 still doubles it)."""

    def __init__(
        self,
        rate: Rate,
        *,
        reserve: int = DEFAULT_RESERVE,
        group: int = 4,
        margin: float | None = None,
        bucket: BucketKind | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._sleep = sleep
        self._clock = clock
        self.configured = rate
        self.capacity = rate.calls
        self.base_interval = rate.interval
        self.interval = rate.interval
        self.reserve = max(0, min(reserve, rate.calls - 1))
        self.group = max(1, group)
        self.margin = margin if margin is not None else default_margin(rate)
        self.spread = SPREAD if margin is None else 0.0
        self._cluster_size = 0
        self.bucket: BucketKind | None = bucket
        self.tokens: float = float(self.capacity)
        """The model's tokens just after the last start (a full bucket before any)."""
        self.stamp: float | None = None
        """The model's refill clock: when the last call started, or later when a
        request left later than its start (:meth:`sent`); None before any call."""
        self._cluster_until = -math.inf
        self._resume_at = -math.inf
        self._reset_at = -math.inf
        self._successes = 0
        self._admitted_since_refusal = 0
        self._latencies: deque[float] = deque(maxlen=self.LATENCY_SAMPLES)
        self._lock = asyncio.Lock()
        self.starts = 0
        self.resets = 0
        self.waiting = 0
        """Callers waiting for a start (the size of the next cluster)."""
        self.in_flight = 0
        """Calls started and not yet answered (they may come back for another start)."""
        self.backlog: int | None = None
        """At least how many more calls are queued behind those waiting (None: unknown,
        so every call in flight may be followed by another). A job that has queued all
        its work says how many batches no worker has taken yet, so its last calls do not
        wait for a cluster that will not come; the further calls of batches already
        taken (lookups, split halves, retries) are not in it, which can only make a
        cluster smaller than it could be, never a call early."""

    # ------------------------------------------------------------------ the model

    def _fluid(self) -> bool:
        return self.bucket == "v2"

    def _gain(self, now: float) -> float:
        """Tokens the server regains between the last start and a call starting now."""
        if self.stamp is None:
            return 0.0
        elapsed = now - self.stamp
        if self._fluid():
            return max(0.0, elapsed / self.interval)
        return float(max(0, math.floor((elapsed - self.gap) / self.interval + 1e-6)))

    def level(self, now: float) -> float:
        """The tokens the model expects a call starting at ``now`` to find."""
        return min(float(self.capacity), self.tokens + self._gain(now))

    def next_start(self, now: float) -> float:
        """The earliest time at or after ``now`` when a call may start."""
        now = max(now, self._resume_at)
        if self.stamp is None:
            return now  # a bucket nobody has touched is full
        if self._fluid():
            # with no reserve, a margin's worth of token covers the jitter of one arrival
            cushion = 0.0 if self.reserve >= 1 else self.margin / self.interval
            missing = self.reserve + 1 + cushion - self.tokens
            return max(now, self.stamp + missing * self.interval)
        level = self.level(now)
        joins = now <= self._cluster_until and self._cluster_size < self.group
        if level - 1 >= self.reserve - 1e-9 and (
            joins or level >= self.capacity - 1e-9 or self._burst_alone()
        ):
            return now  # joins the cluster under way, or waiting would gain nothing
        gain = self._cluster_gain()
        planned = self.stamp + gain * self.interval + self.gap
        if now <= planned + self.CLUSTER_WINDOW:
            return max(now, planned)
        # late for that cluster: now, losing the part of an interval already past, or
        # the next whole interval, whichever costs less time
        past = (now - self.stamp - self.gap) / self.interval
        if past - math.floor(past) <= 0.5:
            return now
        return self.stamp + math.ceil(past) * self.interval + self.gap

    def _cluster_gain(self) -> int:
        """Intervals the next cluster waits for, never more than the bucket can hold.

        With stock to spend (the burst), the wait that starts the most calls per
        second, judged by how many recent answers came back in time. Without, enough
        to fund the calls waiting now and the ones still on their way back (within the
        slowest recent answer), so the margin is paid once for the whole group.
        """
        spare = math.floor(self.tokens + 1e-9) - self.reserve
        room = self.capacity - math.floor(self.tokens + 1e-9)
        if spare > 0:
            wanted = self._fastest_cluster()
        else:
            ready = math.ceil(max(self._latencies, default=0.0) / self.interval - 1e-6)
            waiting = min(max(1, self.waiting), self.group)
            wanted = max(waiting - spare, min(ready, self._demand() - spare))
        return max(1, min(wanted, room))

    def _demand(self) -> int:
        """Calls a cluster can expect: those waiting and those that will come back (no
        more than the backlog, when a job has said how many calls it has left)."""
        returning = self.in_flight if self.backlog is None else min(self.in_flight, self.backlog)
        return max(1, min(self.group, self.waiting + returning))

    def _burst_alone(self) -> bool:
        """With stock to spend, a cluster too small to spend it (one caller reading page
        after page) would only wait: such calls go at once, as long as stock lasts."""
        spare = math.floor(self.tokens + 1e-9) - self.reserve
        return spare > 0 and self._demand() <= self._fastest_cluster()

    def _fastest_cluster(self) -> int:
        """The cluster spacing (in intervals) with the most call starts per second."""
        samples = self._latencies
        if not samples:
            return 1
        best, best_rate = 1, -1.0
        demand = self._demand()
        for gain in range(1, self.group + 1):
            span = gain * self.interval + self.margin + self.spread * (demand - 1)
            back = sum(1 for latency in samples if latency <= span) / len(samples)
            rate = max(back * demand, 1.0) / span
            if rate > best_rate * 1.000001:
                best, best_rate = gain, rate
        return best

    def started(self, now: float) -> None:
        """Note that a call started at ``now`` (it spends one token in the model)."""
        if self.stamp is None or now > self._cluster_until:
            self._cluster_until = now + self.CLUSTER_WINDOW
            self._cluster_size = 0
        self._cluster_size += 1
        self.in_flight += 1
        self.tokens = self.level(now) - 1
        self.stamp = now
        self.starts += 1

    def sent(self, started_at: float, now: float) -> None:
        """Note that the request of a call started at ``started_at`` left at ``now``.

        The legacy bucket's clock restarts at each admitted arrival, so the model's
        refill clock is the last request to *leave*, not the last start: a call held
        between its start and the wire (the client's event loop busy with an answer, a
        collection of its garbage) would otherwise reach the server later than the model
        says, and the next cluster would find a token fewer. Every departure counts,
        even of a call started before the last 429 (it may still be admitted and move
        the server's clock) or of one that will be refused: a later clock is only ever
        the cautious side. A bucket that keeps fractions loses nothing to a late arrival.
        """
        if self._fluid() or self.stamp is None:
            return
        self.stamp = max(self.stamp, now)

    def answered(self, started_at: float, now: float) -> None:
        """Note an admitted call's round trip; narrow a widened interval after many."""
        self.in_flight = max(0, self.in_flight - 1)
        self._latencies.append(max(0.0, now - started_at))
        self._successes += 1
        self._admitted_since_refusal += 1
        if self.interval > self.base_interval and self._successes >= self.RECOVER_AFTER:
            self._successes = 0
            self.interval = max(self.base_interval, self.interval / self.SLOWDOWN)

    def refused(self, started_at: float, now: float, news: LimitNews) -> float:
        """Take in a 429 for a call started at ``started_at``; return seconds to wait.

        The server's bucket is empty. On a bucket that keeps fractions the model is
        reset to empty at ``now`` and callers wait what the server said. On the legacy
        bucket (or one not known yet) the server's refill clock stands at its last
        admitted call, which reached it no later than the model's clock (the last start,
        or departure) plus the cluster's gap: the model is reset to empty there, so the
        tokens regained while the refusal came back are not thrown away. The first
        refusal of a run widens the cluster allowance (:meth:`_widen`); a later one that
        comes after more than ``ISOLATED_AFTER`` admitted calls is taken for a passing
        delay at the server (one call counted late moves its clock) and changes nothing,
        while one that follows another sooner widens again and holds every caller an
        interval. The calls already under way when the first 429 came back belong to the
        same refusal and change nothing more.
        """
        self.in_flight = max(0, self.in_flight - 1)
        self._latencies.append(max(0.0, now - started_at))
        self._successes = 0
        self._learn(news)
        hold = news.retry_after
        if started_at > self._reset_at:
            repeated = self.resets > 0 and self._admitted_since_refusal < self.ISOLATED_AFTER
            if repeated or self.resets == 0:
                self._widen(again=repeated)
            self.resets += 1
            self._reset_at = now
            self._admitted_since_refusal = 0
            self.tokens = 0.0
            if self._fluid() or self.stamp is None:
                self.stamp = now
            else:
                self.stamp = min(now, self.stamp + self.gap)
            self._cluster_until = -math.inf
            if hold is None and (repeated or self._fluid()):
                hold = self.interval
        wait = hold if hold is not None else 0.0
        self._resume_at = max(self._resume_at, now + wait)
        return wait

    def _widen(self, *, again: bool) -> None:
        """The server had fewer tokens than the model said.

        Unless the server keeps fractions, a cluster's calls may reach it further apart
        than the model allowed for (each waits while the server handles the ones
        before it), so that allowance doubles (to ``WIDENED_SPREAD`` at least), while a
        cluster's whole gap stays within a third of the interval. A refusal again after
        a reset, with the gap at its cap, means another client spends the same bucket:
        the interval widens.
        """
        wider = max(self.spread * 2, self.WIDENED_SPREAD)
        widest = self.margin + wider * (self.group - 1)
        if not self._fluid() and self.group > 1 and widest <= self.base_interval / 3:
            self.spread = wider
            log.info("pacing: %.1f ms allowed between a cluster's arrivals", self.spread * 1000)
        elif not self._fluid() and self.group > 1:
            # the server handles a cluster's calls too far apart: one call at a time,
            # each an interval and a margin after the last
            self.group = 1
            log.info(
                "pacing: one call at a time (a cluster's calls reach the bucket too far apart)"
            )
        elif again:
            self.interval = min(
                self.interval * self.SLOWDOWN, self.base_interval * self.MAX_SLOWDOWN
            )

    def failed(self) -> None:
        """A started call ended without an answer (a network error): no longer in flight."""
        self.in_flight = max(0, self.in_flight - 1)

    def _learn(self, news: LimitNews) -> None:
        if news.bucket is not None and news.bucket != self.bucket:
            self.bucket = news.bucket
            log.info(
                "the workspace's rate limit is the %s bucket (%s)",
                news.bucket,
                "fractions of a token kept" if news.bucket == "v2" else "whole tokens only",
            )
        if news.limit is None or news.window_s is None or news.limit < 1:
            return
        interval = news.window_s / news.limit
        if interval <= self.base_interval * 1.001:
            return  # a faster bucket (the per-second one) or the one configured
        log.warning(
            "the workspace allows %d calls per %gs, fewer than the configured %s; pacing at "
            "that rate for the rest of the run (set --rate %d/%g)",
            news.limit,
            news.window_s,
            self.configured,
            news.limit,
            news.window_s,
        )
        self.capacity = news.limit
        self.base_interval = interval
        self.interval = max(self.interval, interval)
        self.reserve = min(self.reserve, news.limit - 1)

    # ------------------------------------------------------------------ the loop

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()

    async def wait(self) -> float:
        """Return when the next call may start; the start time, for :meth:`answered`."""
        self.waiting += 1
        try:
            async with self._lock:
                now = self._now()
                while (start := self.next_start(now)) > now:
                    await self._sleep(start - now)
                    # trust the sleep: a test's recording sleep returns at once
                    now = max(self._now(), start)
                self.started(now)
                return now
        finally:
            self.waiting -= 1

    @property
    def gap(self) -> float:
        """Seconds added after the latest cluster: jitter, and its calls' spread."""
        return self.margin + self.spread * max(0, self._cluster_size - 1)

    def held_for(self, now: float) -> float:
        """Seconds every caller is still held after a 429 (its Retry-After or an interval)."""
        return max(0.0, self._resume_at - now)

    def now(self) -> float:
        """The pacer's clock, for the times passed to :meth:`answered` and :meth:`refused`."""
        return self._now()
