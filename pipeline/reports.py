"""Reports: what validate and import tell the caller, and the progress hooks they call.

The CLI prints these; a library user reads them. Neither holds advice about flags:
that is the CLI's to give.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from pipeline.load import LoadStats

RowsProgress: TypeAlias = Callable[[int], None]
"""Told how many more source rows were handled (validate)."""

LoadProgress: TypeAlias = Callable[[LoadStats, int], None]
"""Told the loader's running counts and how many more rows have an outcome (import)."""

StartHook: TypeAlias = Callable[["ImportReport", dict[str, int]], None]
"""Told, once the run is planned, its report so far and what a resumed run already holds."""

TotalHook: TypeAlias = Callable[[int], None]
"""Told how many rows the run owes an outcome for."""


@dataclass
class ValidationReport:
    """What validate found."""

    source: Path
    rows: int = 0
    valid: int = 0
    skipped: int = 0
    """Rows with nothing to load (a note without a body): neither valid nor rejected."""
    rejected: int = 0
    values_dropped: int = 0
    """Values ``on_invalid: drop_value`` would leave out of valid rows."""
    blank_rows: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    first_rejects: list[dict[str, Any]] = field(default_factory=list)
    rejects_path: Path | None = None
    encoding: str | None = None
    delimiter: str | None = None
    key: tuple[str, ...] = ()
    key_is_unique: bool = True
    lookups: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON for ``--json`` output and reports."""
        return {
            "source": str(self.source),
            "rows": self.rows,
            "valid": self.valid,
            "skipped": self.skipped,
            "rejected": self.rejected,
            "values_dropped": self.values_dropped,
            "blank_rows": self.blank_rows,
            "rejected_by_reason": dict(self.by_reason.most_common()),
            "rejects_file": str(self.rejects_path) if self.rejects_path else None,
            "encoding": self.encoding,
            "delimiter": self.delimiter,
            "key": list(self.key),
            "key_matches_on": "unique fields" if self.key_is_unique else "derived ids (UUIDv5)",
            "lookups_to_resolve": self.lookups,
        }


def reason_kind(reason: str) -> str:
    """Group reasons for the summary: the column and the kind of problem, not the value."""
    first = reason.split("; ")[0]
    if first.startswith("duplicate key"):
        return "duplicate key"
    column, _, rest = first.partition(": ")
    if rest.startswith("'"):
        rest = rest.split("' ", 1)[-1]
    if rest.startswith("is not a valid email address"):
        rest = "is not a valid email address"
    return f"{column}: {rest}" if rest else column


@dataclass
class ImportReport:
    """The outcome of an import run (report.json)."""

    mapping: str
    object: str
    source: str
    rows_read: int = 0
    created: int = 0
    updated: int = 0
    restored: int = 0
    unchanged: int = 0
    skipped: int = 0
    """Rows with nothing to load (a note without a body): neither loaded nor rejected."""
    rejected: int = 0
    blank_rows: int = 0
    links_left_empty: int = 0
    targets_linked: int = 0
    """Note / task targets written by this attempt (``targets.*``)."""
    targets_unlinked: int = 0
    """Targets of earlier runs taken back by this attempt: their row links elsewhere now."""
    undo_reads: int = 0
    """Reads spent on before-images (``--undoable``)."""
    outcome_reads: int = 0
    """Reads telling creates from updates when the mapping writes ``createdAt``."""
    values_dropped: int = 0
    """Values left out of loaded records (``on_invalid: drop_value``), in rejects.csv."""
    encoding: str | None = None
    delimiter: str | None = None
    batches: int = 0
    resumed: bool = False
    already_done: bool = False
    seconds: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)
    exit_code: int = 0
    state_dir: str = ""
    run_id: int = 0

    @property
    def rejects_file(self) -> Path:
        """The rejects ledger of this run (the latest copy, at the top of the state folder)."""
        return Path(self.state_dir) / "rejects.csv"

    @property
    def loaded(self) -> int:
        """Rows written to the workspace."""
        return self.created + self.updated + self.restored

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON for report.json."""
        return {
            "mapping": self.mapping,
            "object": self.object,
            "source": self.source,
            "run": self.run_id,
            "rows": {
                "read": self.rows_read,
                "loaded": self.loaded,
                "created": self.created,
                "updated": self.updated,
                "restored": self.restored,
                "unchanged": self.unchanged,
                "skipped": self.skipped,
                "rejected": self.rejected,
                "blank_lines_skipped": self.blank_rows,
            },
            "links_left_empty": self.links_left_empty,
            "targets": {"linked": self.targets_linked, "unlinked": self.targets_unlinked},
            "undo_reads": self.undo_reads,
            "outcome_reads": self.outcome_reads,
            "values_dropped": self.values_dropped,
            "encoding": self.encoding,
            "batches": self.batches,
            "resumed": self.resumed,
            "already_done": self.already_done,
            "calls": self.calls,
            "seconds": round(self.seconds, 3),
            "exit_code": self.exit_code,
        }
