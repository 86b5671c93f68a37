"""`run JOB`: several mappings in dependency order, step by step, resumable."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import click

from pipeline.cli.base import (
    cli,
    flag_advice,
    notice,
    on_deleted_option,
    run_async,
    settings_from,
    stopping_on_sigterm,
    undoable_option,
    wait_option,
    workspace_options,
)
from pipeline.cli.loading import ImportProgress, needs_a_look, print_import, where_text
from pipeline.cli.planning import options_from, plan_options
from pipeline.errors import Interrupted
from pipeline.workspace import open_workspace

if TYPE_CHECKING:
    from pipeline.config import Settings
    from pipeline.deletions import DeletionGuard, DeletionReport
    from pipeline.jobs import Job, JobReport, Step, StepPreview
    from pipeline.load import LoadStats, OnDeleted
    from pipeline.plan_policy import PlanOptions
    from pipeline.reports import ImportReport


@cli.command("run")
@click.argument("job_file", metavar="JOB", type=click.Path(dir_okay=False))
@click.option(
    "--restart",
    is_flag=True,
    help="Abandon each step's unfinished run (or set an unreadable state store aside).",
)
@click.option(
    "--incremental",
    is_flag=True,
    help="Send only rows that changed since Twenty last confirmed them (also `incremental: "
    "true` in the job file).",
)
@on_deleted_option
@wait_option
@undoable_option
@click.option(
    "--dry-run",
    is_flag=True,
    help="Validate every step and list what `delete_missing: soft` would delete "
    "(deletions-dry-run.csv in each step's folder); zero writes.",
)
@click.option(
    "--max-delete-share",
    type=click.FloatRange(0.0, 1.0),
    default=0.10,
    show_default=True,
    help="With `delete_missing: soft`: the largest share of a step's synced records one run "
    "may delete; more is refused (a cut-off export looks like a mass departure).",
)
@click.option(
    "--allow-mass-delete",
    is_flag=True,
    help="Delete what left the source even past --max-delete-share, or when rows could "
    "not be read.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the job report as JSON.")
@plan_options
@workspace_options
def run(
    job_file: str,
    restart: bool,
    incremental: bool,
    on_deleted: str,
    wait: float,
    undoable: bool,
    dry_run: bool,
    max_delete_share: float,
    allow_mass_delete: bool,
    as_json: bool,
    **flags: Any,
) -> None:
    """Run every step of JOB in dependency order (companies before the people who
    look them up); a failing step stops only the steps that need it.

    Each step keeps its own state store under STATE_DIR/<job>/<step>/: re-running
    after an interruption resumes. Exit 0 every step done, 3 some rows rejected,
    1 a step failed, 2 a job or mapping error (nothing sent), 130 interrupted.

    Example: twenty-pipeline run mappings/demo-job.yaml --sandbox
    """
    from pipeline.deletions import DeletionGuard
    from pipeline.jobs import load_job

    planned = options_from(flags)
    settings = settings_from(flags)
    job = load_job(job_file)
    guard = DeletionGuard(max_delete_share, allow_mass_delete)
    if dry_run:
        _dry_run(job, settings, guard, as_json)
        return
    shown = StepProgress(settings)
    try:
        report = run_async(
            _run_job(
                job,
                settings,
                shown,
                JobOptions(
                    restart,
                    incremental,
                    cast("OnDeleted", on_deleted),
                    wait,
                    guard,
                    planned,
                    undoable,
                ),
            )
        )
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise Interrupted(
            f"interrupted: the job's state in {settings.state_dir / job.name} is intact; "
            "run the same command again to resume"
        ) from None
    finally:
        shown.close()
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print_job(report, settings)
    if report.exit_code:
        raise click.exceptions.Exit(report.exit_code)


class StepProgress:
    """One progress bar per step, replaced as the job moves on."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.current: ImportProgress | None = None

    def on_step(self, step: Step, position: int, count: int) -> None:
        self.close()
        self.current = ImportProgress(self.settings, f"{position}/{count} {step.name}")

    def on_start(self, report: ImportReport, counts: dict[str, int]) -> None:
        if self.current is not None:
            self.current.on_start(report, counts)

    def on_total(self, total: int) -> None:
        if self.current is not None:
            self.current.on_total(total)

    def progress(self, stats: LoadStats, rows: int) -> None:
        if self.current is not None:
            self.current.progress(stats, rows)

    def close(self) -> None:
        if self.current is not None:
            self.current.bar.close()
            self.current = None


@dataclass(frozen=True)
class JobOptions:
    """The run's own flags, handed to :func:`pipeline.jobs.run_job`."""

    restart: bool
    incremental: bool
    on_deleted: OnDeleted
    wait: float
    guard: DeletionGuard
    plan: PlanOptions | None = None
    undoable: bool = False


