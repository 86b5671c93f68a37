"""Jobs: several mappings run as one, in the order their relations need.

A job file lists steps (a mapping each, optionally another source and a name). The
order comes from the lookups: a step that looks up companies runs after the step that
loads companies; the listed order breaks ties; a cycle is refused, named. A step that
fails stops the steps that depend on it (directly or not); the others still run.

Every step has its own state store in the job's state folder
(``STATE_DIR/<job>/<step>/``), so a killed job resumes step by step, and ids a step
wrote are handed to the later steps' lookups without a read call.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.deletions import (
    DeletionGuard,
    DeletionPlan,
    DeletionRefused,
    DeletionReport,
    plan_deletions,
    propagate_deletions,
    write_dry_run_ledger,
)
from pipeline.errors import (
    EXIT_FAILED,
    EXIT_REJECTED,
    EXIT_USAGE,
    Interrupted,
    MappingError,
    PipelineError,
    StateError,
)
from pipeline.events import emit
from pipeline.load import OnDeleted
from pipeline.lock import state_lock
from pipeline.mapping import Mapping, load_mapping
from pipeline.normalize import make_plan
from pipeline.plan_policy import PlanOptions
from pipeline.reports import ImportReport, LoadProgress, StartHook, TotalHook, ValidationReport
from pipeline.runner import import_file, validate
from pipeline.schema import WorkspaceSchema, load_schema
from pipeline.state import STORE_NAME, StateStore
from pipeline.twenty import TwentyClient

JOB_KEYS = {"version", "name", "steps", "incremental", "delete_missing", "undoable"}
STEP_KEYS = {"mapping", "source", "name"}
StepStatus = Literal["finished", "failed", "skipped"]
STATUSES: tuple[StepStatus, ...] = ("finished", "failed", "skipped")


@dataclass(frozen=True)
class Step:
    """One mapping of a job, with the source it reads."""

    name: str
    mapping: Mapping
    source: Path | None = None
    line: int = 0


@dataclass(frozen=True)
class Job:
    """A validated job file."""

    path: Path
    name: str
    steps: tuple[Step, ...]
    incremental: bool = False
    undoable: bool = False
    """Keep before-images of updated records, for ``undo`` (``undoable: true``)."""
    delete_missing: bool = False
    """Soft-delete the records whose keys left a step's source (see :mod:`pipeline.deletions`)."""


@dataclass
class StepResult:
    """What became of one step."""

    step: Step
    status: StepStatus
    report: ImportReport | None = None
    reason: str | None = None
    exit_code: int = 0
    error: PipelineError | None = None
    """What stopped a failed step (its reason, with advice a front end words itself)."""
    deletions: DeletionReport | None = None
    """Delete propagation of a finished step (``delete_missing: soft``)."""

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON for the job's report.json."""
        return {
            "step": self.step.name,
            "mapping": str(self.step.mapping.path),
            "status": self.status,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "report": self.report.as_dict() if self.report else None,
            "deletions": self.deletions.as_dict() if self.deletions else None,
        }


