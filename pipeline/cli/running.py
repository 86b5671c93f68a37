"""`run JOB`: several mappings in dependency order, step by step, resumable."""

from __future__ import annotations

import asyncio
import json
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
    wait_option,
    workspace_options,
)
from pipeline.cli.loading import ImportProgress, print_import
from pipeline.errors import Interrupted
from pipeline.workspace import open_workspace

if TYPE_CHECKING:
    from pipeline.config import Settings
    from pipeline.jobs import Job, JobReport, Step
    from pipeline.load import LoadStats, OnDeleted
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
@click.option("--json", "as_json", is_flag=True, help="Print the job report as JSON.")
@workspace_options
def run(
    job_file: str,
    restart: bool,
    incremental: bool,
    on_deleted: str,
    wait: float,
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
    from pipeline.jobs import load_job

    settings = settings_from(flags)
    job = load_job(job_file)
    shown = StepProgress(settings)
    try:
        report = run_async(
            _run_job(
                job, settings, shown, restart, incremental, cast("OnDeleted", on_deleted), wait
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


async def _run_job(
    job: Job,
    settings: Settings,
    shown: StepProgress,
    restart: bool,
    incremental: bool,
    on_deleted: OnDeleted,
    wait: float,
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
                on_deleted=on_deleted,
                restart=restart,
                incremental=incremental,
                hooks=hooks,
                wait=wait,
            )
        )


def _print_job(report: JobReport, settings: Settings) -> None:
    """Each step's summary on stdout; one line per step that needs a look on stderr."""
    for position, result in enumerate(report.steps, start=1):
        click.echo(f"step {position}/{len(report.steps)} {result.step.name}: {result.status}")
        if result.report is not None:
            print_import(result.report)
        elif result.error is not None:
            click.echo(f"  {result.error.described(flag_advice)}")
        elif result.reason:
            click.echo(f"  {result.reason}")
    done = sum(1 for s in report.steps if s.status == "finished")
    click.echo(
        f"job {report.name}: {done} of {len(report.steps)} steps finished in "
        f"{report.seconds:.1f}s; report: {report.state_dir}/report.json"
    )
    for result in report.steps:
        where = f"run {report.name}: step {result.step.name}"
        if result.status != "finished":
            why = result.error.described(flag_advice) if result.error else result.reason
            notice(settings, f"{where} {result.status}: {why}")
        elif result.report is not None and result.report.rejected:
            notice(
                settings,
                f"{where}: {result.report.rejected:,} rows rejected; "
                f"see {result.report.rejects_file}",
            )
