"""Server faults: every import run ends exact, or exits 1 with a checkpoint that resumes.

Each case serves the job's workspace with one seeded fault mode, runs the import CLI
(with a subprocess timeout, so a hang fails instead of blocking), and then:

- exit 0: the workspace is a clean run's, field by field, and the ledgers add up;
- exit 1: the ledger written so far tells the truth, and a re-run against the same
  workspace served healthy completes with the exact state;
- anything else (a hang, exit 0 with records missing, a lying ledger) fails.

Lying answers (no ids, wrong ids, duplicate ids, fewer records) pass because the client
checks every write answer before a batch is recorded as done; a trickling body passes
because every call has an overall deadline.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import (
    RATE,
    Servers,
    assert_exact,
    assert_ledger_true,
    environment,
    faults_met,
    run_cli,
)


def faulted_then_healthy(
    servers: Servers,
    job: tuple[Path, Path],
    tmp_path: Path,
    reference: dict[str, dict[str, Any]],
    *faults: str,
    timeout: float = 90,
) -> tuple[int, Counter[str]]:
    """One run against the faulty server, then (if it failed) one against a healthy one."""
    mapping, source = job
    db = tmp_path / "workspace.sqlite"
    trace = tmp_path / "trace.log"
    state = tmp_path / "state"
    faulty = servers.start(db, "--no-throttle", "--trace", str(trace), *faults)
    done = run_cli(mapping, source, state, environment(faulty), RATE, timeout=timeout)
    met = faults_met(trace)
    assert sum(met.values()) > 0, "no fault was injected: the case tests nothing"
    servers.stop(faulty)
    healthy = servers.start(db, "--no-throttle")  # the same workspace, read without faults
    if done.returncode == 0:
        assert_exact(healthy, state, reference)
        record(met, "exact")
        return 0, met
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert (state / "notes" / "state.sqlite").exists()
    assert_ledger_true(healthy, state)
    again = run_cli(mapping, source, state, environment(healthy), RATE, timeout=timeout)
    assert again.returncode == 0, again.stderr
    assert_exact(healthy, state, reference)
    record(met, "resumed")
    return 1, met


def record(met: Counter[str], end: str) -> None:
    """A run that ended right: its faults by kind and how it ended, for run_heavy.py."""
    out = os.environ.get("RELIABILITY_RECORD")
    if out:
        with open(out, "a") as handle:
            handle.write(f"run {end}\n")
            for kind, count in sorted(met.items()):
                handle.write(f"fault {kind} {count}\n")


# ------------------------------------------------------------------ answers that lie


def test_answers_without_ids(servers: Servers, job: Any, tmp_path: Path, reference: Any) -> None:
    faulted_then_healthy(servers, job, tmp_path, reference, "--no-ids-rate", "0.3", "--seed", "3")


def test_answers_with_wrong_ids(servers: Servers, job: Any, tmp_path: Path, reference: Any) -> None:
    faulted_then_healthy(
        servers, job, tmp_path, reference, "--wrong-ids-rate", "0.3", "--seed", "3"
    )


def test_answers_with_duplicate_ids(
    servers: Servers, job: Any, tmp_path: Path, reference: Any
) -> None:
    faulted_then_healthy(
        servers, job, tmp_path, reference, "--duplicate-ids-rate", "0.3", "--seed", "3"
    )


def test_answers_one_record_short(
    servers: Servers, job: Any, tmp_path: Path, reference: Any
) -> None:
    faulted_then_healthy(servers, job, tmp_path, reference, "--short-rate", "0.3", "--seed", "3")


def test_garbage_bodies_with_200(
    servers: Servers, job: Any, tmp_path: Path, reference: Any
) -> None:
    faulted_then_healthy(servers, job, tmp_path, reference, "--garbage-rate", "0.3", "--seed", "3")


def test_key_echoed_in_errors_still_ends_exact(
    servers: Servers, job: Any, tmp_path: Path, reference: Any
) -> None:
    code, _ = faulted_then_healthy(
        servers, job, tmp_path, reference, "--echo-key-rate", "0.2", "--seed", "3"
    )
    assert code == 0  # a 500 is retried; the secrets suite checks what was logged


# ------------------------------------------------------------------ the server goes away


@pytest.mark.parametrize("mode", ["503", "reset"])
def test_short_outage_then_recovery(
    servers: Servers, job: Any, tmp_path: Path, reference: Any, mode: str
) -> None:
    code, met = faulted_then_healthy(
        servers, job, tmp_path, reference, "--latency", "10:30", "--outage", f"0.3:3:{mode}"
    )
    assert code == 0  # retries with back-off outlast a 3 s outage
    assert met[f"outage-{mode}"] > 0


def test_existing_faults_mixed_with_new_ones(
    servers: Servers, job: Any, tmp_path: Path, reference: Any
) -> None:
    faulted_then_healthy(
        servers,
        job,
        tmp_path,
        reference,
        *("--error-rate", "0.1", "--reset-rate", "0.1", "--drop-after-apply-rate", "0.1"),
        *("--short-rate", "0.05", "--garbage-rate", "0.05", "--seed", "8"),
    )


# ------------------------------------------------------------------ slow: heavy only


@pytest.mark.heavy
def test_trickling_body(servers: Servers, job: Any, tmp_path: Path, reference: Any) -> None:
    faulted_then_healthy(
        servers, job, tmp_path, reference, "--trickle-rate", "0.05", "--seed", "3", timeout=300
    )


@pytest.mark.heavy
def test_latency_spikes_past_the_client_timeout(
    servers: Servers, job: Any, tmp_path: Path, reference: Any
) -> None:
    # the client's timeout is 60 s; a 65 s spike makes it give up on an applied call
    faulted_then_healthy(
        servers, job, tmp_path, reference, "--spike", "0.03:65", "--seed", "4", timeout=900
    )


@pytest.mark.heavy
def test_long_outage_exits_1_then_resumes(
    servers: Servers, job: Any, tmp_path: Path, reference: Any
) -> None:
    code, _ = faulted_then_healthy(
        servers, job, tmp_path, reference, "--outage", "0.5:3600", timeout=900
    )
    assert code == 1  # retries give up; the run stops resumable


HEAVY_KINDS = ("no-ids", "wrong-ids", "duplicate-ids", "short", "garbage", "echo-key")


@pytest.mark.heavy
@pytest.mark.parametrize("seed", range(int(os.environ.get("RELIABILITY_FAULT_SEEDS", "5"))))
@pytest.mark.parametrize("kind", HEAVY_KINDS)
def test_heavy_fault_seeds(
    servers: Servers, job: Any, tmp_path: Path, reference: Any, kind: str, seed: int
) -> None:
    faulted_then_healthy(
        servers,
        job,
        tmp_path,
        reference,
        *(f"--{kind}-rate", "0.15", "--error-rate", "0.05", "--reset-rate", "0.05"),
        *("--latency", "5:20", "--seed", str(seed)),
    )
