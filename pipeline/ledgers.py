"""Ledgers: the files a run leaves for its user, written from the state store.

Every run keeps its own ledgers in ``<state folder>/runs/<run>/`` (success.csv,
rejects.csv, report.json); the latest run's are also at the top of the state folder,
where the summary points. A ledger is written to a temporary name and renamed, so it
is whole or absent. Text cells that a spreadsheet would run as a formula are escaped
(see :mod:`pipeline.cells`).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from pipeline.cells import LEDGER_COLUMNS, escape_row
from pipeline.errors import StateError
from pipeline.normalize import KEY_SEPARATOR
from pipeline.state import StateStore

if TYPE_CHECKING:
    from pipeline.reports import ImportReport

LEDGER_FILES = ("success.csv", "rejects.csv", "report.json")


def run_folder(folder: Path, run_id: int) -> Path:
    """Where one run's ledgers are kept."""
    return folder / "runs" / f"{run_id:04d}"


def rejects_header(columns: list[str]) -> list[str]:
    """The columns of every rejects file: the source's, then the ledger's own."""
    return [*columns, *LEDGER_COLUMNS]


class RejectsWriter:
    """Appends rejected rows to a CSV: the original columns, then the ledger columns."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = rejects_header(columns)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = path.open("w", encoding="utf-8", newline="")
        except OSError as exc:
            raise self._failed(exc) from None
        self._writer = csv.writer(self._handle)
        self._writer.writerow(escape_row(self.columns))
        self.count = 0

    def write(self, frame: pl.DataFrame) -> None:
        """Write rejected rows (missing columns are left empty)."""
        if frame.height == 0:
            return
        for name in self.columns:
            if name not in frame.columns:
                frame = frame.with_columns(pl.lit(None, pl.String).alias(name))
        rows = frame.select([pl.col(c).cast(pl.String) for c in self.columns]).rows()
        try:
            self._writer.writerows(escape_row(r) for r in rows)
        except OSError as exc:
            raise self._failed(exc) from None
        self.count += frame.height

    def close(self) -> None:
        """Flush and close the file."""
        try:
            self._handle.close()
        except OSError as exc:
            raise self._failed(exc) from None

    def _failed(self, exc: OSError) -> StateError:
        return StateError(f"cannot write the rejects file {self.path}: {exc.strerror or exc}")


def write_ledgers(store: StateStore, folder: Path, columns: list[str], run_id: int) -> None:
    """success.csv and rejects.csv of a run, from the store (so they always agree with it)."""
    try:
        target = run_folder(folder, run_id)
        target.mkdir(parents=True, exist_ok=True)
        _write_success(store, target / "success.csv", run_id)
        _write_rejects(store, target / "rejects.csv", columns, run_id)
        for name in ("success.csv", "rejects.csv"):
            _publish(target / name, folder / name)
    except OSError as exc:
        raise StateError(
            f"the ledgers in {folder} could not be written ({exc.strerror or exc}); the "
            "state store is complete: free space, then run the same command again to write them"
        ) from None


def _write_success(store: StateStore, path: Path, run_id: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["_row", "key", "id", "outcome", "note"])
        for row, key, record_id, outcome, _stage, note, _ in store.iter_rows(
            rejected=False, run_id=run_id
        ):
            shown = (key or "").replace(KEY_SEPARATOR, " | ")
            writer.writerow(escape_row([row, shown, record_id or "", outcome, note or ""]))
    tmp.replace(path)


def _write_rejects(store: StateStore, path: Path, columns: list[str], run_id: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(escape_row(rejects_header(columns)))
        for row, _key, _id, _outcome, stage, reason, original in store.iter_rows(
            rejected=True, run_id=run_id
        ):
            values = json.loads(original) if original else {}
            cells = [*(values.get(c) for c in columns), row, stage]
            cells += [values.get("_column"), values.get("_value"), reason]
            writer.writerow(escape_row(cells))
    tmp.replace(path)


def _publish(kept: Path, latest: Path) -> None:
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
        _publish(target / "report.json", folder / "report.json")
    except OSError as exc:
        raise StateError(
            f"the import finished, but {folder / 'report.json'} could not be written: "
            f"{exc.strerror or exc}"
        ) from None


def unpublish(folder: Path) -> None:
    """Remove the latest-run copies (a new run starts; earlier runs keep theirs)."""
    for name in LEDGER_FILES:
        (folder / name).unlink(missing_ok=True)
