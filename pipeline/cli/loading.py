"""The commands that move rows: validate (a dry run) and import."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from pipeline.cli.base import (
    cli,
    fetch_schema,
    notice,
    on_deleted_option,
    progress_bar,
    rows,
    run_async,
    settings_from,
    stopping_on_sigterm,
    undoable_option,
    wait_option,
    workspace_options,
)
from pipeline.cli.planning import options_from, plan_options
from pipeline.errors import EXIT_REJECTED, Interrupted
from pipeline.workspace import open_workspace

if TYPE_CHECKING:
    from pipeline.config import Settings
    from pipeline.load import LoadStats, OnDeleted
    from pipeline.mapping import Mapping
    from pipeline.plan_policy import PlanOptions
    from pipeline.reports import ImportReport, ValidationReport


@cli.command()
@click.argument("mapping_file", metavar="MAPPING", type=click.Path(dir_okay=False))
@click.argument("source", required=False, type=click.Path(dir_okay=False))
@click.option("--offline", is_flag=True, help="Check against Twenty's standard objects only.")
@click.option(
    "--rejects",
    "rejects_file",
    type=click.Path(dir_okay=False),
    help="Where to write rejected rows [STATE_DIR/<mapping>/validate-rejects.csv].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@workspace_options
def validate(
    mapping_file: str,
    source: str | None,
    offline: bool,
    rejects_file: str | None,
    as_json: bool,
    **flags: Any,
) -> None:
    """Dry run: read and normalize the whole SOURCE with MAPPING; zero writes.

    Prints counts and the reasons rows would be rejected, and writes them to a
    rejects file. Exit 0 if every row is valid, 3 if some would be rejected, 2 for
    a mapping or configuration error.

    Example: twenty-pipeline validate mappings/people.yaml --sandbox
    """
    from pipeline.mapping import load_mapping
    from pipeline.runner import validate as run_validate
    from pipeline.runner import validate_rejects_path
    from pipeline.standard import standard_schema

    settings = settings_from(flags, need_workspace=not offline)
    mapping = load_mapping(mapping_file)
    workspace = standard_schema() if offline else run_async(fetch_schema(settings))
    rejects = (
        Path(rejects_file) if rejects_file else validate_rejects_path(settings.state_dir, mapping)
    )
    with progress_bar(settings, "validate") as bar:

        def progress(rows: int) -> None:
            bar.update(rows)

        report = run_validate(
            mapping, workspace, source=source, rejects_path=rejects, progress=progress
        )
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print_validation(report, offline)
    if report.rejected or report.values_dropped:
        where = f"; see {report.rejects_path}" if report.rejects_path else ""
        what = [f"{report.rejected:,} rows would be rejected"] if report.rejected else []
        if report.values_dropped:
            what.append(f"{report.values_dropped:,} values would be dropped")
        notice(settings, f"validate: {', '.join(what)}{where}")
        raise click.exceptions.Exit(EXIT_REJECTED)


def _how_read(report: ValidationReport | ImportReport) -> str:
    """ "(cp1252 (guessed; e.g. Zoë), semicolon-separated)" for a summary line."""
    delim = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}.get(
        report.delimiter or "", report.delimiter
    )
    how = ", ".join(x for x in (report.encoding, delim and f"{delim}-separated") if x)
    return f" ({how})" if how else ""


def _print_validation(report: ValidationReport, offline: bool) -> None:
    click.echo(f"{report.source}: {report.rows:,} rows read{_how_read(report)}")
    click.echo(f"  valid:    {report.valid:,}")
    if report.skipped:
        click.echo(
            f"  skipped:  {report.skipped:,} (left out by where:, or a note or task with "
            "nothing to create it from)"
        )
    click.echo(f"  rejected: {report.rejected:,}")
    if report.values_dropped:
        click.echo(f"  values dropped from valid rows: {report.values_dropped:,} (on_invalid)")
    if report.blank_rows:
        click.echo(f"  blank lines skipped: {report.blank_rows:,}")
    matches = (
        "upserts match on it"
        if report.key_is_unique
        else ("not unique in the workspace: record ids are derived from it")
    )
    click.echo(f"key: {', '.join(report.key)} ({matches})")
    for column, count in report.lookups.items():
        if count:
            click.echo(f"lookups to resolve at import: {count:,} values for {column}")
    if report.by_reason:
        click.echo("rejected (or dropped) by reason:")
        for reason, count in report.by_reason.most_common():
            click.echo(f"  {count:>8,}  {reason}")
        click.echo("first rejects:")
        for item in report.first_rejects:
            click.echo(f"  row {item['_row']}: {item['_reason']}")
    if report.rejects_path:
        click.echo(f"rejected rows written to {report.rejects_path}")
    if offline:
        click.echo("(offline: checked against Twenty's standard objects; custom fields unknown)")


@cli.command("import")
@click.argument("mapping_file", metavar="MAPPING", type=click.Path(dir_okay=False))
@click.argument("source", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--restart",
    is_flag=True,
    help="Abandon this mapping's unfinished run (or set an unreadable state store aside) "
    "and start over.",
)
@on_deleted_option
@click.option(
    "--incremental",
    is_flag=True,
    help="Send only the rows that changed since Twenty last confirmed them under this "
    "mapping (the others count as unchanged): for nightly syncs of a full export.",
)
@wait_option
@undoable_option
@click.option("--dry-run", is_flag=True, help="Only validate: read and normalize, zero writes.")
@plan_options
@workspace_options
def import_(
    mapping_file: str,
    source: str | None,
    restart: bool,
    on_deleted: str,
    incremental: bool,
    wait: float,
    undoable: bool,
    dry_run: bool,
    **flags: Any,
) -> None:
    """Upsert SOURCE into the workspace with MAPPING: batched, paced, resumable.

    Re-running the same command after an interruption resumes from the state store
    (STATE_DIR/<mapping>/state.sqlite) with no duplicate and no lost row. Writes
    success.csv, rejects.csv and report.json beside it (each run's are also kept in
    STATE_DIR/<mapping>/runs/). Exit 0 all loaded, 3 some rows
    rejected, 1 failed (re-run resumes), 2 usage or mapping error, 130 interrupted.

    Example: twenty-pipeline import mappings/people.yaml --sandbox
    """
    planned = options_from(flags)
    if dry_run:
        ctx = click.get_current_context()
        ctx.invoke(
            validate,
            mapping_file=mapping_file,
            source=source,
            offline=False,
            rejects_file=None,
            as_json=False,
            **flags,
        )
        return
    from pipeline.mapping import load_mapping
    from pipeline.runner import state_folder

    settings = settings_from(flags)
    mapping = load_mapping(mapping_file)
    folder = state_folder(settings.state_dir, mapping)
    if folder.name != mapping.name:
        notice(
            settings,
            f"state folder {folder} (another mapping named {mapping.name!r} uses "
            f"{settings.state_dir / mapping.name})",
        )
    with ImportProgress(settings, mapping.name) as shown:
        try:
            report = run_async(
                _run_import(
                    mapping,
                    settings,
                    shown,
                    source=source,
                    restart=restart,
                    on_deleted=cast("OnDeleted", on_deleted),
                    incremental=incremental,
                    wait=wait,
                    plan_options=planned,
                    undoable=undoable,
                )
            )
        except (KeyboardInterrupt, asyncio.CancelledError):
            again = "again without --restart" if restart else "again"
            raise Interrupted(
                f"interrupted: the state store in {folder} is intact; "
                f"run the same command {again} to resume"
            ) from None
    print_import(report, where_text(mapping))
    if report.exit_code == EXIT_REJECTED and not report.already_done:
        notice(settings, f"import {mapping.name}: {needs_a_look(report)}")
    if report.exit_code:
        raise click.exceptions.Exit(report.exit_code)


class ImportProgress:
    """The import's progress on stderr: a bar of rows, and a line when a run resumes."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.bar = progress_bar(settings, f"import {name}")

    def __enter__(self) -> ImportProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def on_start(self, report: ImportReport, counts: dict[str, int]) -> None:
        if report.resumed:
            done = sum(counts.values())
            notice(
                self.settings,
                f"resuming {self.name}: {done:,} rows already recorded "
                f"({counts.get('rejected', 0):,} rejected); sending the rest",
            )

    def on_total(self, total: int) -> None:
        self.bar.total = total
        self.bar.refresh()

    def progress(self, stats: LoadStats, rows: int) -> None:
        self.bar.update(rows)
        self.bar.set_postfix(
            loaded=stats.loaded,
            rejected=stats.rejected,
            rate_limited=stats.rate_limited,
            refresh=False,
        )


