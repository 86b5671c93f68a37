"""Run the heavy reliability suite and rewrite the figures section of its README.

    PYTHONPATH=$PWD python tests/reliability/run_heavy.py [--seeds 60] [--kills 4]
        [--fault-seeds 5] [--quick]

--quick leaves out the cases that wait out the client's 60 s timeout or its whole
retry budget (trickle, spikes, long outage, servers failing every call): those take
tens of minutes. The figures count only runs that ended right (exact workspace,
true ledgers); failed tests are listed as such.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
START, END = "<!-- figures:start -->", "<!-- figures:end -->"
SLOW = "not trickling and not spikes and not long_outage and not every_call_fails"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=60, help="crash scenarios")
    parser.add_argument("--kills", type=int, default=4, help="kills per crash scenario")
    parser.add_argument("--fault-seeds", type=int, default=5, help="seeds per fault kind")
    parser.add_argument("--quick", action="store_true", help="leave out the slow cases")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        records = Path(folder) / "records.txt"
        junit = Path(folder) / "junit.xml"
        env = {
            **os.environ,
            "RELIABILITY_RECORD": str(records),
            "RELIABILITY_SEEDS": str(args.seeds),
            "RELIABILITY_KILLS": str(args.kills),
            "RELIABILITY_FAULT_SEEDS": str(args.fault_seeds),
        }
        command = [sys.executable, "-m", "pytest", "-m", "heavy", str(HERE), "-q"]
        command += ["-p", "no:cacheprovider", f"--junitxml={junit}", "-rfxX"]
        if args.quick:
            command += ["-k", SLOW]
        started = time.monotonic()
        done = subprocess.run(command, env=env, check=False)
        took = time.monotonic() - started
        lines = records.read_text().splitlines() if records.exists() else []
        outcomes = test_outcomes(junit)
    figures = render(lines, outcomes, took, args)
    text = README.read_text()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    README.write_text(pattern.sub(lambda _: f"{START}\n{figures}{END}", text))
    print(figures)
    return done.returncode


def test_outcomes(junit: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    if not junit.exists():
        return counts
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        if "failure" in kinds or "error" in kinds:
            counts["failed"] += 1
        elif "skipped" in kinds:
            marks = " ".join(c.get("type", "") for c in case if c.tag == "skipped")
            counts["xfailed" if "xfail" in marks else "skipped"] += 1
        else:
            counts["passed"] += 1
    return counts


def render(lines: list[str], outcomes: Counter[str], took: float, args: argparse.Namespace) -> str:
    kills: Counter[str] = Counter()
    missed = 0
    scenarios: set[str] = set()
    faults: Counter[str] = Counter()
    ends: Counter[str] = Counter()
    for line in lines:
        parts = line.split()
        if parts[0] == "kill":
            scenarios.add(parts[1])
            if parts[3] == "1":
                kills[parts[2]] += 1
            else:
                missed += 1
        elif parts[0] == "fault":
            faults[parts[1]] += int(parts[2])
        elif parts[0] == "run":
            ends[parts[1]] += 1
    size = f"--seeds {args.seeds} --kills {args.kills} --fault-seeds {args.fault_seeds}"
    out = [
        f"Last run: `run_heavy.py {size}{' --quick' if args.quick else ''}`, "
        f"{time.strftime('%Y-%m-%d')}, {took / 60:.1f} min on this machine.",
        "",
        "| tests | passed | xfailed | failed |",
        "|---|---|---|---|",
        f"| {sum(outcomes.values())} | {outcomes['passed']} | {outcomes['xfailed']} "
        f"| {outcomes['failed']} |",
        "",
        f"Kills survived: **{sum(kills.values())}** in {len(scenarios)} crash scenarios "
        f"(each then re-run to exit 0: exact workspace, no key twice, every row once in "
        f"the ledgers); {missed} planned kills came after their run had ended.",
        "",
        "| moment | kills |",
        "|---|---|",
        *(f"| {moment} | {count} |" for moment, count in sorted(kills.items())),
        "",
        f"Faulted runs that ended right: {sum(ends.values())} "
        f"({ends['exact']} exact at once, {ends['resumed']} exit 1 then resumed exact).",
        "",
        "| fault | injected |",
        "|---|---|",
        *(f"| {kind} | {count} |" for kind, count in sorted(faults.items())),
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
