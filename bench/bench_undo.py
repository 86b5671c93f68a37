"""Benchmark: the call cost of ``--undoable``, and of the undo itself (issue "Undo").

An in-process sandbox holds 5,000 people (setup). A 10,000-row file then updates those
5,000 (a new job title) and creates 5,000 more, once without and once with
``--undoable`` (each on a fresh copy of the workspace), counting the calls of each
import; then the undoable run is undone, counting the undo's reads and writes. The
physical floor of an import is ceil(rows / batch size) write calls; ``--undoable`` adds
about one read per batch (a page holds 200 records, a batch at most 200).

Usage: python bench/bench_undo.py [--rows 10000] [--batch-size 60]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import tempfile
import time
from pathlib import Path

import httpx

from pipeline.config import Rate, Secret
from pipeline.mapping import load_mapping
from pipeline.runner import import_file
from pipeline.sandbox import Sandbox, SandboxOptions
from pipeline.schema import load_schema
from pipeline.state import StateStore
from pipeline.twenty import TwentyClient
from pipeline.undo import carry_out, choose_run, plan_undo

MAPPING = """version: 1
object: person
key: [emails.primaryEmail]
fields:
  emails.primaryEmail: email
  name.firstName: first
  name.lastName: last
  jobTitle: title
  city: city
"""


def client(box: Sandbox) -> TwentyClient:
    return TwentyClient(
        base_url="http://sandbox",
        api_key=Secret(box.api_key),
        rate=Rate(100_000, 1),
        transport=httpx.ASGITransport(app=box.app),
    )


def write(path: Path, rows: range, title: str) -> Path:
    lines = [f"p{i}@x.io,First{i},Last{i},{title},Lyon" for i in rows]
    path.write_text("email,first,last,title,city\n" + "\n".join(lines) + "\n")
    return path


async def load(
    box: Sandbox, folder: Path, source: Path, batch: int, undoable: bool
) -> dict[str, object]:
    async with client(box) as c:
        report = await import_file(
            load_mapping(folder / "people.yaml"),
            c,
            state_dir=folder / "state",
            source=source,
            batch_size=batch,
            undoable=undoable,
        )
    return {
        **report.calls,
        "seconds": report.seconds,
        "undo_reads": report.undo_reads,
        "state": report.state_dir,
        "outcomes": (report.created, report.updated),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=60)
    args = parser.parse_args()
    half = args.rows // 2
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "people.yaml").write_text(MAPPING)
        seed = Sandbox(base / "seed.sqlite", SandboxOptions(throttle=False))
        await load(seed, base, write(base / "seed.csv", range(half), "Old"), 200, False)
        seed.close()
        source = write(base / "import.csv", range(args.rows), "New")
        results = {}
        for undoable in (False, True):
            folder = base / f"run-{undoable}"
            folder.mkdir()
            shutil.copy(base / "people.yaml", folder / "people.yaml")
            shutil.copy(base / "seed.sqlite", folder / "ws.sqlite")
            shutil.copytree(base / "state", folder / "state")
            box = Sandbox(folder / "ws.sqlite", SandboxOptions(throttle=False))
            results[undoable] = await load(box, folder, source, args.batch_size, undoable)
            if undoable:
                started = time.perf_counter()
                async with client(box) as c:
                    schema = await load_schema(c)
                    state = Path(str(results[True]["state"])) / "state.sqlite"
                    with StateStore(state) as store:
                        run = choose_run(store, None)
                        report = await plan_undo(store, c, schema, run, name="people", force=False)
                        await carry_out(store, c, schema, report, batch_size=args.batch_size)
                    undo_calls = c.stats.as_dict()
                undo_seconds = time.perf_counter() - started
            box.close()
    floor = math.ceil(args.rows / args.batch_size)
    plain, kept = results[False], results[True]
    print(f"{args.rows:,} rows (created, updated: {kept['outcomes']}), batch {args.batch_size}")
    print(f"  without --undoable: {plain['writes']} writes, {plain['reads']} reads (floor {floor})")
    print(
        f"  with --undoable:    {kept['writes']} writes, {kept['reads']} reads, of which "
        f"{kept['undo_reads']} for before-images (+{kept['undo_reads'] / floor:.2f} per batch)"
    )
    print(
        f"  undo: {undo_calls.get('writes', 0)} writes, {undo_calls.get('reads', 0)} reads "
        f"(in-process, {undo_seconds:.1f}s); actions {sorted(report.counts().items())}"
    )


if __name__ == "__main__":
    asyncio.run(main())
