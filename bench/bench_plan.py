"""Benchmark: a plan of 10,000 rows against 10,000 existing records (issue 16).

Seeds an in-process sandbox with ``--existing`` people (written straight into its
store: no call), then plans a file of ``--rows`` rows: 90 % keys that exist (a third
of them with a changed job title), 10 % new, of which a tenth share an existing
person's name under another e-mail. Counts the calls that reach the sandbox by kind
and times the plan twice: unpaced (the client's own cost) and paced at Twenty's
100 calls/min with the sandbox's throttle on (what a real workspace costs).

Usage: python bench/bench_plan.py [--rows 10000] [--existing 10000] [--no-paced]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from pipeline.config import Rate, Secret
from pipeline.mapping import load_mapping
from pipeline.planning import PlanReport, run_plan
from pipeline.sandbox import Sandbox, SandboxOptions
from pipeline.schema import load_schema
from pipeline.twenty import TwentyClient

MAPPING = """version: 1
object: person
source: {path: people.csv}
key: [emails.primaryEmail]
fields:
  emails.primaryEmail: email
  name.firstName: first
  name.lastName: last
  jobTitle: title
  city: city
"""


class Counting(httpx.AsyncBaseTransport):
    def __init__(self, box: Sandbox) -> None:
        self.inner = httpx.ASGITransport(app=box.app)
        self.calls: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/duplicates"):
            kind = "duplicates"
        elif path.startswith("/rest/metadata") or path == "/metadata":
            kind = "metadata"
        elif request.method == "GET" or (path == "/graphql" and b"mutation" not in request.content):
            kind = "read"
        else:
            kind = "write"
        self.calls[kind] += 1
        return await self.inner.handle_async_request(request)


def seed(box: Sandbox, existing: int) -> None:
    obj = box.engine.object("person")
    actor = {"source": "API", "name": "seed", "workspaceMemberId": None, "context": {}}
    for start in range(0, existing, 200):
        part = [
            {
                "emails": {"primaryEmail": f"p{i}@x.io"},
                "name": {"firstName": f"First{i}", "lastName": f"Last{i}"},
                "jobTitle": "Engineer",
                "city": "Paris",
            }
            for i in range(start, min(existing, start + 200))
        ]
        box.engine.create_many(obj, part, upsert=False, actor=actor)


def write_file(folder: Path, rows: int, existing: int) -> Path:
    matched = min(existing, rows * 9 // 10)
    with (folder / "people.csv").open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["email", "first", "last", "title", "city"])
        for i in range(matched):
            title = "CTO" if i % 3 == 0 else "Engineer"
            out.writerow([f"p{i}@x.io", f"First{i}", f"Last{i}", title, "Paris"])
        for j in range(rows - matched):
            if j % 10 == 0:  # the same person as an existing one, under another e-mail
                out.writerow([f"alt{j}@y.io", f"First{j}", f"Last{j}", "", ""])
            else:
                out.writerow([f"n{j}@x.io", f"New{j}", f"Person{j}", "Buyer", "Lyon"])
    path = folder / "people.yaml"
    path.write_text(MAPPING, encoding="utf-8")
    return path


async def plan_once(
    box: Sandbox, mapping: Path, state: Path, rate: Rate
) -> tuple[PlanReport, Counter[str], float]:
    wire = Counting(box)
    async with TwentyClient(
        base_url="http://sandbox", api_key=Secret(box.api_key), rate=rate, transport=wire
    ) as client:
        schema = await load_schema(client)
        started = time.perf_counter()
        report = await run_plan(load_mapping(mapping), client, schema, state_dir=state)
        seconds = time.perf_counter() - started
    assert report is not None
    return report, wire.calls, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--existing", type=int, default=10_000)
    parser.add_argument("--no-paced", action="store_true", help="skip the run paced at 100/60")
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {platform.machine()}")
    runs = [("unpaced", Rate(100_000, 1), False)]
    if not args.no_paced:
        runs.append(("paced 100/60", Rate(100, 60), True))
    for label, rate, throttle in runs:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            box = Sandbox(folder / "ws.sqlite", SandboxOptions(throttle=throttle))
            try:
                seed(box, args.existing)
                mapping = write_file(folder, args.rows, args.existing)
                report, calls, seconds = asyncio.run(
                    plan_once(box, mapping, folder / "state", rate)
                )
            finally:
                box.close()
        print(
            f"{label}: {args.rows:,} rows vs {args.existing:,} records: "
            f"+{report.create:,} ~{report.update:,} ={report.unchanged:,} "
            f"possible duplicates {report.possible_duplicates:,}; calls on the wire: "
            f"{calls['read']:,} reads + {calls['duplicates']:,} duplicates, "
            f"{calls['write']:,} writes ({calls['metadata']} metadata); {seconds:.1f} s"
        )


if __name__ == "__main__":
    main()
