"""``twenty-pipeline undo``: a plan, then the run's writes taken back (see pipeline.undo)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click
import yaml
from tqdm import tqdm

from pipeline.cli.base import (
    cli,
    notice,
    run_async,
    settings_from,
    stopping_on_sigterm,
    workspace_options,
)
from pipeline.config import Settings
from pipeline.errors import EXIT_REJECTED, ConfigError, Interrupted, StateError
from pipeline.lock import state_lock
from pipeline.sinks import SinkError, open_sink
from pipeline.state import STORE_NAME, StateStore
from pipeline.undo import UndoReport, carry_out, choose_run, plan_undo
from pipeline.workspace import open_workspace

WORDS = {
    "delete": "delete (created by the run)",
    "delete_again": "delete again (restored by the run)",
    "restore_values": "put earlier values back (updated)",
    "not_undoable": "updated, no before-image",
}
STATUS_WORDS = {
    "planned": "to do",
    "sent": "to do (sent, unconfirmed)",
    "done": "done",
    "gone": "already deleted",
    "changed": "left alone: changed since the run",
    "kept": "not undoable",
}
LEDGER_COLUMNS = ["object", "id", "action", "outcome", "detail"]


@cli.command()
@click.argument("name", metavar="MAPPING|JOB|NAME")
@click.option("--run", "run_id", type=int, help="The run to undo (default: the last one).")
@click.option("--dry-run", is_flag=True, help="Print the plan and write undo-plan.csv; no write.")
@click.option(
    "--force",
    is_flag=True,
    help="Also undo records changed in the workspace since the run wrote them.",
)
@workspace_options
def undo(name: str, run_id: int | None, dry_run: bool, force: bool, **flags: Any) -> None:
    """Take the last (or --run) run of a mapping or job back out of the workspace.

    Records the run created are soft-deleted, records it restored are deleted again,
    and records it updated get their earlier values back when the run was made with
    --undoable. A record changed since the run wrote it is left alone unless --force.
    Paced, checkpointed (a killed undo resumes), and recorded in undo.csv. Exit 0 all
    undone (or undone already), 3 some records left alone or not undoable, 2 no such
    mapping, job or run.

    Example: twenty-pipeline undo mappings/people.yaml --sandbox --dry-run
    """
    settings = settings_from(flags)
    folders, is_job = _folders(name, settings.state_dir)
    if run_id is not None and is_job:
        steps = ", ".join(str(f.relative_to(settings.state_dir)) for f in folders)
        raise ConfigError(
            f"--run names a run of one mapping, and {name} is a job; undo one step with "
            f"its state folder name ({steps}) and --run"
        )
    try:
        reports = run_async(_undo_all(folders, settings, run_id, dry_run, force))
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise Interrupted(
            "interrupted: the undo's plan and progress are in the state store; run the same "
            "command again to finish it"
        ) from None
    left = sum(r.left_alone + r.not_undoable for r in reports)
    if left and not dry_run:
        notice(settings, f"undo {name}: {left:,} records not undone; see undo.csv")
        raise click.exceptions.Exit(EXIT_REJECTED)


def _folders(name: str, state_dir: Path) -> tuple[list[Path], bool]:
    """The state folders to undo (the step that ran last first), and whether it is a job."""
    path = Path(name)
    is_job = False
    if path.is_file():
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read it: {exc}") from None
        if isinstance(raw, dict) and "steps" in raw:
            from pipeline.jobs import load_job

            job = load_job(path)
            folders = [state_dir / job.name / s.name for s in job.steps]
            is_job = True
        else:
            from pipeline.mapping import load_mapping
            from pipeline.runner import state_folder

            folders = [state_folder(state_dir, load_mapping(path))]
    elif (state_dir / name / STORE_NAME).exists():
        folders = [state_dir / name]
    else:
        folders = sorted(p.parent for p in (state_dir / name).glob(f"*/{STORE_NAME}"))
        is_job = True
    folders = [f for f in folders if (f / STORE_NAME).exists()]
    if not folders:
        raise ConfigError(
            f"{name}: no state store under {state_dir}: nothing was imported with it "
            "(`twenty-pipeline status` lists what was)"
        )
    return sorted(folders, key=_last_started, reverse=True), is_job


def _last_started(folder: Path) -> float:
    with StateStore(folder / STORE_NAME, read_only=True) as store:
        last = store.last_run()
        return last.started if last else 0.0


async def _undo_all(
    folders: list[Path], settings: Settings, run_id: int | None, dry_run: bool, force: bool
) -> list[UndoReport]:
    from pipeline.schema import load_schema

    reports: list[UndoReport] = []
    async with open_workspace(settings) as client:
        schema = await load_schema(client)
        for position, folder in enumerate(folders):
            if reports and reports[-1].left_alone and not force and not dry_run:
                held = reports[-1]
                rest = ", ".join(f.name for f in folders[position:])
                click.echo(
                    f"not undone: {rest}. {held.name} kept {held.left_alone:,} records changed "
                    "since the run, which may link to records of the steps before it: undo "
                    "those steps one by one, or run again with --force"
                )
                break
            with (
                state_lock(folder, f"another command on {folder.name}"),
                StateStore(folder / STORE_NAME) as store,
            ):
                run = choose_run(store, run_id)
                report = await plan_undo(store, client, schema, run, name=folder.name, force=force)
                _print_plan(report, dry_run)
                if dry_run:
                    _ledger(folder / "undo-plan.csv", report)
                    click.echo(f"plan written to {folder / 'undo-plan.csv'}; nothing was sent")
                elif not report.already_undone or force:
                    await _carry_out(store, client, schema, report, settings)
                    _write_ledgers(folder, report)
                    _print_done(report, folder)
            reports.append(report)
    return reports


async def _carry_out(
    store: StateStore, client: Any, schema: Any, report: UndoReport, settings: Settings
) -> None:
    todo = sum(1 for a in report.actions if a.status in ("planned", "sent"))
    with tqdm(
        total=todo,
        unit="rec",
        desc=f"undo {report.name}",
        disable=settings.quiet or settings.log_format == "json" or None,
        leave=False,
    ) as bar:
        await stopping_on_sigterm(
            carry_out(
                store,
                client,
                schema,
                report,
                batch_size=settings.batch_size,
                progress=bar.update,
            )
        )


def _print_plan(report: UndoReport, dry_run: bool) -> None:
    head = "plan: " if dry_run else ""
    click.echo(f"{head}undo of run {report.run} of {report.name} ({report.object}):")
    if report.already_undone and not any(a.status in ("planned", "sent") for a in report.actions):
        if report.left_alone:
            click.echo(
                f"  this run was undone but for {report.left_alone:,} records changed since it "
                "wrote them (listed in undo.csv); --force undoes them too"
            )
        else:
            click.echo("  this run was undone already; nothing to do")
        return
    for (obj, action, status), count in sorted(report.counts().items()):
        click.echo(f"  {obj:<16}{WORDS[action]:<38}{STATUS_WORDS[status]:<36}{count:>8,}")
    if not report.actions:
        click.echo("  the run wrote no record")
    changed = [a for a in report.actions if a.status == "changed"]
    for kept in changed[:5]:
        click.echo(f"  left alone: {kept.object} {kept.record_id}: {kept.detail}")
    if len(changed) > 5:
        click.echo(f"  ... and {len(changed) - 5:,} more left alone (all in the ledger)")
    if report.interrupted:
        click.echo(
            "  this run was interrupted: the rows it never sent are not in the workspace; "
            "undo takes back what Twenty confirmed"
        )
    if report.unconfirmed_batches:
        click.echo(
            f"  {report.unconfirmed_batches:,} batches were sent but never confirmed: records "
            "they may have written are unknown here (resume the import first to know them)"
        )
    if report.deletions:
        click.echo(
            f"  {report.deletions:,} records this run soft-deleted (delete_missing) are not "
            "restored by undo"
        )
    if report.clock_guard:
        click.echo(
            "  this run predates the write times undo keeps: a record counts as changed "
            "since when its updatedAt is after the run's end by this machine's clock"
        )
    if report.updated_links:
        click.echo(
            f"  {report.updated_links:,} links of records the run updated are not taken back"
        )
    click.echo(f"  reads: {report.reads:,}")


def _print_done(report: UndoReport, folder: Path) -> None:
    if not report.done_now:
        click.echo(f"nothing left to undo; ledger {folder / 'undo.csv'}")
    else:
        click.echo(
            f"undone: {report.done_now:,} records in {report.writes:,} write calls; "
            f"ledger {folder / 'undo.csv'}"
        )
    if report.left_alone:
        click.echo(
            f"  {report.left_alone:,} records changed since the run were left alone "
            "(listed in undo.csv); --force undoes them too"
        )


def _write_ledgers(folder: Path, report: UndoReport) -> None:
    """undo.csv and undo-report.json, kept per run and published as the latest."""
    from pipeline.ledgers import publish, run_folder

    kept = run_folder(folder, report.run)
    kept.mkdir(parents=True, exist_ok=True)
    _ledger(kept / "undo.csv", report)
    (kept / "undo-report.json").write_text(json.dumps(report.as_dict(), indent=2), encoding="utf-8")
    for name in ("undo.csv", "undo-report.json"):
        publish(kept / name, folder / name)


def _ledger(path: Path, report: UndoReport) -> None:
    rows = ((a.object, a.record_id, a.action, a.status, a.detail or "") for a in report.actions)
    try:
        with open_sink(path, "csv", columns=LEDGER_COLUMNS, label="undo ledger") as sink:
            sink.write_rows(rows)
    except (OSError, SinkError) as exc:
        raise StateError(f"the undo ledger {path} could not be written: {exc}") from None