async def _run_import(
    mapping: Mapping,
    settings: Settings,
    shown: ImportProgress,
    *,
    source: str | None,
    restart: bool,
    on_deleted: OnDeleted,
    incremental: bool,
    wait: float,
    plan_options: PlanOptions | None = None,
    undoable: bool = False,
) -> ImportReport:
    """One import on one client."""
    from pipeline.runner import import_file

    async with open_workspace(settings) as client:
        return await stopping_on_sigterm(
            import_file(
                mapping,
                client,
                state_dir=settings.state_dir,
                source=source,
                batch_size=settings.batch_size,
                concurrency=settings.concurrency,
                on_deleted=on_deleted,
                restart=restart,
                incremental=incremental,
                wait=wait,
                progress=shown.progress,
                on_start=shown.on_start,
                on_total=shown.on_total,
                plan_options=plan_options,
                undoable=undoable,
            )
        )


def needs_a_look(report: ImportReport) -> str:
    """What the rejects file holds, in one line: rows rejected, values dropped."""
    parts = [f"{rows(report.rejected)} rejected"] if report.rejected else []
    if report.values_dropped:
        dropped = report.values_dropped
        parts.append(f"{dropped:,} value{'' if dropped == 1 else 's'} dropped")
    return f"{', '.join(parts)}; see {report.rejects_file}"


