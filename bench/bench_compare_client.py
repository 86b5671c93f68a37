"""Benchmark: our import beside a script written with the PyPI ``twentycrm-api-client``.

The same notes, the same server: for each side a fresh sandbox is served on loopback
(a separate process) with the chosen bucket and answer latency. Ours is the real import
path (``import_file``: batches of 60, 4 in flight, the pacer). Theirs is what a user
of Twenty's generated Python client would write: REST batch upserts of 60 through
``NotesApi.create_many_notes``, one call at a time, urllib3 retries on 429 and 5xx that
honour ``Retry-After`` (the v2 engine sends it; the legacy throttler does not, so the
back-off applies). Each side must leave exactly the notes it was given; the script
checks the count in the workspace's file.

Needs the package (a bench-only dependency): ``pip install twentycrm-api-client``.

Usage: python bench/bench_compare_client.py [--notes 9000] [--rate 30/3]
       [--latency 80:250] [--bucket v2|legacy]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_pacing import serve

from pipeline.config import Rate, Secret
from pipeline.mapping import load_mapping
from pipeline.runner import import_file
from pipeline.twenty import TwentyClient

BATCH = 60


def stored_notes(db: Path) -> int:
    """How many notes the workspace file holds (read directly: its bucket may be empty)."""
    with sqlite3.connect(db) as connection:
        row = connection.execute("SELECT COUNT(*) FROM records WHERE object = 'note'")
        return int(row.fetchone()[0])


async def ours(url: str, key: str, rate: Rate, notes: int, folder: Path) -> dict[str, Any]:
    source = folder / "notes.csv"
    source.write_text("title,body\n" + "".join(f"Note {i},Body {i}\n" for i in range(notes)))
    mapping = folder / "notes.yaml"
    mapping.write_text(
        "object: note\nkey: [title]\nfields:\n  title: title\n  bodyV2.markdown: body\n"
    )
    async with TwentyClient(base_url=url, api_key=Secret(key), rate=rate, concurrency=4) as client:
        started = time.monotonic()
        report = await import_file(
            load_mapping(mapping),
            client,
            state_dir=folder / "state",
            source=source,
            batch_size=BATCH,
            concurrency=4,
        )
        seconds = time.monotonic() - started
    return {
        "seconds": seconds,
        "calls": report.calls["writes"] + report.calls["reads"],
        "429s": report.calls["rate_limited"],
    }


def theirs(url: str, key: str, notes: int) -> dict[str, Any]:
    """The user's script: generated client, REST batch upsert, urllib3 retries."""
    import twentycrm_client  # type: ignore[import-not-found]
    from twentycrm_client.models.note import Note  # type: ignore[import-not-found]
    from urllib3.util.retry import Retry

    refusals = 0

    class CountingRetry(Retry):  # type: ignore[misc]
        def increment(self, *args: Any, **kwargs: Any) -> Retry:
            nonlocal refusals
            response = kwargs.get("response")
            if response is not None and response.status == 429:
                refusals += 1
            return super().increment(*args, **kwargs)

    configuration = twentycrm_client.Configuration(
        host=f"{url}/rest",
        access_token=key,
        retries=CountingRetry(
            total=20,
            backoff_factor=1,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=None,  # POST too: the batch is an upsert
            respect_retry_after_header=True,
        ),
    )
    calls = 0
    started = time.monotonic()
    with twentycrm_client.ApiClient(configuration) as api_client:
        api = twentycrm_client.NotesApi(api_client)
        for start in range(0, notes, BATCH):
            batch = [
                Note(title=f"Note {i}", bodyV2={"markdown": f"Body {i}"})
                for i in range(start, min(start + BATCH, notes))
            ]
            api.create_many_notes(batch, upsert=True)
            calls += 1
    seconds = time.monotonic() - started
    return {"seconds": seconds, "calls": calls + refusals, "429s": refusals}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=9000)
    parser.add_argument("--rate", default="30/3")
    parser.add_argument("--latency", default="80:250")
    parser.add_argument("--bucket", choices=["legacy", "v2"], default="v2")
    args = parser.parse_args()
    try:
        import twentycrm_client  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        print("needs the client to compare with: pip install twentycrm-api-client")
        sys.exit(2)
    rate = Rate.parse(args.rate)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as folder:
        for side in ("ours", "theirs"):
            work = Path(folder) / side
            work.mkdir()
            process, url, key = serve(work / "ws.sqlite", args.rate, args.latency, args.bucket)
            try:
                if side == "ours":
                    results[side] = asyncio.run(ours(url, key, rate, args.notes, work))
                else:
                    results[side] = theirs(url, key, args.notes)
                results[side]["stored"] = stored_notes(work / "ws.sqlite")
            finally:
                process.terminate()
                process.wait(timeout=10)
    calls = -(-args.notes // BATCH)
    limit = max(0, calls - rate.calls) * rate.interval
    print(
        f"{args.notes:,} notes in batches of {BATCH}, {args.bucket} bucket {rate} (full at the "
        f"start), answers held back {args.latency} ms; physical limit "
        f"({calls} - {rate.calls}) x {rate.interval:g}s = {limit:.1f}s"
    )
    for side, figures in results.items():
        print(
            f"  {side:6}  {figures['seconds']:7.2f}s  {figures['calls']:4} calls  "
            f"{figures['429s']:3} 429s  {figures['stored']:,} notes stored  "
            f"{limit / figures['seconds']:.3f} of the limit"
        )
    print(f"theirs / ours: {results['theirs']['seconds'] / results['ours']['seconds']:.2f}")


if __name__ == "__main__":
    main()
