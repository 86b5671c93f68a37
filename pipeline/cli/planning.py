"""``plan``: what an import would do, before any write; and the import options acting on it."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import yaml

from pipeline.cli.base import cli, notice, run_async, settings_from, workspace_options
from pipeline.errors import EXIT_REJECTED
from pipeline.workspace import open_workspace

if TYPE_CHECKING:
    from pipeline.config import Settings
    from pipeline.jobs import Job
    from pipeline.mapping import Mapping
    from pipeline.plan_policy import PlanOptions
    from pipeline.planning import PlanReport

F = TypeVar("F", bound=Callable[..., Any])
TOP_DUPLICATES = 5
TOP_FIELDS = 8


def plan_options(func: F) -> F:
    """``--only-create``, ``--keep-existing``, ``--on-possible-duplicate`` (import, run)."""
    options = [
        click.option(
            "--only-create",
            is_flag=True,
            help="Never update an existing record: rows whose key matches one are skipped.",
        ),
        click.option(
            "--keep-existing",
            metavar="FIELD,...",
            help="Do not overwrite a non-empty value of these fields (e.g. jobTitle,city).",
        ),
        click.option(
            "--on-possible-duplicate",
            type=click.Choice(["skip", "create", "reject"]),
            help="A new row that looks like an existing record (Twenty's duplicate "
            "criteria): skip it, create it anyway, or reject it.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def options_from(flags: dict[str, Any]) -> PlanOptions:
    """The plan options of a command's flags (taken out of ``flags``)."""
    from pipeline.plan_policy import PlanOptions, parse_keep_existing

    return PlanOptions(
        only_create=bool(flags.pop("only_create", False)),
        keep_existing=parse_keep_existing(flags.pop("keep_existing", None)),
        on_possible_duplicate=flags.pop("on_possible_duplicate", None),
    )


def _is_job(path: str) -> bool:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False  # the mapping loader says what is wrong, in one line
    return isinstance(raw, dict) and "steps" in raw and "object" not in raw


@cli.command()
@click.argument("target", metavar="MAPPING|JOB", type=click.Path(dir_okay=False))
@click.argument("source", required=False, type=click.Path(dir_okay=False))
@click.option("--yes", "-y", is_flag=True, help="Do not ask before reading the workspace.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@workspace_options
def plan(target: str, source: str | None, yes: bool, as_json: bool, **flags: Any) -> None:
    """Preview an import: what it would create, update, leave, restore and possibly
    duplicate; zero writes.

    Reads and normalizes SOURCE as validate does, then reads the workspace records
    the rows' keys match (200 keys a call, paced) and asks Twenty which new rows
    look like records it holds. Writes plan.csv (every row; one line per field
    changed, value now and after) and plan.json beside the ledgers. Exit 0, 3 if rows
    would be rejected, 2 for a mapping or configuration error.

    Example: twenty-pipeline plan mappings/people.yaml --sandbox
    """
    settings = settings_from(flags)
    reports = run_async(_plan_all(settings, target, source, ask=not yes and sys.stdin.isatty()))
    done = [r for r in reports if r is not None]
    if len(done) < len(reports):
        click.echo("plan: stopped before reading the workspace (nothing read, nothing written)")
        return
    if as_json:
        out: Any = done[0].as_dict() if len(done) == 1 else [r.as_dict() for r in done]
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        for report in done:
            print_plan(report)
    rejected = sum(r.rejected for r in done)
    if rejected:
        notice(settings, f"plan: {rejected:,} rows would be rejected; see plan.csv")
        raise click.exceptions.Exit(EXIT_REJECTED)


Steps = list[tuple[str, "Mapping", str | None, Path | None]]


def _steps(target: str, source: str | None) -> tuple[Steps, Job | None]:
    """(name, mapping, source, folder under STATE_DIR or None) for a mapping or a job."""
    if not _is_job(target):
        from pipeline.mapping import load_mapping

        mapping = load_mapping(target)
        return [(mapping.name, mapping, source, None)], None
    from pipeline.errors import InputError
    from pipeline.jobs import load_job

    if source is not None:
        raise InputError(f"{target}: a job names its sources; SOURCE is for a mapping")
    job = load_job(target)
    steps: Steps = [
        (s.name, s.mapping, str(s.source) if s.source else None, Path(job.name) / s.name)
        for s in job.steps
    ]
    return steps, job


async def _plan_all(
    settings: Settings, target: str, source: str | None, *, ask: bool
) -> list[PlanReport | None]:
    from pipeline.jobs import step_order
    from pipeline.planning import run_plan
    from pipeline.schema import load_schema

    steps, job = _steps(target, source)
    out: list[PlanReport | None] = []
    async with open_workspace(settings) as client:
        schema = await load_schema(client)
        if job is not None:  # in the order its lookups need
            order = [s.name for s in step_order(job, schema)[0]]
            steps = sorted(steps, key=lambda s: order.index(s[0]))
        for name, mapping, step_source, folder in steps:

            def confirm(rows: int, calls: int, duplicates: bool, name: str = name) -> bool:
                seconds = calls * settings.rate.interval
                more = ", one more per 60 new rows for possible duplicates" if duplicates else ""
                notice(
                    settings,
                    f"plan {name}: {rows:,} rows; at least {calls:,} read calls "
                    f"(about {seconds:.0f}s at {settings.rate}){more}; no write call",
                )
                return not ask or click.confirm("continue?", default=True, err=True)

            report = await run_plan(
                mapping,
                client,
                schema,
                state_dir=settings.state_dir,
                source=step_source,
                confirm=confirm,
                folder=settings.state_dir / folder if folder else None,
            )
            out.append(report)
            if report is None:
                break
    return out


def print_plan(report: PlanReport) -> None:
    """The plan on a terminal: counts per outcome, top fields, first duplicates."""
    click.echo(f"{report.source} -> {report.object}: {report.rows:,} rows")
    n = report.possible_duplicates
    dup = f"  ({n:,} possible duplicate{'s' if n != 1 else ''})" if n else ""
    for sign, label, value, extra in (
        ("+", "create", report.create, dup),
        ("~", "update", report.update, ""),
        ("=", "unchanged", report.unchanged, ""),
        ("↺", "restore", report.restore, ""),
        ("-", "skipped", report.skipped, ""),
        ("!", "rejected", report.rejected, ""),
    ):
        if value or label in ("create", "update", "unchanged", "rejected"):
            click.echo(f"  {sign} {value:>8,} {label}{extra}")
    if report.fields:
        click.echo("fields changed:")
        for name, count in report.fields.most_common(TOP_FIELDS):
            click.echo(f"  {count:>10,}  {name}")
        if len(report.fields) > TOP_FIELDS:
            click.echo(f"  ... and {len(report.fields) - TOP_FIELDS} more fields (plan.csv)")
    if report.duplicates:
        shown = report.duplicates[:TOP_DUPLICATES]
        click.echo(f"possible duplicates (first {len(shown)} of {len(report.duplicates)}):")
        for d in shown:
            click.echo(
                f"  row {d['row']} {d['key']}: like {report.object} {d['record_id']}, {d['why']}"
            )
    click.echo(f"  calls: {report.read_calls:,} reads, 0 writes, in {report.seconds:.1f}s")
    click.echo(f"plan: {report.plan_csv}, plan.json")
