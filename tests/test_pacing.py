"""The pacer against both of Twenty's buckets, on a fake clock.

A small discrete-event simulation: ``concurrency`` workers take calls, ask the pacer
when each may start, the call reaches the server a few milliseconds later (jitter),
waits while the server parses and authenticates the calls before it (1.5 ms each; the
records are written after the call is counted, while others are counted), then the sandbox's own
model of Twenty's bucket (legacy or v2, ``pipeline.sandbox.throttle``) admits or
refuses it, and the answer comes back 80-250 ms later. Time
is simulated, so each run is exact and instant, and the ratios are those of the
pacing alone: ``(N - B) x interval`` (the physical limit of N calls on a bucket of B)
over the time the run took.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from pipeline.config import Rate, Secret
from pipeline.sandbox import Sandbox, SandboxOptions
from pipeline.sandbox.throttle import BucketKind, Throttler
from pipeline.twenty import ObjectNames, TwentyClient
from pipeline.twenty.pacing import LimitNews, Pacer


@dataclass
class Run:
    """What a simulated run did."""

    calls: int
    elapsed: float
    refused: int = 0
    refused_after_first_minute: int = 0
    starts: list[float] = field(default_factory=list)

    def ratio(self, rate: Rate, burst: int) -> float:
        return (self.calls - burst) * rate.interval / self.elapsed


def simulate(
    pacer: Pacer,
    server: Rate,
    kind: BucketKind,
    calls: int,
    *,
    concurrency: int = 4,
    latency: tuple[float, float] = (0.080, 0.250),
    jitter: float = 0.004,
    service: float = 0.0015,
    start_tokens: int | None = None,
    seed: int = 7,
    hiccups: tuple[float, float] = (0.0, 0.0),
    held: tuple[float, float] = (0.0, 0.0),
    report_departures: bool = True,
) -> Run:
    """``calls`` admitted calls through ``pacer`` against a ``server`` bucket of ``kind``.

    ``hiccups`` (share, seconds): calls the server counts that much late. ``held``
    (share, seconds): calls held that long in the client between their start and the
    wire (its event loop busy elsewhere), told to the pacer (:meth:`Pacer.sent`) unless
    ``report_departures`` is false.
    """
    rng = random.Random(seed)
    now = 0.0
    throttler = Throttler(
        limit=server.calls,
        window_ms=server.seconds * 1000,
        short_limit=10_000,
        short_window_ms=1000,
        clock=lambda: now * 1000,
        kind=kind,
    )
    if start_tokens is not None:
        throttler.preset(start_tokens)
    run = Run(calls=calls, elapsed=0.0)
    events: list[tuple[float, int, str, int, float]] = []
    order = 0

    def push(at: float, what: str, worker: int, started: float = 0.0) -> None:
        nonlocal order
        order += 1
        heapq.heappush(events, (at, order, what, worker, started))

    to_send = calls
    for worker in range(min(concurrency, calls)):
        to_send -= 1
        pacer.waiting += 1
        push(0.0, "ready", worker)
    done = 0
    server_free = 0.0
    while events:
        now, _, what, worker, started = heapq.heappop(events)
        if what == "ready":
            start = pacer.next_start(now)
            if start > now:
                push(start, "ready", worker)
                continue
            pacer.started(now)
            pacer.waiting -= 1
            run.starts.append(now)
            # (no draw unless asked: the other runs keep their random sequence)
            late = held[0] > 0 and rng.random() < held[0]
            push(now + (held[1] if late else 0.0), "leave", worker, now)
        elif what == "leave":
            if report_departures:
                pacer.sent(started, now)
            push(now + rng.uniform(0, jitter), "reach", worker, started)
        elif what == "reach":
            # the server parses and authenticates one call after the other, then counts it
            server_free = max(now, server_free) + service
            if rng.random() < hiccups[0]:
                server_free += hiccups[1]  # a pause at the server: this call counted late
            push(server_free, "arrive", worker, started)
        elif what == "arrive":
            refusal = throttler.check()
            if refusal is None:
                push(now + rng.uniform(*latency), "done", worker, started)
            else:
                run.refused += 1
                if now > 60:
                    run.refused_after_first_minute += 1
                retry = refusal.retry_after_ms / 1000 if kind == "v2" else None
                news = LimitNews(kind, refusal.limit, refusal.window_ms / 1000, retry)
                push(now + 0.02, "refused", worker, started)
                events_news[worker] = news
        elif what == "refused":
            pacer.refused(started, now, events_news.pop(worker))
            pacer.waiting += 1
            push(now, "ready", worker)
        else:  # done
            pacer.answered(started, now)
            done += 1
            run.elapsed = now
            if to_send:
                to_send -= 1
                pacer.waiting += 1
                push(now, "ready", worker)
    assert done == calls
    return run


events_news: dict[int, LimitNews] = {}


def fresh(rate: Rate, **options: object) -> Pacer:
    return Pacer(rate, group=4, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["legacy", "v2"])
@pytest.mark.parametrize(
    ("rate", "floor"), [(Rate(100, 60), 0.94), (Rate(30, 3), 0.93)], ids=["100/60", "30/3"]
)
def test_a_fresh_bucket_is_spent_then_the_refill_rate_held(
    kind: BucketKind, rate: Rate, floor: float
) -> None:
    """9,000 records in 150 calls of 60: the burst first, zero 429s, near the limit.

    The bucket's kind is unknown without a 429: clusters, which suit both. Each leaves a
    gap for jitter and for its calls' spread at the server (1 ms a further call), which
    costs more at a 100 ms interval than at 600 ms; on v2 the gaps are banked by the
    server but not spent by the model.
    """
    run = simulate(fresh(rate), rate, kind, 150)
    assert run.refused == 0
    assert run.ratio(rate, rate.calls) >= floor
    # the burst went out without waiting for refill
    burst = run.starts[rate.calls - 5] - run.starts[0]
    assert burst < (rate.calls - 5) * rate.interval


@pytest.mark.parametrize("kind", ["legacy", "v2"])
@pytest.mark.parametrize(
    ("rate", "floor"), [(Rate(100, 60), 0.97), (Rate(30, 3), 0.93)], ids=["100/60", "30/3"]
)
def test_the_steady_rate_is_near_the_ceiling(kind: BucketKind, rate: Rate, floor: float) -> None:
    """After the burst: clusters of 4 and one gap each (15 + 3 ms at 600 ms, 5 + 3 ms at
    100 ms), as long as the bucket's kind is unknown."""
    calls = 600
    run = simulate(fresh(rate), rate, kind, calls)
    assert run.refused == 0
    after_burst = [t for t in run.starts if t >= run.starts[rate.calls]]
    steady = (len(after_burst) - 1) * rate.interval / (after_burst[-1] - after_burst[0])
    assert steady >= floor


