"""Benchmark: re-running an unchanged nightly sync (design.md §4 "Incremental sync").

Loads a generated people file (e-mail key, names, phone, title, city, company looked up
by domain) into an in-process sandbox once, then syncs the same records again from a new
file (rows in another order, as a fresh export would have them) with ``incremental``.
Reports the wall time and the calls of the second run. Target: zero write calls, under
20 s for 100,000 rows.

Usage: python bench/bench_sync.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import tempfile
import time
from pathlib import Path

import httpx

from pipeline.config import Rate, Secret
from pipeline.mapping import load_mapping
from pipeline.runner import import_file
from pipeline.sandbox import Sandbox, SandboxOptions
from pipeline.twenty import TwentyClient

MAPPING = """version: 1
object: person
key: [emails.primaryEmail]
fields:
  emails.primaryEmail: email
  name.firstName: first
  name.lastName: last
  phones: {column: phone, default_country: US}
  jobTitle: title
  city: city
  company: {column: site, lookup: domainName.primaryLinkUrl, on_missing: "null"}
"""


def people(rows: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    titles = ["CTO", "Engineer", "Buyer", "VP Sales", "Designer"]
    cities = ["Paris", "Austin", "Zürich", "Kraków", "Lyon"]
    out = []
    for i in range(rows):
        phone = f"+1 415 555 {i % 10_000:04d}"
        out.append(
            f"p{i}@x{i % 97}.io,First{i},Last{i},{phone},{rng.choice(titles)},"
            f"{rng.choice(cities)},company{i % 50}.com"
        )
    return out


def write(path: Path, rows: list[str]) -> Path:
    path.write_text("email,first,last,phone,title,city,site\n" + "\n".join(rows) + "\n")
    return path


async def sync(box: Sandbox, folder: Path, source: Path) -> tuple[float, dict[str, int], int]:
    client = TwentyClient(
        base_url="http://sandbox",
        api_key=Secret(box.api_key),
        rate=Rate(100_000, 1),
        transport=httpx.ASGITransport(app=box.app),
    )
    started = time.perf_counter()
    async with client:
        report = await import_file(
            load_mapping(folder / "people.yaml"),
            client,
            state_dir=folder / "state",
            source=source,
            incremental=True,
        )
    return time.perf_counter() - started, report.calls, report.unchanged


async def seed_companies(box: Sandbox) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=box.app),
        base_url="http://sandbox",
        headers={"Authorization": f"Bearer {box.api_key}"},
    ) as http:
        body = [
            {"name": f"Company {i}", "domainName": {"primaryLinkUrl": f"https://company{i}.com"}}
            for i in range(50)
        ]
        (await http.post("/rest/batch/companies", json=body)).raise_for_status()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "people.yaml").write_text(MAPPING)
        box = Sandbox(folder / "ws.sqlite", SandboxOptions(throttle=False))
        await seed_companies(box)
        rows = people(args.rows, seed=1)
        seconds, calls, _ = await sync(box, folder, write(folder / "monday.csv", rows))
        print(f"first run (setup): {args.rows:,} rows in {seconds:.1f}s, calls {calls}")
        random.Random(2).shuffle(rows)
        seconds, calls, unchanged = await sync(box, folder, write(folder / "tuesday.csv", rows))
        box.close()
    print(
        f"unchanged re-run: {args.rows:,} rows, {unchanged:,} unchanged, {seconds:.1f}s, "
        f"write calls {calls['writes']}, read calls {calls['reads']}, "
        f"metadata calls {calls['metadata']} ({platform.machine()}, Python "
        f"{platform.python_version()})"
    )


if __name__ == "__main__":
    asyncio.run(main())
