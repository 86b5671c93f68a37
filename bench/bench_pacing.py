"""Benchmark: write pacing against Twenty's token buckets (design.md §4 "Pacing").

Serves a fresh sandbox workspace on loopback with the chosen bucket (``legacy``: the
throttler whose refill rounds down and restarts on every call, twenty-api.md §5.1;
``v2``: the usage-limit engine that keeps fractions, §5.2), answers held back by random
latency, then imports a generated notes file through the real import path
(``import_file``: checkpoint, batches of 60, 4 in flight). Reports the whole run's time
against the physical limit ``(calls - bucket) x interval`` (the bucket starts full),
the steady rate after the burst against the ceiling, and the number of 429s.
Targets: >= 0.95 of the limit on v2, >= 0.90 on legacy, zero 429s; steady >= 0.97.

Usage: python bench/bench_pacing.py [--calls 150] [--rate 100/60] [--latency 80:250]
       [--bucket legacy|v2] [--reserve N] [--concurrency N] [--tell-bucket | --unknown-bucket]
       [--database-wait-ms MS]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

import httpx

from pipeline.config import BucketKind, Rate, Secret
from pipeline.mapping import load_mapping
from pipeline.runner import import_file
from pipeline.twenty import TwentyClient


def serve(
    db: Path, rate: str, latency: str, bucket: str, database_wait_ms: float = 1.0
) -> tuple[subprocess.Popen[str], str, str]:
    """Start ``sandbox serve`` on a free port; return (process, url, key)."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "sandbox",
            "serve",
            "--port",
            "0",
            "--db",
            str(db),
            "--profile",
            "legacy" if bucket == "legacy" else "newest",
            "--bucket",
            bucket,
            "--rate",
            rate,
            "--latency",
            latency,
            "--seed",
            "1",
            "--database-wait-ms",
            str(database_wait_ms),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(3)]
    url, key = lines[1].split("=", 1)[1].strip(), lines[2].split("=", 1)[1].strip()
    for _ in range(200):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    return process, url, key


async def run(
    calls: int,
    rate: Rate,
    latency: str,
    batch: int,
    bucket: str,
    reserve: int,
    concurrency: int,
    tell_bucket: bool,
    unknown_bucket: bool,
    database_wait_ms: float,
    folder: Path,
) -> None:
    source = folder / "notes.csv"
    rows = calls * batch
    source.write_text("title,body\n" + "".join(f"Note {i},Body {i}\n" for i in range(rows)))
    mapping = folder / "notes.yaml"
    mapping.write_text(
        "object: note\nkey: [title]\nfields:\n  title: title\n  bodyV2.markdown: body\n"
    )
    process, url, key = serve(
        folder / "ws.sqlite", f"{rate.calls}/{rate.seconds:g}", latency, bucket, database_wait_ms
    )
    starts: list[float] = []
    try:
        async with TwentyClient(
            base_url=url,
            api_key=Secret(key),
            rate=rate,
            concurrency=concurrency,
            reserve=reserve,
            bucket=cast(BucketKind, bucket) if tell_bucket else None,
        ) as client:
            pacer = client.session.pacer
            if unknown_bucket:
                # as against a server that cannot answer the flags: clusters until a 429
                client.session._probed = True
            note_start = pacer.started

            def noted(now: float) -> None:
                starts.append(now)
                note_start(now)

            pacer.started = noted  # type: ignore[method-assign]
            started = time.monotonic()
            report = await import_file(
                load_mapping(mapping),
                client,
                state_dir=folder / "state",
                source=source,
                batch_size=batch,
                concurrency=concurrency,
            )
            elapsed = time.monotonic() - started
    finally:
        process.terminate()
        process.wait(timeout=10)
    stats = report.calls
    counted = stats["writes"] + stats["reads"]  # both spend the workspace bucket
    limit = (counted - rate.calls) * rate.interval
    span = starts[-1] - starts[0] if starts else 0.0
    steady = starts[-max(20, len(starts) // 3) :]  # the tail: after the burst on long runs
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    knows = "is told" if tell_bucket else "does not know" if unknown_bucket else "asks"
    print(
        f"{bucket} bucket {rate} (full at the start), answer latency {latency} ms, batch "
        f"{batch}, concurrency {concurrency}, reserve {reserve}, client {knows} the bucket"
    )
    print(
        f"{report.loaded:,} records in {stats['writes']} write calls + {stats['reads']} read "
        f"calls: whole run {elapsed:.2f}s, first to last call start {span:.2f}s"
    )
    print(
        f"physical limit (calls - bucket) x interval = ({counted} - {rate.calls}) x "
        f"{rate.interval:g}s = {limit:.2f}s: whole run {limit / elapsed:.3f} of the limit"
    )
    if len(steady) > 1:
        rate_after = (len(steady) - 1) * rate.interval / (steady[-1] - steady[0])
        print(
            f"rate over the last {len(steady)} call starts: {rate_after:.3f} of the ceiling "
            "(the steady rate when the run is long enough for its burst to be over)"
        )
    clusters = 1 + sum(1 for a, b in itertools.pairwise(starts) if b - a > 0.005)
    print(f"call starts: {len(starts)} in {clusters} clusters (mean {len(starts) / clusters:.2f})")
    print(f"429 answers: {stats['rate_limited']}, retries: {stats['retries']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=150)
    parser.add_argument("--rate", default="100/60")
    parser.add_argument("--latency", default="80:250")
    parser.add_argument("--batch", type=int, default=60)
    parser.add_argument("--bucket", choices=["legacy", "v2"], default="legacy")
    parser.add_argument("--reserve", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--tell-bucket", action="store_true", help="tell the client the bucket (else it asks)"
    )
    parser.add_argument(
        "--unknown-bucket",
        action="store_true",
        help="the client neither is told nor asks (a server that cannot answer the flags)",
    )
    parser.add_argument(
        "--database-wait-ms",
        type=float,
        default=1.0,
        help="the sandbox's wait after a count (0: it writes each call before counting the "
        "next, a server that counts a cluster's calls several ms apart)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pacing-") as folder:
        asyncio.run(
            run(
                args.calls,
                Rate.parse(args.rate),
                args.latency,
                args.batch,
                args.bucket,
                args.reserve,
                args.concurrency,
                args.tell_bucket,
                args.unknown_bucket,
                args.database_wait_ms,
                Path(folder),
            )
        )


if __name__ == "__main__":
    main()