def test_a_known_v2_bucket_is_paced_without_clusters() -> None:
    rate = Rate(30, 3)
    run = simulate(fresh(rate, bucket="v2"), rate, "v2", 150)
    assert run.refused == 0
    assert run.ratio(rate, rate.calls) >= 0.97


@pytest.mark.parametrize("kind", ["legacy", "v2"])
def test_a_bucket_another_client_half_spent_costs_a_handful_of_429s(kind: BucketKind) -> None:
    rate = Rate(100, 60)
    pacer = fresh(rate)
    run = simulate(pacer, rate, kind, 150, start_tokens=20)
    assert 1 <= run.refused <= 4  # the calls already under way when the first came back
    assert pacer.bucket == kind  # learnt from the refusal's shape
    # and then the steady rate: no 429 after the first episode
    first = run.starts.index(next(t for t in run.starts if t > 10))
    assert first > 0 and run.refused_after_first_minute == 0
    # the workspace could do at most 20 + elapsed / 0.6 calls: near that
    assert run.elapsed <= (150 - 20) * rate.interval * 1.10


@pytest.mark.parametrize("kind", ["legacy", "v2"])
def test_a_server_slower_than_the_configured_rate_is_learnt(kind: BucketKind) -> None:
    """Twenty Cloud has run 50 calls a minute where 100 is the default."""
    configured, server = Rate(100, 60), Rate(50, 60)
    pacer = fresh(configured)
    run = simulate(pacer, server, kind, 120)
    assert run.refused <= 4
    assert pacer.capacity == 50
    assert pacer.base_interval == pytest.approx(1.2)
    assert run.ratio(server, server.calls) >= 0.85


