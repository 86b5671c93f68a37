"""Run a plan over a whole source: counts per outcome, changed fields, duplicates, files.

``plan.csv`` (every row: what would happen to it; for updates one line per field
changed, with its value now and after) and ``plan.json`` (the counts, the fields
changed with their counts, the possible duplicates) are written beside the ledgers
of the mapping, ``STATE_DIR/<mapping>/``. No write call is made.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.duplicates import has_criteria
from pipeline.existing import ExistingRecords
from pipeline.mapping import Mapping
from pipeline.plan import Judge, Judged
from pipeline.prepare import PreparedSource, source_path
from pipeline.runner import state_folder
from pipeline.schema import WorkspaceSchema
from pipeline.sinks import CsvSink
from pipeline.sources import ROW, open_source
from pipeline.twenty import TwentyClient

PLAN_COLUMNS = ["_row", "key", "action", "field", "now", "after", "record_id", "note"]


@dataclass
class PlanReport:
    """What an import of the source would do, per outcome, and where the details are."""

    object: str
    source: str
    rows: int = 0
    create: int = 0
    update: int = 0
    unchanged: int = 0
    restore: int = 0
    rejected: int = 0
    skipped: int = 0
    possible_duplicates: int = 0
    fields: Counter[str] = field(default_factory=Counter)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    read_calls: int = 0
    seconds: float = 0.0
    plan_csv: str | None = None
    plan_json: str | None = None

    @property
    def exit_code(self) -> int:
        """3 when rows would be rejected (as ``validate``), else 0."""
        return 3 if self.rejected else 0

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (``--json`` and ``plan.json``)."""
        return {
            "object": self.object,
            "source": self.source,
            "rows": self.rows,
            "create": self.create,
            "update": self.update,
            "unchanged": self.unchanged,
            "restore": self.restore,
            "rejected": self.rejected,
            "skipped": self.skipped,
            "possible_duplicates": self.possible_duplicates,
            "fields_changed": dict(self.fields.most_common()),
            "duplicates": self.duplicates,
            "read_calls": self.read_calls,
            "write_calls": 0,
            "seconds": round(self.seconds, 3),
            "plan_csv": self.plan_csv,
            "plan_json": self.plan_json,
            "exit_code": self.exit_code,
        }


def estimate_reads(rows: int) -> int:
    """Read calls a plan of ``rows`` rows costs at least: keys, soft-deleted records.

    Rows that would be created add one duplicates call per 60 (person and company).
    """
    return ExistingRecords.calls_for(rows) + 1


def _lines(verdict: Judged) -> list[list[Any]]:
    base = [verdict.row, verdict.key, verdict.action]
    note = verdict.note
    if verdict.action in ("create", "rejected"):
        dup = verdict.duplicate
        if dup is not None:
            note = "; ".join(filter(None, [f"possible duplicate: {dup.why}", note]))
        return [[*base, None, None, None, dup.record_id if dup else None, note]]
    if not verdict.changes:
        return [[*base, None, None, None, verdict.record_id, note]]
    return [[*base, c.field, c.now, c.after, verdict.record_id, note] for c in verdict.changes]


def _count(report: PlanReport, verdicts: list[Judged]) -> None:
    for v in verdicts:
        setattr(report, v.action, getattr(report, v.action) + 1)
        if v.action in ("update", "restore"):
            report.fields.update(c.field for c in v.changes)
        if v.duplicate is not None:
            report.possible_duplicates += 1
            d = v.duplicate
            report.duplicates.append(
                {"row": d.row, "key": d.key, "record_id": d.record_id, "why": d.why}
            )


async def run_plan(
    mapping: Mapping,
    client: TwentyClient,
    schema: WorkspaceSchema,
    *,
    state_dir: Path,
    source: str | Path | None = None,
    chunk_size: int = 100_000,
    confirm: Callable[[int, int, bool], bool] | None = None,
    folder: Path | None = None,
) -> PlanReport | None:
    """Plan ``source``; ``confirm(rows, read calls, duplicates asked)`` may decline
    (None is returned).

    The files go to ``folder`` (a job's step folder), by default the mapping's own.
    """
    started = time.monotonic()
    path = source_path(mapping, source)
    folder = folder or state_folder(state_dir, mapping)
    with open_source(path, mapping.source, chunk_size=chunk_size) as reader:
        prepared = PreparedSource.build(reader, mapping, schema)
        obj = prepared.plan.object.name_singular
        report = PlanReport(object=obj, source=str(path))
        total = prepared.total_rows
        if confirm is not None and not confirm(total, estimate_reads(total), has_criteria(obj)):
            return None
        judge = Judge(prepared.plan, client, duplicates=has_criteria(obj))
        folder.mkdir(parents=True, exist_ok=True)
        sink = CsvSink(folder / "plan.csv", PLAN_COLUMNS, label="plan file")
        try:
            await judge.prepare()
            _rejects(report, sink, prepared.read_rejects)
            for part in prepared.chunks():
                _rejects(report, sink, part.rejects)
                if part.skipped.height:
                    report.skipped += part.skipped.height
                    sink.write_rows(
                        [r, None, "skipped", None, None, None, None, why]
                        for r, why in part.skipped.select(ROW, "_reason").iter_rows()
                    )
                if part.records.height:
                    verdicts = await judge.judge(part.records)
                    _count(report, verdicts)
                    sink.write_rows(line for v in verdicts for line in _lines(v))
        except BaseException:
            sink.abort()
            raise
        sink.close()
    report.rows = total
    report.read_calls = judge.read_calls
    report.seconds = time.monotonic() - started
    report.plan_csv = str(folder / "plan.csv")
    report.plan_json = str(folder / "plan.json")
    text = json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n"
    (folder / "plan.json").write_text(text, encoding="utf-8")
    return report


def _rejects(report: PlanReport, sink: CsvSink, rejects: pl.DataFrame) -> None:
    if rejects.height:
        report.rejected += rejects.height
        sink.write_rows(
            [r, None, "rejected", None, None, None, None, why]
            for r, why in rejects.select(ROW, "_reason").iter_rows()
        )
