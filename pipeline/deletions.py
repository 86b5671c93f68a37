"""Delete propagation (``delete_missing: soft``): take out what left the source.

After a step's import, every key its state store holds as live (confirmed by Twenty
in an earlier run, never deleted by us) whose row is no longer in the source is
soft-deleted, in batched ``id in [...]`` calls through the same pacer as the loads.

Guarded, because a truncated export looks exactly like a mass departure: when more
than ``max_share`` (10 %) of the live keys would go, or when rows of the source could
not be read at all (any of them may hold a key that is still there), nothing is
deleted and the step says why, unless ``allow_mass`` says otherwise. A row that was
read but rejected still counts as present: its key is read on its own, the way the
duplicate pre-pass reads it.

Every deletion is in the state store (:mod:`pipeline.deletion_store`) before its call
and after its answer, and in the run's ``deletions.csv`` ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.deletion_store import DeletionOutcome, DeletionStore
from pipeline.errors import PipelineError, SettingAdvice, StateError
from pipeline.events import emit
from pipeline.ledgers import publish, run_folder
from pipeline.mapping import Mapping
from pipeline.normalize import KEY, KEY_SEPARATOR, normalize
from pipeline.prepare import PreparedSource, source_chunks, source_path
from pipeline.schema import WorkspaceSchema
from pipeline.sinks import SinkError, open_sink
from pipeline.sources import ROW, open_source
from pipeline.state import STORE_NAME, StateStore
from pipeline.twenty import TwentyClient
from pipeline.twenty.names import ObjectNames

DEFAULT_MAX_SHARE = 0.10
LEDGER = "deletions.csv"
DRY_RUN_LEDGER = "deletions-dry-run.csv"
LEDGER_COLUMNS = ("key", "id", "outcome")

ALLOW_MASS_DELETE = SettingAdvice(
    "allow_mass_delete", True, purpose="delete them anyway", alternative=True
)


class DeletionRefused(PipelineError):
    """The guard kept a step's deletions back; its loads stand."""


@dataclass(frozen=True)
class DeletionGuard:
    """How much a run may delete without being told it is right."""

    max_share: float = DEFAULT_MAX_SHARE
    allow_mass: bool = False


@dataclass
class DeletionPlan:
    """The records of one step whose keys left the source."""

    object: ObjectNames
    missing: pl.DataFrame
    """key, record_id: live keys of the store with no row in the source."""
    live: int
    unreadable: int = 0
    """Source rows the reader could not split into columns (their keys are unknown)."""
    first_unreadable: tuple[int, ...] = ()
    keyless: int = 0
    """Source rows without a usable key: no synced record can be theirs."""

    @property
    def count(self) -> int:
        """Records to soft-delete."""
        return self.missing.height

    @property
    def share(self) -> float:
        """Their share of the live records."""
        return self.count / self.live if self.live else 0.0

    def refusal(self, guard: DeletionGuard) -> str | None:
        """Why the guard keeps these deletions back (None: go ahead)."""
        if not self.count or guard.allow_mass:
            return None
        if self.unreadable:
            rows = ", ".join(str(r) for r in self.first_unreadable)
            return (
                f"{self.unreadable} rows of the source could not be read (rows {rows}) and any "
                f"of them may hold a key that is still there, so none of the {self.count} "
                "records gone from the source was deleted; fix those rows (see rejects.csv)"
            )
        if self.share > guard.max_share:
            return (
                f"{self.count} of {self.live} synced records ({self.share:.1%}) are gone from "
                f"the source, more than the {guard.max_share:.0%} allowed (max_delete_share), "
                "so none was deleted; check that the source is complete (a cut-off export "
                "looks like this)"
            )
        return None