def test_the_model_never_expects_more_than_the_legacy_server_has() -> None:
    """The cluster rule on its own: each cluster's first call regains what it waited for."""
    rate = Rate(100, 60)
    pacer = fresh(rate, reserve=0)
    t = 0.0
    for _ in range(100):  # spend the burst
        pacer.started(t)
        t += 0.001
    assert pacer.tokens == 0
    pacer.waiting = 4  # four callers in line: one cluster for them all
    start = pacer.next_start(t)
    assert start == pytest.approx(pacer.stamp + 4 * 0.6 + pacer.gap)  # a cluster of 4
    assert math.floor((start - pacer.stamp) / 0.6) == 4


@pytest.mark.parametrize("kind", ["legacy", "v2"])
async def test_a_half_spent_bucket_on_a_real_server_loses_and_doubles_nothing(
    kind: BucketKind, tmp_path: Path
) -> None:
    """The sandbox's bucket, 20 calls a second, with 3 tokens left by another client."""
    box = Sandbox(
        tmp_path / "ws.sqlite",
        SandboxOptions(rate_limit=20, rate_window_ms=1000, bucket=kind),
    )
    notes = ObjectNames("note", "notes")
    try:
        async with TwentyClient(
            base_url="http://sandbox",
            api_key=Secret(box.api_key),
            rate=Rate(20, 1),
            transport=httpx.ASGITransport(app=box.app),
            concurrency=4,
        ) as client:
            await client.upsert_many(notes, [{"title": "warm-up"}])  # builds the schema
            box.throttler.preset(3)
            await asyncio.gather(
                *(client.upsert_many(notes, [{"title": f"Note {i}"}]) for i in range(40))
            )
        titles = [
            r["title"] for r in box.engine.find_many(box.engine.object("note"), limit=100).records
        ]
    finally:
        box.close()
    assert 1 <= client.stats.rate_limited <= 4  # the calls under way when the first came back
    assert client._pacer.bucket == kind
    assert sorted(titles) == sorted(["warm-up", *(f"Note {i}" for i in range(40))])


def test_a_server_that_counts_a_cluster_slowly_gets_one_call_at_a_time() -> None:
    """80 ms of server work before each call is counted: a cluster of 4 spreads over
    240 ms, past any gap worth leaving, so the pacer sends one call at a time."""
    rate = Rate(100, 60)
    pacer = fresh(rate)
    run = simulate(pacer, rate, "legacy", 400, service=0.080)
    assert pacer.group == 1
    assert run.refused <= 10  # each widened the allowance before clusters were given up
    assert run.ratio(rate, rate.calls) >= 0.83


def test_a_moderately_slow_server_keeps_clusters_with_a_wider_gap() -> None:
    rate = Rate(100, 60)
    pacer = fresh(rate)
    run = simulate(pacer, rate, "legacy", 400, service=0.020)
    assert pacer.group == 4 and pacer.spread > 0.008
    # from 1 ms a further call to past 20 ms by doubling: five widenings, all in the
    # first minute
    assert run.refused <= 8 and run.refused_after_first_minute == 0
    assert run.ratio(rate, rate.calls) >= 0.86


def test_a_legacy_429_resets_the_model_at_the_last_count_and_an_isolated_one_holds_nobody() -> None:
    """The legacy server's clock stands at its last admitted call, which reached it no
    later than the last start plus the cluster's gap: the tokens regained while the 429
    came back are the model's to spend, and nobody is held for a passing delay."""
    rate = Rate(30, 3)
    pacer = fresh(rate, bucket="legacy", reserve=0)
    for i in range(4):
        pacer.started(1.0 + i * 0.001)
    last = pacer.stamp
    assert last is not None
    news = LimitNews("legacy", 30, 3.0, None)
    wait = pacer.refused(1.003, 1.25, news)  # the answer came back 250 ms later
    assert wait == 0 and pacer.held_for(1.25) == 0
    # (the first 429 widened the cluster's allowance: the gap is the widened one)
    assert pacer.tokens == 0 and pacer.stamp == pytest.approx(last + pacer.gap)
    # over two intervals since the server's last count: two tokens to spend now, where a
    # model reset when the answer came back would have none
    assert math.floor(pacer.level(1.25)) == 2
    assert pacer.next_start(1.25) < 1.25 + rate.interval
    # a second 429 soon after is a pattern: every caller is held an interval
    pacer.started(1.26)
    pacer.refused(1.26, 1.40, news)
    assert pacer.held_for(1.40) == pytest.approx(rate.interval)


