"""The command that reads records out: export."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from pipeline.cli.base import (
    cli,
    notice,
    progress_bar,
    run_async,
    settings_from,
    stopping_on_sigterm,
    workspace_options,
)
from pipeline.errors import Interrupted
from pipeline.workspace import open_workspace

if TYPE_CHECKING:
    from pipeline.config import Settings
    from pipeline.export import ExportOptions, ExportReport


@cli.command("export")
@click.argument("object_name", metavar="OBJECT")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="The file to write (.csv, .jsonl or .parquet).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl", "parquet"]), help="Default: from -o."
)
@click.option("--fields", help="Comma-separated field names (default: every readable field).")
@click.option(
    "--filter",
    "where",
    metavar="FILTER",
    help="Twenty's REST filter, e.g. 'city[eq]:Paris,createdAt[gte]:2026-01-01', checked "
    "against the workspace's fields before any record is read.",
)
@click.option(
    "--since",
    metavar="TIMESTAMP",
    help="Only records updated at or after TIMESTAMP (ISO 8601); each export prints the "
    "next --since.",
)
@click.option("--include-deleted", is_flag=True, help="Soft-deleted records too.")
@click.option(
    "--money",
    type=click.Choice(["micros", "units"]),
    default="micros",
    show_default=True,
    help="Amounts as stored (amount.amountMicros) or as decimal units (amount.amount).",
)
@click.option(
    "--mapping",
    "mapping_file",
    type=click.Path(dir_okay=False, exists=True),
    help="Write the columns of this import mapping, so that importing the file with it "
    "gives the same records.",
)
@click.option(
    "--with-labels",
    is_flag=True,
    help="Beside each relation's join column (companyId), the related record's unique "
    "label (company.domainName.primaryLinkUrl), for importing into another workspace.",
)
@click.option(
    "--restart", is_flag=True, help="Drop an unfinished export of this object and start over."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@workspace_options
def export(
    object_name: str,
    output: str,
    fmt: str | None,
    fields: str | None,
    where: str | None,
    since: str | None,
    include_deleted: bool,
    money: str,
    mapping_file: str | None,
    with_labels: bool,
    restart: bool,
    as_json: bool,
    **flags: Any,
) -> None:
    """Write every record of OBJECT (standard or custom) to a file, paced and resumable.

    Pages of 200 records in id order, through the same pacer as imports; after the
    first page, --concurrency ranges of ids are read side by side. Composite
    fields become one column per part (emails.primaryEmail, amount.amountMicros, ...),
    a relation its join column (companyId). A killed export, run again with the same
    options, goes on where it stopped; the file appears only when complete. Exit 0
    exported, 1 failed (re-run resumes), 2 usage error, 130 interrupted.

    Example: twenty-pipeline export person -o people.csv --sandbox
    """
    from pipeline.export import ExportOptions
    from pipeline.mapping import load_mapping

    settings = settings_from(flags)
    mapping = load_mapping(mapping_file) if mapping_file else None
    options = ExportOptions(
        fields=tuple(f.strip() for f in fields.split(",") if f.strip()) if fields else None,
        filter=where,
        since=since,
        include_deleted=include_deleted,
        money=cast("Any", money),
        fmt=fmt,
        with_labels=with_labels,
        mapping=mapping,
    )
    bar = progress_bar(settings, f"export {object_name}")
    bar.unit = " records"
    try:
        report = run_async(
            _run_export(settings, object_name, Path(output), options, restart, bar.update, bar)
        )
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise Interrupted(
            f"interrupted: the pages read so far are kept in {settings.state_dir / 'export'}; "
            "run the same command again to resume"
        ) from None
    finally:
        bar.close()
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    _print_export(report)
    if report.resumed_pages:
        notice(settings, f"export {report.object}: resumed after {report.resumed_pages} pages")


async def _run_export(
    settings: Settings,
    object_name: str,
    output: Path,
    options: ExportOptions,
    restart: bool,
    on_page: Any,
    bar: Any,
) -> ExportReport:
    from pipeline.export import export_object
    from pipeline.schema import load_schema

    def on_total(total: int | None) -> None:
        bar.total = total
        bar.refresh()

    async with open_workspace(settings) as client:
        schema = await load_schema(client)
        return await stopping_on_sigterm(
            export_object(
                client,
                schema,
                object_name,
                output,
                state_dir=settings.state_dir,
                options=options,
                restart=restart,
                readers=settings.concurrency,
                on_total=on_total,
                on_page=on_page,
            )
        )


def _print_export(report: ExportReport) -> None:
    calls = report.calls
    click.echo(f"{report.object} -> {report.output}")
    click.echo(f"  records  {report.records:>8,}")
    click.echo(f"  pages    {report.pages + report.resumed_pages:>8,}")
    click.echo(
        f"  calls: {calls.get('reads', 0)} reads, {calls.get('retries', 0)} retries, "
        f"{calls.get('rate_limited', 0)} rate-limited, in {report.seconds:.1f}s"
    )
    if report.unlabelled:
        click.echo(f"  no unique label to write for: {', '.join(report.unlabelled)}")
    if report.next_since:
        click.echo(f"next --since {report.next_since}")