@dataclass
class JobReport:
    """The outcome of a job run: its steps in the order they ran."""

    job: str
    name: str
    state_dir: str
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """The worst of the steps: failed (1), then input errors (2), rejected rows (3)."""
        worst = {0: 0, EXIT_REJECTED: 1, EXIT_USAGE: 2, EXIT_FAILED: 3}
        return max((s.exit_code for s in self.steps), key=lambda c: worst.get(c, 3), default=0)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON for report.json."""
        return {
            "job": self.job,
            "name": self.name,
            "steps": [s.as_dict() for s in self.steps],
            "seconds": round(self.seconds, 3),
            "exit_code": self.exit_code,
        }


# --------------------------------------------------------------------------- job file


def load_job(path: str | Path) -> Job:
    """Read and check a job file and every mapping it names; all problems at once."""
    job_path = Path(path)
    try:
        raw = yaml.safe_load(job_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MappingError(f"{job_path}: cannot read the job file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise MappingError(f"{job_path}: not valid YAML: {_one_line(exc)}") from None
    if not isinstance(raw, dict):
        raise MappingError(f"{job_path}: a job file is a mapping with `steps:`")
    problems = [f"{job_path}: unknown key {k!r}" for k in sorted(set(raw) - JOB_KEYS, key=str)]
    if raw.get("version", 1) != 1:
        problems.append(f"{job_path}: version {raw.get('version')!r}; this release reads 1")
    delete_missing = raw.get("delete_missing", False)
    if delete_missing not in (False, "soft"):
        problems.append(
            f"{job_path}: delete_missing: {delete_missing!r}; use soft (soft-delete the records "
            "whose keys left the source) or false"
        )
    incremental = raw.get("incremental", False)
    if not isinstance(incremental, bool):
        problems.append(f"{job_path}: incremental: {incremental!r} must be true or false")
    undoable = raw.get("undoable", False)
    if not isinstance(undoable, bool):
        problems.append(f"{job_path}: undoable: {undoable!r} must be true or false")
    steps = _steps(job_path, raw.get("steps"), problems)
    if problems:
        raise MappingError(problems)
    name = raw.get("name") or job_path.stem
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise MappingError(f"{job_path}: name {name!r}: use letters, digits, - and _")
    return Job(
        job_path,
        name,
        tuple(steps),
        incremental=bool(incremental),
        undoable=bool(undoable),
        delete_missing=delete_missing == "soft",
    )


def _steps(job_path: Path, raw: Any, problems: list[str]) -> list[Step]:
    if not isinstance(raw, list) or not raw:
        problems.append(f"{job_path}: `steps:` must list at least one step")
        return []
    steps: list[Step] = []
    names: dict[str, int] = {}
    for number, item in enumerate(raw, start=1):
        where = f"{job_path}: step {number}"
        if isinstance(item, str):
            item = {"mapping": item}
        if not isinstance(item, dict) or "mapping" not in item:
            problems.append(f"{where}: give at least `mapping: FILE`")
            continue
        problems.extend(f"{where}: unknown key {k!r}" for k in sorted(set(item) - STEP_KEYS))
        try:
            mapping = load_mapping(job_path.parent / str(item["mapping"]))
        except MappingError as exc:
            problems.extend(f"{where}: {p}" for p in exc.problems)
            continue
        name = str(item.get("name") or mapping.name)
        if name in names:
            problems.append(
                f"{where}: the name {name!r} is step {names[name]}'s too; give one of them "
                "`name:` (each step keeps its own state)"
            )
            continue
        names[name] = number
        source = job_path.parent / str(item["source"]) if item.get("source") else None
        if source is None and mapping.source.path is None:
            problems.append(f"{where}: {mapping.path.name} names no source; give `source:`")
            continue
        readable = source or mapping.source.path
        if readable is not None and not readable.is_file():
            problems.append(f"{where}: the source {readable} is not a file")
        steps.append(Step(name, mapping, source, number))
    return steps


# --------------------------------------------------------------------------- order


def step_order(job: Job, schema: WorkspaceSchema) -> tuple[list[Step], dict[str, set[str]]]:
    """The steps in dependency order, and what each step depends on (by name).

    Step B depends on step A when B looks up records of the object A loads. Every
    mapping is checked against the workspace first, all problems at once.
    """
    objects: dict[str, str] = {}
    targets: dict[str, set[str]] = {}
    problems: list[str] = []
    for step in job.steps:
        try:
            plan = make_plan(step.mapping, schema)
        except MappingError as exc:
            problems.extend(f"step {step.name}: {p}" for p in exc.problems)
            continue
        objects[step.name] = plan.object.name_singular
        targets[step.name] = {
            f.relation.target_object for _, f in plan.lookups if f.relation is not None
        }
    if problems:
        raise MappingError(problems)
    needs = {
        step.name: {
            other.name
            for other in job.steps
            if other.name != step.name and objects[other.name] in targets[step.name]
        }
        for step in job.steps
    }
    ordered: list[Step] = []
    done: set[str] = set()
    while len(ordered) < len(job.steps):
        ready = [s for s in job.steps if s.name not in done and needs[s.name] <= done]
        if not ready:
            raise MappingError(f"{job.path}: the steps need each other: {_cycle(needs, done)}")
        ordered.append(ready[0])
        done.add(ready[0].name)
    return ordered, needs


def _cycle(needs: dict[str, set[str]], done: set[str]) -> str:
    """One cycle among the steps not done, as ``a -> b -> a``."""
    start = min(n for n in needs if n not in done)
    path = [start]
    while True:
        following = min(n for n in needs[path[-1]] if n not in done)
        if following in path:
            loop = [*path[path.index(following) :], following]
            return " -> ".join(loop) + " (each looks up records the next one loads)"
        path.append(following)


# --------------------------------------------------------------------------- run


@dataclass
class JobHooks:
    """What the caller wants to hear while a job runs (all optional)."""

    on_step: Callable[[Step, int, int], None] | None = None
    """Called with each step before it runs: ``on_step(step, position, count)``."""
    progress: LoadProgress | None = None
    on_start: StartHook | None = None
    on_total: TotalHook | None = None


@dataclass(frozen=True)
class StepSettings:
    """How every step of a run imports (the same for each)."""

    batch_size: int = 60
    concurrency: int = 4
    on_deleted: OnDeleted = "restore"
    restart: bool = False
    incremental: bool = False
    delete_missing: bool = False
    guard: DeletionGuard = field(default_factory=DeletionGuard)
    plan_options: PlanOptions | None = None
    """``--only-create`` and kin, for every step (:mod:`pipeline.plan_policy`)."""
    undoable: bool = False


async def run_job(
    job: Job,
    client: TwentyClient,
    *,
    state_dir: Path,
    batch_size: int = 60,
    concurrency: int = 4,
    on_deleted: OnDeleted = "restore",
    restart: bool = False,
    incremental: bool = False,
    hooks: JobHooks | None = None,
    wait: float = 0.0,
    guard: DeletionGuard | None = None,
    plan_options: PlanOptions | None = None,
    undoable: bool = False,
) -> JobReport:
    """Run every step of ``job`` in dependency order; see the module docstring.

    One run of a job at a time: ``wait`` seconds for another run to finish first.
    """
    started = time.monotonic()
    folder = state_dir / job.name
    settings = StepSettings(
        batch_size,
        concurrency,
        on_deleted,
        restart,
        incremental or job.incremental,
        job.delete_missing,
        guard or DeletionGuard(),
        plan_options,
        undoable or job.undoable,
    )
    report = JobReport(job=str(job.path), name=job.name, state_dir=str(folder))
    with state_lock(folder, f"the job {job.path}", wait=wait):
        schema = await load_schema(client)
        ordered, needs = step_order(job, schema)
        known: dict[tuple[str, str], dict[str, str]] = {}
        stopped: dict[str, str] = {}
        for position, step in enumerate(ordered, start=1):
            blocked = sorted(needs[step.name] & set(stopped))
            if blocked:
                why = f"skipped: step {blocked[0]} did not finish ({stopped[blocked[0]]})"
                result = StepResult(step, "skipped", reason=why, exit_code=EXIT_FAILED)
            else:
                emit(
                    "step_start",
                    f"job {job.name}: step {step.name} starts",
                    job=job.name,
                    step=step.name,
                    position=position,
                    steps=len(ordered),
                )
                if hooks is not None and hooks.on_step is not None:
                    hooks.on_step(step, position, len(ordered))
                result = await _run_step(step, client, folder, settings, hooks, schema, known)
            _ended(job, report, result)
            if result.status != "finished":
                stopped[step.name] = result.status
    report.seconds = time.monotonic() - started
    _write_job_report(folder, report)
    _job_ended(job, report)
    return report


async def _run_step(
    step: Step,
    client: TwentyClient,
    folder: Path,
    settings: StepSettings,
    hooks: JobHooks | None,
    schema: WorkspaceSchema,
    known: dict[tuple[str, str], dict[str, str]],
) -> StepResult:
    """Import one step; a failure is the step's result, an interruption stops the job."""
    hooks = hooks or JobHooks()
    try:
        step_report = await import_file(
            step.mapping,
            client,
            state_dir=folder,
            folder=folder / step.name,
            source=step.source,
            batch_size=settings.batch_size,
            concurrency=settings.concurrency,
            on_deleted=settings.on_deleted,
            restart=settings.restart,
            incremental=settings.incremental,
            progress=hooks.progress,
            on_start=hooks.on_start,
            on_total=hooks.on_total,
            schema=schema,
            known_ids=known,
            plan_options=settings.plan_options,
            undoable=settings.undoable,
        )
    except Interrupted:
        raise
    except PipelineError as exc:
        return StepResult(step, "failed", reason=str(exc), exit_code=exc.exit_code, error=exc)
    _remember_ids(known, step, step_report, schema)
    result = StepResult(step, "finished", step_report, exit_code=step_report.exit_code)
    if settings.delete_missing:
        await _delete_missing(step, client, folder / step.name, settings, schema, result)
    return result


