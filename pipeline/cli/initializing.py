"""``twenty-pipeline init --from CRM EXPORT_DIR``: a ready job for another CRM's export."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli.base import cli
from pipeline.presets import PRESETS, write_job


@cli.command("init")
@click.option(
    "--from",
    "crm",
    required=True,
    type=click.Choice(sorted(PRESETS)),
    help="The CRM the export folder comes from.",
)
@click.argument("export_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the job and its mappings to [./<crm>-migration].",
)
@click.option("--force", is_flag=True, help="Overwrite the files of an earlier init.")
def init(crm: str, export_dir: Path, output: Path | None, force: bool) -> None:
    """Write a ready job for EXPORT_DIR, the export folder of another CRM.

    Recognises the CRM's standard export files by their headers and writes one commented
    mapping per file (companies, people, opportunities, notes) and a job that runs them
    in order. Next: `twenty-pipeline schema apply` on the job, then `plan`, then `run`.

    Example: twenty-pipeline init --from hubspot ~/Downloads/hubspot-export
    """
    preset = PRESETS[crm]
    out = output or Path(f"{crm}-migration")
    result = write_job(preset, export_dir, out, force=force)
    for mapping in result.mappings:
        click.echo(f"wrote {mapping}")
    click.echo(f"wrote {result.job}")
    for path in result.unrecognised:
        click.echo(f"not a {preset.label} export file, left out: {path.name}")
    for notice in result.notices:
        click.echo(f"CHECK: {notice}")
    click.echo(
        f"next: twenty-pipeline schema apply {result.job}, then plan {result.job}, "
        f"then run {result.job}"
    )
