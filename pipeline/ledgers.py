"""Ledgers: the files a run leaves for its user, written from the state store.

Every run keeps its own ledgers in ``<state folder>/runs/<run>/`` (success.csv,
rejects.csv, report.json); the latest run's are also at the top of the state folder,
where the summary points. A ledger is written to a temporary name and renamed, so it
is whole or absent. Text cells that a spreadsheet would run as a formula are escaped
(see :mod:`pipeline.cells`).
"""

from __future__ import annotations

import heapq
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from pipeline.cells import LEDGER_COLUMNS
from pipeline.dropped_store import DroppedValues
from pipeline.errors import StateError
from pipeline.normalize import KEY_SEPARATOR
from pipeline.sinks import SinkError, open_sink
from pipeline.state import StateStore

if TYPE_CHECKING:
    from pipeline.reports import ImportReport

LEDGER_FILES = ("success.csv", "rejects.csv", "report.json", "deletions.csv")
DROPPED_STAGE = "value_dropped"
"""``_stage`` of a rejects line that is a value left out of a row that loaded."""
SUCCESS_COLUMNS = ("_row", "key", "id", "outcome", "note")


def run_folder(folder: Path, run_id: int) -> Path:
    """Where one run's ledgers are kept."""
    return folder / "runs" / f"{run_id:04d}"


def rejects_header(columns: list[str]) -> list[str]:
    """The columns of every rejects file: the source's, then the ledger's own."""
    return [*columns, *LEDGER_COLUMNS]


class RejectsWriter:
    """Rejected rows as they come: the original columns, then the ledger columns.

    A :class:`~pipeline.sinks.Sink`: the file appears whole when closed, or not at all.
    """

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = rejects_header(columns)
        self._sink = open_sink(path, "csv", columns=self.columns, label="rejects file")

    @property
    def count(self) -> int:
        """Rows written so far."""
        return self._sink.count

    def write(self, frame: pl.DataFrame) -> None:
        """Write rejected rows (missing columns are left empty)."""
        self._sink.write(frame)

    def close(self) -> None:
        """Finish the file and put it in place."""
        self._sink.close()

    def abort(self) -> None:
        """Leave no file behind (the run failed before the end)."""
        self._sink.abort()


def write_ledgers(store: StateStore, folder: Path, columns: list[str], run_id: int) -> None:
    """success.csv and rejects.csv of a run, from the store (so they always agree with it)."""
    try:
        target = run_folder(folder, run_id)
        target.mkdir(parents=True, exist_ok=True)
        _write_success(store, target / "success.csv", run_id)
        _write_rejects(store, target / "rejects.csv", columns, run_id)
        for name in ("success.csv", "rejects.csv"):
            publish(target / name, folder / name)
    except (OSError, SinkError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StateError(
            f"the ledgers in {folder} could not be written ({why}); the "
            "state store is complete: free space, then run the same command again to write them"
        ) from None


def _write_success(store: StateStore, path: Path, run_id: int) -> None:
    rows = (
        (str(row), (key or "").replace(KEY_SEPARATOR, " | "), record_id, outcome, note)
        for row, key, record_id, outcome, _stage, note, _ in store.iter_rows(
            rejected=False, run_id=run_id
        )
    )
    with open_sink(path, "csv", columns=SUCCESS_COLUMNS, label="success ledger") as sink:
        sink.write_rows(rows)


def _write_rejects(store: StateStore, path: Path, columns: list[str], run_id: int) -> None:
    def cells(original: str | None, row: int, stage: str | None, reason: str | None) -> list[Any]:
        values = json.loads(original) if original else {}
        found = [*(values.get(c) for c in columns), str(row), stage]
        return [*found, values.get("_column"), values.get("_value"), reason]

    rejected = (
        (row, cells(original, row, stage, reason))
        for row, _key, _id, _outcome, stage, reason, original in store.iter_rows(
            rejected=True, run_id=run_id
        )
    )
    dropped = (
        (row, [*(text.get(c) for c in columns), str(row), DROPPED_STAGE, col, value, reason])
        for row, col, value, reason, text in DroppedValues(store, read_only=True).lines(run_id)
    )
    rows = (line for _, line in heapq.merge(rejected, dropped, key=lambda item: item[0]))
    header = rejects_header(columns)
    with open_sink(path, "csv", columns=header, label="rejects ledger") as sink:
        sink.write_rows(rows)


def publish(kept: Path, latest: Path) -> None:
    """Copy a run's ledger to the top of the state folder (atomically)."""
    tmp = latest.with_name(latest.name + ".tmp")
    shutil.copyfile(kept, tmp)
    tmp.replace(latest)


def write_report(folder: Path, report: ImportReport, run_id: int) -> None:
    """report.json of a run, kept with its ledgers and published as the latest."""
    text = json.dumps(report.as_dict(), indent=2) + "\n"
    try:
        target = run_folder(folder, run_id)
        target.mkdir(parents=True, exist_ok=True)
        tmp = target / "report.json.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target / "report.json")
        publish(target / "report.json", folder / "report.json")
    except OSError as exc:
        raise StateError(
            f"the import finished, but {folder / 'report.json'} could not be written: "
            f"{exc.strerror or exc}"
        ) from None


def unpublish(folder: Path) -> None:
    """Remove the latest-run copies (a new run starts; earlier runs keep theirs)."""
    for name in LEDGER_FILES:
        (folder / name).unlink(missing_ok=True)