async def _delete_missing(
    step: Step,
    client: TwentyClient,
    folder: Path,
    settings: StepSettings,
    schema: WorkspaceSchema,
    result: StepResult,
) -> None:
    """Soft-delete what left the step's source; a refusal marks the step, not the job."""
    assert result.report is not None
    try:
        plan = plan_deletions(step.mapping, schema, folder, step.source)
        result.deletions = await propagate_deletions(
            plan,
            client,
            folder,
            result.report.run_id,
            guard=settings.guard,
            batch_size=settings.batch_size,
        )
    except Interrupted:
        raise
    except DeletionRefused as exc:
        result.deletions = DeletionReport(planned=plan.count, live=plan.live, refused=exc.message)
        result.reason, result.error, result.exit_code = str(exc), exc, exc.exit_code
    except PipelineError as exc:
        result.reason, result.error, result.exit_code = str(exc), exc, exc.exit_code


# --------------------------------------------------------------------------- dry run


@dataclass
class StepPreview:
    """What a run would do in one step: its validation, and what it would delete."""

    step: Step
    validation: ValidationReport | None = None
    deletions: DeletionPlan | None = None
    refusal: str | None = None
    ledger: Path | None = None
    error: PipelineError | None = None


async def preview_job(
    job: Job, client: TwentyClient, *, state_dir: Path, guard: DeletionGuard | None = None
) -> list[StepPreview]:
    """Validate every step and list the deletions a run would make; zero writes.

    Reads the workspace's data model only; each step's rejects go to its folder's
    ``validate-rejects.csv`` and its deletions to ``deletions-dry-run.csv``.
    """
    schema = await load_schema(client)
    ordered, _ = step_order(job, schema)
    previews = []
    for step in ordered:
        folder = state_dir / job.name / step.name
        preview = StepPreview(step)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            preview.validation = validate(
                step.mapping,
                schema,
                source=step.source,
                rejects_path=folder / "validate-rejects.csv",
            )
            if job.delete_missing:
                plan = plan_deletions(step.mapping, schema, folder, step.source)
                preview.deletions = plan
                preview.refusal = plan.refusal(guard or DeletionGuard())
                preview.ledger = write_dry_run_ledger(folder, plan)
        except PipelineError as exc:
            preview.error = exc
        except OSError as exc:
            preview.error = StateError(f"cannot use the state folder {folder}: {exc.strerror}")
        previews.append(preview)
    return previews


