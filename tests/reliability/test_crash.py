"""Crash anywhere: the import CLI SIGKILLed at seeded moments, then re-run until exit 0.

Each scenario serves a fresh sandbox (latency on, so calls are really in flight and
answers really late), kills the CLI at seeded moments of four kinds (before a batch
is sent, calls in flight, a batch applied but not answered, the checkpoint
committing), re-runs it to the end, and asserts the exact workspace of a clean run,
no key twice, and ledgers with every source row once.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Served
from tests.reliability.conftest import (
    RATE,
    Kill,
    Trace,
    assert_exact,
    command,
    environment,
    plan,
    run_and_kill,
    run_cli,
)

FAST_SEEDS = (1, 2)  # with KILLS_PER_SCENARIO 3, the two scenarios cover the four moments
KILLS_PER_SCENARIO = 3
HEAVY_SEEDS = range(int(os.environ.get("RELIABILITY_SEEDS", "60")))
HEAVY_KILLS = int(os.environ.get("RELIABILITY_KILLS", "4"))


def scenario(
    serve: Callable[..., Served],
    job: tuple[Path, Path],
    tmp_path: Path,
    reference: dict[str, dict[str, Any]],
    seed: int,
    kills: int,
    first: int = 0,
) -> list[Kill]:
    trace = tmp_path / "trace.log"
    served = serve(
        "--no-throttle", "--latency", "20:60", "--seed", str(seed), "--trace", str(trace)
    )
    mapping, source = job
    state = tmp_path / "state"
    env = environment(served)
    argv = command(mapping, source, state, "--rate", RATE)
    checkpoint = state / "notes" / "state.sqlite"
    tail = Trace(trace)
    planned = plan(random.Random(seed), kills, first)
    for kill in planned:
        code = run_and_kill(argv, env, tail, checkpoint, kill)
        assert code in (None, 0), f"run ended with {code} before its kill at {kill}"
    for _ in range(3):
        done = run_cli(mapping, source, state, env, RATE)
        if done.returncode == 0:
            break
    assert done.returncode == 0, done.stderr
    assert_exact(served, state, reference)
    return planned


def record(kills: list[Kill], seed: int) -> None:
    """One line per kill for run_heavy.py, when it asks for them."""
    out = os.environ.get("RELIABILITY_RECORD")
    if out:
        with open(out, "a") as handle:
            for kill in kills:
                handle.write(f"kill {seed} {kill.moment} {int(kill.killed)}\n")


@pytest.mark.parametrize("seed", FAST_SEEDS)
def test_kills_at_seeded_moments(
    serve: Callable[..., Served],
    job: tuple[Path, Path],
    tmp_path: Path,
    reference: dict[str, dict[str, Any]],
    seed: int,
) -> None:
    first = FAST_SEEDS.index(seed) * KILLS_PER_SCENARIO
    kills = scenario(serve, job, tmp_path, reference, seed, KILLS_PER_SCENARIO, first)
    assert [k for k in kills if not k.killed] == []  # each kill hit its moment mid-run


@pytest.mark.heavy
@pytest.mark.parametrize("seed", HEAVY_SEEDS)
def test_heavy_kills(
    serve: Callable[..., Served],
    job: tuple[Path, Path],
    tmp_path: Path,
    reference: dict[str, dict[str, Any]],
    seed: int,
) -> None:
    kills = scenario(serve, job, tmp_path, reference, 1000 + seed, HEAVY_KILLS, seed)
    record(kills, seed)