def test_a_server_that_now_and_then_counts_a_call_late_costs_few_429s() -> None:
    """One call in 100 is counted 40 ms late (a pause at the server): it moves the legacy
    bucket's clock, and the next cluster finds a token fewer than the model says. The
    reserve takes the first; an isolated 429 costs a round trip, not a slower pace."""
    rate = Rate(30, 3)
    pacer = fresh(rate, bucket="legacy")
    run = simulate(pacer, rate, "legacy", 600, hiccups=(1 / 100, 0.040))
    assert run.refused <= 4
    assert pacer.group == 4  # clusters kept
    assert run.ratio(rate, rate.calls) >= 0.90


@pytest.mark.parametrize("reported", [True, False], ids=["told", "not told"])
def test_calls_held_in_the_client_after_their_start_move_the_models_clock(
    reported: bool,
) -> None:
    """One call in 20 leaves 30 ms after its start (the client's loop busy with an
    answer). Told when each request left, the model's legacy clock is the last
    departure, and no cluster finds a token fewer than it expects; not told, the same
    run draws 429s."""
    rate = Rate(30, 3)
    pacer = fresh(rate, bucket="legacy")
    run = simulate(pacer, rate, "legacy", 600, held=(1 / 20, 0.030), report_departures=reported)
    if reported:
        assert run.refused == 0
        assert run.ratio(rate, rate.calls) >= 0.93
    else:
        assert run.refused >= 3


def test_a_departure_moves_the_legacy_clock_only() -> None:
    rate = Rate(30, 3)
    legacy = fresh(rate, bucket="legacy", reserve=0)
    for i in range(30):
        legacy.started(i * 0.001)
    legacy.sent(0.029, 0.060)  # the last call left 31 ms after its start
    assert legacy.stamp == pytest.approx(0.060)
    assert legacy.next_start(0.1) == pytest.approx(0.060 + rate.interval + legacy.gap)
    legacy.sent(0.010, 0.040)  # an earlier departure changes nothing
    assert legacy.stamp == pytest.approx(0.060)
    # a call started before a 429 reset the model and held past it may still be
    # admitted: its departure moves the clock too (later is the cautious side)
    legacy.refused(0.029, 0.300, LimitNews("legacy", 30, 3.0, None))
    assert legacy.stamp is not None and legacy.stamp < 0.350
    legacy.sent(0.020, 0.350)
    assert legacy.stamp == pytest.approx(0.350)
    assert legacy.next_start(0.351) >= 0.350 + rate.interval

    fluid = fresh(rate, bucket="v2", reserve=0)
    fluid.started(0.0)
    fluid.sent(0.0, 0.050)  # fractions are kept: a late arrival costs nothing
    assert fluid.stamp == 0.0


def test_the_last_calls_of_a_job_do_not_wait_for_a_cluster_that_will_not_come() -> None:
    """Bucket spent, calls in flight, one caller waiting: while more batches may
    follow, the pacer waits long enough to fund a cluster of four; told that nothing is
    queued behind, the last call goes one interval after the last start."""
    rate = Rate(30, 3)
    pacer = fresh(rate, bucket="legacy", reserve=0)
    for i in range(30):
        pacer.started(i * 0.001)
    pacer.answered(0.0, 0.15)  # a recent answer took 150 ms: clusters wait for it
    pacer.waiting = 1
    assert pacer.in_flight == 29
    unknown = pacer.next_start(0.05)
    pacer.backlog = 0
    last = pacer.next_start(0.05)
    assert last == pytest.approx(pacer.stamp + rate.interval + pacer.gap)
    assert unknown == pytest.approx(pacer.stamp + 2 * rate.interval + pacer.gap)