def _job_ended(job: Job, report: JobReport) -> None:
    """The ``job_end`` event."""
    counts = {status: sum(s.status == status for s in report.steps) for status in STATUSES}
    emit(
        "job_end",
        f"job {job.name}: {counts['finished']} of {len(report.steps)} steps finished",
        job=job.name,
        exit_code=report.exit_code,
        seconds=round(report.seconds, 3),
        **counts,
    )


def _ended(job: Job, report: JobReport, result: StepResult) -> None:
    """Add a step's result to the report, and say so (a ``step_end`` event)."""
    report.steps.append(result)
    emit(
        "step_end",
        f"job {job.name}: step {result.step.name} {result.status}",
        job=job.name,
        step=result.step.name,
        status=result.status,
        exit_code=result.exit_code,
        reason=result.reason,
    )


def _remember_ids(
    known: dict[tuple[str, str], dict[str, str]],
    step: Step,
    step_report: ImportReport,
    schema: WorkspaceSchema,
) -> None:
    """The ids this step's run holds, by its key, for the lookups of later steps.

    Only a key of one unique field qualifies (a lookup names one field); with derived
    ids the key is not a field of the record, so nothing is handed on.
    """
    plan = make_plan(step.mapping, schema)
    if len(plan.key) != 1 or plan.derive_id or plan.key == ("id",):
        return
    path = Path(step_report.state_dir) / STORE_NAME
    with StateStore(path, read_only=True) as store:
        ids = store.confirmed_ids(step_report.run_id)
    known.setdefault((plan.object.name_singular, plan.key[0]), {}).update(ids)


def _write_job_report(folder: Path, report: JobReport) -> None:
    try:
        tmp = folder / "report.json.tmp"
        tmp.write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(folder / "report.json")
    except OSError as exc:
        raise StateError(
            f"the job ran, but {folder / 'report.json'} could not be written: {exc.strerror or exc}"
        ) from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