@dataclass
class DeletionReport:
    """What delete propagation did in one step."""

    planned: int = 0
    live: int = 0
    deleted: int = 0
    already_gone: int = 0
    refused: str | None = None
    dry_run: bool = False
    ledger: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON for report.json."""
        return {
            "planned": self.planned,
            "live": self.live,
            "deleted": self.deleted,
            "already_gone": self.already_gone,
            "refused": self.refused,
            "dry_run": self.dry_run,
            "ledger": self.ledger,
        }


# --------------------------------------------------------------------------- plan


def plan_deletions(
    mapping: Mapping, schema: WorkspaceSchema, folder: Path, source: str | Path | None = None
) -> DeletionPlan:
    """Read the source's keys once and compare them with the step's live keys."""
    path = source_path(mapping, source)
    with open_source(path, mapping.source) as reader:
        prepared = PreparedSource.build(reader, mapping, schema)
        names = ObjectNames(prepared.plan.object.name_singular, prepared.plan.object.name_plural)
        live = _live_keys(folder)
        plan = DeletionPlan(names, live, live.height)
        if not live.height:
            return plan
        unreadable = prepared.read_rejects[ROW]
        plan.unreadable = unreadable.len()
        plan.first_unreadable = tuple(int(r) for r in unreadable.head(5).to_list())
        key_plan = prepared.plan.key_only()
        missing = live
        for chunk in source_chunks(reader, prepared.columns, key_plan.mapping.source_columns):
            keys = normalize(chunk, key_plan).records[KEY]
            plan.keyless += keys.null_count()
            missing = missing.filter(~pl.col("key").is_in(keys.drop_nulls().implode()))
        plan.missing = missing.sort("key")
    return plan


def _live_keys(folder: Path) -> pl.DataFrame:
    path = folder / STORE_NAME
    if not path.exists():
        return pl.DataFrame(schema={"key": pl.String, "record_id": pl.String})
    with StateStore(path, read_only=True) as store:
        return DeletionStore(store, read_only=True).live_keys()


# --------------------------------------------------------------------------- run


async def propagate_deletions(
    plan: DeletionPlan,
    client: TwentyClient,
    folder: Path,
    run_id: int,
    *,
    guard: DeletionGuard,
    batch_size: int = 60,
) -> DeletionReport:
    """Soft-delete the plan's records, or raise :class:`DeletionRefused` naming why."""
    report = DeletionReport(planned=plan.count, live=plan.live)
    refusal = plan.refusal(guard)
    if refusal is not None:
        raise DeletionRefused(refusal, advice=ALLOW_MASS_DELETE)
    with StateStore(folder / STORE_NAME) as store:
        deletions = DeletionStore(store)
        interrupted = deletions.interrupted()
        pairs = list(zip(plan.missing["key"], plan.missing["record_id"], strict=True))
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            deletions.mark_sent(run_id, chunk)
            sent_before = client.stats.writes
            gone = await client.soft_delete_many(plan.object, [i for _, i in chunk])
            # a call sent more than once may have deleted them the first time
            resent = client.stats.writes - sent_before > 1
            outcomes: list[tuple[str, DeletionOutcome]] = [
                (
                    key,
                    "deleted"
                    if i.lower() in gone or resent or key in interrupted
                    else "already_gone",
                )
                for key, i in chunk
            ]
            deletions.mark_done(run_id, outcomes)
            report.deleted += sum(o == "deleted" for _, o in outcomes)
            report.already_gone += sum(o == "already_gone" for _, o in outcomes)
        done = deletions.of_run(run_id)
    report.ledger = str(write_deletions_ledger(folder, run_id, done))
    emit(
        "deletions",
        f"{plan.object.plural}: {report.deleted} soft-deleted, {report.already_gone} already gone",
        object=plan.object.singular,
        **report.as_dict(),
    )
    return report


def write_deletions_ledger(folder: Path, run_id: int, rows: list[tuple[str, str, str]]) -> Path:
    """The run's deletions.csv (kept with its other ledgers, and published as the latest)."""
    target = run_folder(folder, run_id)
    target.mkdir(parents=True, exist_ok=True)
    _write(target / LEDGER, rows)
    publish(target / LEDGER, folder / LEDGER)
    return folder / LEDGER


def write_dry_run_ledger(folder: Path, plan: DeletionPlan) -> Path:
    """What a run would delete, as deletions-dry-run.csv in the step's folder."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        (k, i, "would_delete")
        for k, i in zip(plan.missing["key"], plan.missing["record_id"], strict=True)
    ]
    _write(folder / DRY_RUN_LEDGER, rows)
    return folder / DRY_RUN_LEDGER


def _write(path: Path, rows: list[tuple[str, str, str]]) -> None:
    shown = ((k.replace(KEY_SEPARATOR, " | "), i, o) for k, i, o in rows)
    try:
        with open_sink(path, "csv", columns=LEDGER_COLUMNS, label="deletions ledger") as sink:
            sink.write_rows(shown)
    except (OSError, SinkError) as exc:
        raise StateError(f"the deletions ledger {path} could not be written: {exc}") from None