def where_text(mapping: Mapping) -> str:
    """The mapping's ``where:`` in words for a summary ("" without one)."""
    return " and ".join(c.describe() for c in mapping.conditions)


def print_import(report: ImportReport, where: str = "") -> None:
    """The import's figures; ``where`` (the mapping's conditions) explains the skipped rows."""
    if report.already_done:
        click.echo(
            f"{report.mapping}: this file was imported to the end by run {report.run_id}; "
            "nothing was sent, the figures below are that run's. --incremental sends what "
            "changed since and retries its rejected rows; --restart sends every row again"
        )
    click.echo(f"{report.source} -> {report.object}{_how_read(report)}")
    rows = [
        ("read", report.rows_read),
        ("created", report.created),
        ("updated", report.updated),
        ("restored", report.restored),
        ("unchanged", report.unchanged),
        ("skipped", report.skipped),
        ("rejected", report.rejected),
    ]
    for label, value in rows:
        if value or label in ("read", "rejected"):
            why = f" (where: {where})" if label == "skipped" and where else ""
            click.echo(f"  {label:<10}{value:>10,}{why}")
    if report.values_dropped:
        click.echo(
            f"  {report.values_dropped:,} values dropped from loaded rows (on_invalid: "
            "drop_value); each is a value_dropped line of rejects.csv"
        )
    if report.links_left_empty:
        click.echo(
            f"  {report.links_left_empty:,} loaded rows have a link left empty "
            "(on_missing: null; the note column of success.csv says which and why)"
        )
    if report.targets_linked or report.targets_unlinked:
        unlinked = (
            f", {report.targets_unlinked:,} links of earlier runs taken back"
            if report.targets_unlinked
            else ""
        )
        click.echo(f"  {report.targets_linked:,} targets linked{unlinked}")
    calls = report.calls
    click.echo(
        f"  calls: {calls.get('writes', 0):,} writes, {calls.get('reads', 0):,} reads, "
        f"{calls.get('retries', 0):,} retries, {calls.get('rate_limited', 0):,} "
        f"rate-limited, in {report.seconds:.1f}s"
    )
    if report.outcome_reads:
        click.echo(
            f"  +{report.outcome_reads:,} read calls to tell creates from updates (createdAt "
            "is mapped)"
        )
    if report.undo_reads:
        click.echo(f"  +{report.undo_reads:,} read calls for undo (--undoable)")
    click.echo(f"ledgers: {report.state_dir}/success.csv, rejects.csv, report.json")
