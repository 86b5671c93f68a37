"""Benchmark: migrate between two workspaces against their rate limits (issue 11).

Seeds a source sandbox file with N notes (setup, not measured), serves it and an empty
target on loopback, each with its own bucket (full at the start) and answers held back
by random latency, then copies the notes with the migration's own steps (the plan, then
``copy_object``: pages of 200 read from the source, upserts of ``--batch`` on id written
to the target). Reports reads and writes against each side's physical limit
``(calls - bucket) x interval``: with two workspaces the two buckets are separate, so
the run cannot take less than the larger of the two.

Usage: python bench/bench_migrate.py [--records 12000] [--rate 100/60] [--latency 80:250]
       [--batch 60] [--one-workspace]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import tempfile
import time
from pathlib import Path

from bench_export import seed
from bench_pacing import serve

from pipeline.config import Rate, Secret
from pipeline.migrate import copy_object, member_map, plan_migration
from pipeline.schema import load_schema
from pipeline.twenty import TwentyClient


async def run(records: int, rate: Rate, latency: str, batch: int, folder: Path, one: bool) -> None:
    await seed(folder / "source.sqlite", records)
    spec = f"{rate.calls}/{rate.seconds:g}"
    processes = []
    source_process, source_url, source_key = serve(
        folder / "source.sqlite", spec, latency, "legacy"
    )
    processes.append(source_process)
    if not one:
        target_process, target_url, target_key = serve(
            folder / "target.sqlite", spec, latency, "legacy"
        )
        processes.append(target_process)
    try:
        async with contextlib.AsyncExitStack() as opened:
            reading = await opened.enter_async_context(
                TwentyClient(base_url=source_url, api_key=Secret(source_key), rate=rate)
            )
            writing = (
                reading
                if one
                else await opened.enter_async_context(
                    TwentyClient(base_url=target_url, api_key=Secret(target_key), rate=rate)
                )
            )
            plan = plan_migration(await load_schema(reading), await load_schema(writing), ["note"])
            members = await member_map(reading, writing)
            started = time.monotonic()
            count = await copy_object(
                reading, writing, plan.objects[0], members, folder / "state", batch_size=batch
            )
            elapsed = time.monotonic() - started
            reads, writes = reading.stats.reads, writing.stats.writes
            limited = reading.stats.rate_limited + (0 if one else writing.stats.rate_limited)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
    if one:  # reads and writes spend one bucket (reads here include the setup's)
        limit = max(0, reads + writes - rate.calls) * rate.interval
        sides = f"one workspace: {reads} reads + {writes} writes (limit {limit:.1f}s)"
    else:
        read_limit = max(0, reads - rate.calls) * rate.interval
        write_limit = max(0, writes - rate.calls) * rate.interval
        limit = max(read_limit, write_limit)
        sides = (
            f"source: {reads} reads (limit {read_limit:.1f}s); target: {writes} writes "
            f"(limit {write_limit:.1f}s)"
        )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"{'one legacy bucket' if one else 'two legacy buckets'} {rate} (full at the start), "
        f"answers held back {latency} ms, batches of {batch}"
    )
    print(
        f"{count.written:,} notes copied ({count.source_count:,} in the source, "
        f"{count.target_count:,} in the target) in {elapsed:.2f}s"
    )
    print(f"{sides}; the run against the limit: {limit / elapsed:.3f}")
    print(f"429 answers: {limited}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=12_000)
    parser.add_argument("--rate", default="100/60")
    parser.add_argument("--latency", default="80:250")
    parser.add_argument("--batch", type=int, default=60)
    parser.add_argument(
        "--one-workspace",
        action="store_true",
        help="source and target are one workspace: reads and writes share its bucket",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-migrate-") as folder:
        asyncio.run(
            run(
                args.records,
                Rate.parse(args.rate),
                args.latency,
                args.batch,
                Path(folder),
                args.one_workspace,
            )
        )


if __name__ == "__main__":
    main()
