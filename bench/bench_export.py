"""Benchmark: export against the read ceiling (design.md §4 "Export").

Seeds a sandbox workspace file with N notes (in-process, unthrottled: setup, not
measured), then serves it on loopback with the chosen bucket (full at the start) and
answers held back by random latency, and exports every note through the real export
path (``export_object``: pages of 200 in id order, part files, the pacer). Reports
records per second against the read ceiling (rate x 200 records a call) and the whole
run against the physical limit ``(pages - bucket) x interval``.

Usage: python bench/bench_export.py [--records 30000] [--rate 50/30] [--latency 80:250]
       [--bucket legacy|v2] [--readers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from pathlib import Path

import httpx
from bench_pacing import serve

from pipeline.config import Rate, Secret
from pipeline.export import export_object
from pipeline.sandbox import Sandbox, SandboxOptions
from pipeline.schema import load_schema
from pipeline.twenty import ObjectNames, TwentyClient

NOTES = ObjectNames("note", "notes")


async def seed(db: Path, records: int) -> None:
    box = Sandbox(db, SandboxOptions(throttle=False))
    try:
        async with TwentyClient(
            base_url="http://sandbox",
            api_key=Secret(box.api_key),
            transport=httpx.ASGITransport(app=box.app),
        ) as client:
            for start in range(0, records, 200):
                batch = [
                    {"title": f"Note {i}", "bodyV2": {"markdown": f"Body of note {i}"}}
                    for i in range(start, min(start + 200, records))
                ]
                await client.upsert_many(NOTES, batch, upsert=False)
    finally:
        box.close()


async def run(
    records: int, rate: Rate, latency: str, bucket: str, readers: int, folder: Path
) -> None:
    db = folder / "ws.sqlite"
    await seed(db, records)
    process, url, key = serve(db, f"{rate.calls}/{rate.seconds:g}", latency, bucket)
    try:
        async with TwentyClient(
            base_url=url, api_key=Secret(key), rate=rate, concurrency=readers
        ) as client:
            schema = await load_schema(client)
            started = time.monotonic()
            report = await export_object(
                client,
                schema,
                "note",
                folder / "notes.parquet",
                state_dir=folder / "state",
                readers=readers,
            )
            elapsed = time.monotonic() - started
    finally:
        process.terminate()
        process.wait(timeout=10)
    pages = report.calls["reads"]
    ceiling = rate.calls / rate.seconds * 200
    limit = max(0, pages - rate.calls) * rate.interval
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"{bucket} bucket {rate} (full at the start), answers held back {latency} ms, "
        f"{readers} readers"
    )
    print(f"{report.records:,} records in {pages} read calls, {elapsed:.2f}s")
    print(
        f"records/s {report.records / elapsed:,.0f} vs read ceiling {ceiling:,.0f} "
        f"(rate x 200): {report.records / elapsed / ceiling:.3f}"
    )
    print(
        f"physical limit (pages - bucket) x interval = {limit:.2f}s: whole run "
        f"{limit / elapsed:.3f} of the limit"
    )
    print(f"429 answers: {report.calls['rate_limited']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=30_000)
    parser.add_argument("--rate", default="50/30")
    parser.add_argument("--latency", default="80:250")
    parser.add_argument("--bucket", choices=["legacy", "v2"], default="legacy")
    parser.add_argument("--readers", type=int, default=4, help="id ranges read side by side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-export-") as folder:
        asyncio.run(
            run(
                args.records,
                Rate.parse(args.rate),
                args.latency,
                args.bucket,
                args.readers,
                Path(folder),
            )
        )


if __name__ == "__main__":
    main()
