"""Benchmark: write pacing against Twenty's legacy token bucket (design.md §4 "Pacing").

Serves a sandbox workspace on loopback with the legacy profile (the throttler whose
refill rounds down and restarts on every call, twenty-api.md §5.1) and answers held
back by random latency, then imports a generated notes file through the real import
path (``import_file``: checkpoint, batches of 60, 4 in flight). Reports write calls per
second against the ceiling (rate), records per second against rate x batch size, and
the number of 429s. Target: >= 0.97 of the ceiling with zero 429s.

Usage: python bench/bench_pacing.py [--calls 200] [--rate 100/60] [--latency 50:150]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from pipeline.config import Rate, Secret
from pipeline.mapping import load_mapping
from pipeline.runner import import_file
from pipeline.twenty import TwentyClient


def serve(db: Path, rate: str, latency: str) -> tuple[subprocess.Popen[str], str, str]:
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
            "legacy",
            "--rate",
            rate,
            "--latency",
            latency,
            "--seed",
            "1",
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


async def run(calls: int, rate: Rate, latency: str, batch: int, folder: Path) -> None:
    source = folder / "notes.csv"
    rows = calls * batch
    source.write_text("title,body\n" + "".join(f"Note {i},Body {i}\n" for i in range(rows)))
    mapping = folder / "notes.yaml"
    mapping.write_text(
        "object: note\nkey: [title]\nfields:\n  title: title\n  bodyV2.markdown: body\n"
    )
    process, url, key = serve(folder / "ws.sqlite", f"{rate.calls}/{rate.seconds:g}", latency)
    try:
        async with TwentyClient(
            base_url=url, api_key=Secret(key), rate=rate, concurrency=4
        ) as client:
            started = time.monotonic()
            report = await import_file(
                load_mapping(mapping),
                client,
                state_dir=folder / "state",
                source=source,
                batch_size=batch,
                concurrency=4,
            )
            elapsed = time.monotonic() - started
    finally:
        process.terminate()
        process.wait(timeout=10)
    stats = report.calls
    counted = stats["writes"] + stats["reads"]  # both spend the workspace bucket
    per_second = counted / elapsed
    ceiling = rate.calls / rate.seconds
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"bucket {rate} (legacy profile), answer latency {latency} ms, batch {batch}, concurrency 4"
    )
    print(
        f"{report.loaded:,} records in {stats['writes']} write calls + {stats['reads']} read "
        f"calls over {elapsed:.1f}s"
    )
    print(
        f"counted calls/s {per_second:.3f} vs ceiling {ceiling:.3f}: "
        f"{per_second / ceiling:.3f} of the ceiling"
    )
    print(f"records/s {report.loaded / elapsed:.1f} vs rate x batch {ceiling * batch:.1f}")
    print(f"429 answers: {stats['rate_limited']}, retries: {stats['retries']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rate", default="100/60")
    parser.add_argument("--latency", default="50:150")
    parser.add_argument("--batch", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pacing-") as folder:
        asyncio.run(run(args.calls, Rate.parse(args.rate), args.latency, args.batch, Path(folder)))


if __name__ == "__main__":
    main()
