"""Benchmark: read + normalize (``validate``) throughput and peak memory.

Generates a deterministic 10-column people file (names, e-mails, phones, titles, cities,
company domains, LinkedIn URLs, sign-up dates, VIP flags, scores) with a few percent of
bad values, then runs the validate stage on it in a child process that reports its
wall time and peak RSS. Targets (design.md §4): >= 200k rows/s on 1M rows; a 5M-row
file validated in under 1.5 GB RSS.

Usage: python bench/bench_validate.py [--rows 1000000] [--rows 5000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

MAPPING = """version: 1
object: person
key: [emails.primaryEmail]
fields:
  name.firstName: first_name
  name.lastName: {column: last_name, transform: [strip, title]}
  emails.primaryEmail: {column: email, required: true}
  phones: {column: phone, default_country: US}
  jobTitle: job_title
  city: city
  company: {column: company_domain, lookup: domainName.primaryLinkUrl}
  linkedinLink.primaryLinkUrl: linkedin
  createdAt: signup
  position: score
"""


def generate(path: Path, rows: int) -> None:
    """Write ``rows`` people to ``path`` (CSV), built with polars, deterministic."""
    firsts = ["Ada", "Grace", "Alan", "Marie", "Tony", "Bruce", "Ingrid", "Pepper", "José", "Zoë"]
    lasts = ["lovelace", "Hopper", "Turing", "CURIE", "Stark", "Wayne", "Berg", "Potts"]
    titles = ["CTO", "CEO", "VP Sales", "Engineer", "Designer", "Head of Marketing", ""]
    cities = ["Paris", "London", "New York", "Berlin", "Bergen", "Austin", "Zürich"]
    i = pl.int_range(rows, eager=True).alias("i")
    frame = (
        pl.DataFrame({"i": i})
        .with_columns(
            pl.col("i")
            .mod(len(firsts))
            .replace_strict(list(range(len(firsts))), firsts)
            .alias("first_name"),
            pl.col("i")
            .floordiv(7)
            .mod(len(lasts))
            .replace_strict(list(range(len(lasts))), lasts)
            .alias("last_name"),
            # 0.5 % invalid e-mails, 0.5 % repeated keys
            pl.when(pl.col("i").mod(200) == 7)
            .then(pl.format("user{}@broken", pl.col("i")))
            .when(pl.col("i").mod(200) == 9)
            .then(pl.format("User{}@Example.com", pl.col("i") - 4))
            .otherwise(pl.format("User{}@Example.com", pl.col("i")))
            .alias("email"),
            pl.format("+1 (212) 555-{}", (pl.col("i").mod(9000) + 1000)).alias("phone"),
            pl.col("i")
            .mod(len(titles))
            .replace_strict(list(range(len(titles))), titles)
            .alias("job_title"),
            pl.col("i")
            .floordiv(3)
            .mod(len(cities))
            .replace_strict(list(range(len(cities))), cities)
            .alias("city"),
            pl.format("Company{}.com/", pl.col("i").mod(5000)).alias("company_domain"),
            pl.format("linkedin.com/in/user-{}/", pl.col("i")).alias("linkedin"),
            pl.format("2024-{}-{}", pl.col("i").mod(12) + 1, pl.col("i").mod(28) + 1).alias(
                "signup"
            ),
            (pl.col("i").mod(1000) * 1.5).cast(pl.String).alias("score"),
        )
        .drop("i")
    )
    frame.write_csv(path)


def run_child(mapping: Path, source: Path) -> dict[str, float]:
    """Validate in this process and report time, rows and peak RSS as JSON."""
    from pipeline.mapping import load_mapping
    from pipeline.runner import validate
    from pipeline.standard import standard_schema

    start = time.perf_counter()
    report = validate(
        load_mapping(mapping),
        standard_schema(),
        source=source,
        rejects_path=source.with_suffix(".rejects.csv"),
    )
    elapsed = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "rows": report.rows,
        "valid": report.valid,
        "rejected": report.rejected,
        "seconds": elapsed,
        "rows_per_s": report.rows / elapsed,
        "peak_rss_mb": peak_kb / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append")
    parser.add_argument("--keep", type=Path, help="folder for the generated files")
    parser.add_argument("--child", nargs=2, metavar=("MAPPING", "SOURCE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(Path(args.child[0]), Path(args.child[1]))))
        return
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-validate-"))
    folder.mkdir(parents=True, exist_ok=True)
    mapping = folder / "people.yaml"
    mapping.write_text(MAPPING)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, polars {pl.__version__}"
    )
    for rows in args.rows or [1_000_000]:
        source = folder / f"people-{rows}.csv"
        if not source.exists():
            t = time.perf_counter()
            generate(source, rows)
            print(
                f"generated {rows:,} rows ({source.stat().st_size / 1e6:.0f} MB) in "
                f"{time.perf_counter() - t:.1f}s"
            )
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(mapping), str(source)],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{rows:>10,} rows: {result['seconds']:.1f}s, {result['rows_per_s']:,.0f} rows/s, "
            f"peak RSS {result['peak_rss_mb']:,.0f} MB, valid {result['valid']:,}, "
            f"rejected {result['rejected']:,}"
        )


if __name__ == "__main__":
    main()