async def _run_job(
    job: Job, settings: Settings, shown: StepProgress, options: JobOptions
) -> JobReport:
    from pipeline.jobs import JobHooks, run_job

    hooks = JobHooks(
        on_step=shown.on_step,
        progress=shown.progress,
        on_start=shown.on_start,
        on_total=shown.on_total,
    )
    async with open_workspace(settings) as client:
        return await stopping_on_sigterm(
            run_job(
                job,
                client,
                state_dir=settings.state_dir,
                batch_size=settings.batch_size,
                concurrency=settings.concurrency,
                on_deleted=options.on_deleted,
                restart=options.restart,
                incremental=options.incremental,
                hooks=hooks,
                wait=options.wait,
                guard=options.guard,
                plan_options=options.plan,
                undoable=options.undoable,
            )
        )


def _print_job(report: JobReport, settings: Settings) -> None:
    """Each step's summary on stdout; one line per step that needs a look on stderr."""
    for position, result in enumerate(report.steps, start=1):
        click.echo(f"step {position}/{len(report.steps)} {result.step.name}: {result.status}")
        if result.report is not None:
            print_import(result.report, where_text(result.step.mapping))
            if result.deletions is not None:
                click.echo(f"  {_deletions_line(result.deletions)}")
        if result.error is not None:
            click.echo(f"  {result.error.described(flag_advice)}")
        elif result.reason and result.report is None:
            click.echo(f"  {result.reason}")
    done = sum(1 for s in report.steps if s.status == "finished")
    click.echo(
        f"job {report.name}: {done} of {len(report.steps)} steps finished in "
        f"{report.seconds:.1f}s; report: {report.state_dir}/report.json"
    )
    for result in report.steps:
        where = f"run {report.name}: step {result.step.name}"
        if result.status != "finished" or result.error is not None:
            why = result.error.described(flag_advice) if result.error else result.reason
            notice(settings, f"{where} {result.status}: {why}")
        elif (
            result.report is not None
            and (result.report.rejected or result.report.values_dropped)
            and not result.report.already_done
        ):
            notice(settings, f"{where}: {needs_a_look(result.report)}")


def _deletions_line(deletions: DeletionReport) -> str:
    """One line on what delete propagation did in a step."""
    if deletions.refused is not None:
        return (
            f"deletions refused: {deletions.planned:,} of {deletions.live:,} synced records "
            "are gone from the source; nothing was deleted"
        )
    if not deletions.planned:
        return f"deletions: none ({deletions.live:,} synced records all still in the source)"
    gone = f", {deletions.already_gone:,} already gone" if deletions.already_gone else ""
    return f"deletions: {deletions.deleted:,} soft-deleted{gone}; ledger: {deletions.ledger}"


def _dry_run(job: Job, settings: Settings, guard: DeletionGuard, as_json: bool) -> None:
    """``run --dry-run``: every step validated, and what it would delete; zero writes."""
    from pipeline.jobs import preview_job

    async def go() -> list[StepPreview]:
        async with open_workspace(settings) as client:
            return await preview_job(job, client, state_dir=settings.state_dir, guard=guard)

    previews = run_async(go())
    if as_json:
        click.echo(json.dumps([_preview_dict(p) for p in previews], indent=2))
    else:
        for position, preview in enumerate(previews, start=1):
            click.echo(
                f"step {position}/{len(previews)} {preview.step.name}: {_preview_line(preview)}"
            )
            if preview.refusal is not None:
                click.echo(f"  a run would refuse these deletions: {preview.refusal}")
    worst = 0
    for preview in previews:
        if preview.error is not None:
            notice(
                settings,
                f"run {job.name}: step {preview.step.name}: {preview.error.described(flag_advice)}",
            )
            worst = max(worst, preview.error.exit_code)
    if worst:
        raise click.exceptions.Exit(worst)


def _preview_line(preview: StepPreview) -> str:
    if preview.error is not None or preview.validation is None:
        return "not checked (see below)"
    v = preview.validation
    line = f"{v.rows:,} rows, {v.valid:,} valid, {v.rejected:,} rejected"
    plan = preview.deletions
    if plan is not None:
        line += (
            f"; would soft-delete {plan.count:,} of {plan.live:,} synced records ({plan.share:.1%})"
        )
        if plan.count:
            line += f": {preview.ledger}"
    return line


def _preview_dict(preview: StepPreview) -> dict[str, Any]:
    plan = preview.deletions
    v = preview.validation
    return {
        "step": preview.step.name,
        "rows": v.rows if v else None,
        "valid": v.valid if v else None,
        "rejected": v.rejected if v else None,
        "would_delete": plan.count if plan else None,
        "synced": plan.live if plan else None,
        "refusal": preview.refusal,
        "ledger": str(preview.ledger) if preview.ledger else None,
        "error": preview.error.message if preview.error else None,
    }
