"""The command that copies one workspace's records into another: migrate."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipeline.cli.base import (
    cli,
    notice,
    progress_bar,
    run_async,
    setup_logging,
    stopping_on_sigterm,
)
from pipeline.config import build_settings
from pipeline.errors import ConfigError, Interrupted
from pipeline.workspace import open_workspace

if TYPE_CHECKING:
    from pipeline.config import Settings
    from pipeline.migrate import MigrationReport


def _side_settings(side: str, given: dict[str, Any], common: dict[str, Any]) -> Settings:
    """The settings of one side, its key from ``TWENTY_<SIDE>_API_KEY`` (or ``_FILE``)."""
    prefix = f"TWENTY_{side.upper()}_API_KEY"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TWENTY_API_KEY") and k not in ("TWENTY_API_URL", "TWENTY_SANDBOX")
    }
    for suffix in ("", "_FILE"):
        if f"{prefix}{suffix}" in os.environ:
            env[f"TWENTY_API_KEY{suffix}"] = os.environ[f"{prefix}{suffix}"]
    flags = {**common, **given}
    try:
        return build_settings(flags, env)
    except ConfigError as exc:
        raise ConfigError([_for_side(p, side, prefix) for p in exc.problems]) from None


def _for_side(problem: str, side: str, prefix: str) -> str:
    problem = problem.replace("TWENTY_API_URL (or --api-url)", f"--{side}-url")
    problem = problem.replace("--sandbox (TWENTY_SANDBOX=1)", f"--{side}-sandbox PATH")
    problem = problem.replace("--api-url", f"--{side}-url").replace("--rate", f"--{side}-rate")
    return problem.replace("TWENTY_API_KEY", prefix)


@cli.command("migrate")
@click.option("--from-url", help="The source workspace's base URL (key: TWENTY_FROM_API_KEY).")
@click.option("--to-url", help="The target workspace's base URL (key: TWENTY_TO_API_KEY).")
@click.option("--from-sandbox", type=click.Path(dir_okay=False), help="A local source sandbox.")
@click.option("--to-sandbox", type=click.Path(dir_okay=False), help="A local target sandbox.")
@click.option("--from-rate", metavar="CALLS/SECONDS", help="The source's rate limit (100/60).")
@click.option("--to-rate", metavar="CALLS/SECONDS", help="The target's rate limit (100/60).")
@click.option("--objects", help="Comma-separated objects (default: the CRM's and custom ones).")
@click.option("--dry-run", is_flag=True, help="Print the plan only; read and write nothing else.")
@click.option("--batch-size", help="Records per write call, 1-200 [default 60].")
@click.option("--state-dir", help="Folder for the resume state [.twenty-pipeline].")
@click.option("--quiet", "-q", is_flag=True, default=None, help="No progress lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def migrate(
    from_url: str | None,
    to_url: str | None,
    from_sandbox: str | None,
    to_sandbox: str | None,
    from_rate: str | None,
    to_rate: str | None,
    objects: str | None,
    dry_run: bool,
    batch_size: str | None,
    state_dir: str | None,
    quiet: bool | None,
    as_json: bool,
) -> None:
    """Copy the records of one workspace into another, ids and relations kept.

    Objects go in the order their relations need, each as upserts on id, so a record
    keeps its id and every relation still points at the right record; workspace
    members are matched by e-mail. Custom objects and fields the target lacks are
    created first (the plan lists them; --dry-run prints only the plan). Killed, the same command
    resumes. Ends with a count per object, source beside target. Exit 0 all copied, 1
    failed or counts short (re-run resumes), 2 usage error or data model missing.

    Example: twenty-pipeline migrate --from-sandbox old.sqlite --to-sandbox new.sqlite
    """
    common = {"batch_size": batch_size, "state_dir": state_dir, "quiet": quiet}
    sides: dict[str, Settings] = {}
    problems: list[str] = []
    for side, given in (
        ("from", {"api_url": from_url, "sandbox": from_sandbox, "rate": from_rate}),
        ("to", {"api_url": to_url, "sandbox": to_sandbox, "rate": to_rate}),
    ):
        try:
            sides[side] = _side_settings(side, given, common)
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)  # both sides' problems at once, nothing sent
    source, target = sides["from"], sides["to"]
    setup_logging(target)
    names = [n.strip() for n in objects.split(",") if n.strip()] if objects else None
    ends = [s.workspace.url or str(s.workspace.sandbox) for s in (source, target)]
    pair = "|".join(ends)
    folder = target.state_dir / "migrate" / hashlib.sha256(pair.encode()).hexdigest()[:12]
    try:
        report = run_async(_run(source, target, names, dry_run, folder))
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise Interrupted(
            f"interrupted: the progress is kept in {folder}; run the same command again to resume"
        ) from None
    if report is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print(report)
    if not report.complete:
        notice(target, "migrate: some objects hold fewer records in the target; run again")
        raise click.exceptions.Exit(1)
    for cursor in (folder / "migrate").glob("*.json"):
        cursor.unlink()  # finished: the next migration copies everything again


async def _run(
    source: Settings, target: Settings, names: list[str] | None, dry_run: bool, folder: Path
) -> MigrationReport | None:
    from pipeline.migrate import (
        MigrationReport,
        copy_object,
        member_map,
        objects_to_copy,
        plan_migration,
    )
    from pipeline.migrate_schema import apply_changes, schema_changes
    from pipeline.schema import load_schema

    async with contextlib.AsyncExitStack() as opened:
        reading = await opened.enter_async_context(open_workspace(source))
        # one workspace on both sides (same address, same key): one bucket, so one client
        # and one pacer for the reads and the writes
        writing = (
            reading
            if _one_workspace(source, target)
            else await opened.enter_async_context(open_workspace(target))
        )
        source_model, target_model = await load_schema(reading), await load_schema(writing)
        changes = schema_changes(source_model, target_model, objects_to_copy(source_model, names))
        for line in changes.lines():
            click.echo(line)
        if changes.problems:
            raise ConfigError(changes.problems)  # nothing created, nothing written
        if dry_run:
            click.echo("dry run: nothing created, nothing copied")
            return None
        target_model = await apply_changes(writing, changes, target_model)
        plan = plan_migration(source_model, target_model, names)
        for line in plan.lines():
            click.echo(line)
        if plan.missing:
            raise ConfigError(plan.missing)
        members = await member_map(reading, writing)
        report = MigrationReport()
        for step in plan.objects:
            bar = progress_bar(target, f"migrate {step.source.name_singular}")
            bar.unit = " records"
            try:
                counted = await stopping_on_sigterm(
                    copy_object(
                        reading,
                        writing,
                        step,
                        members,
                        folder,
                        batch_size=target.batch_size,
                        on_rows=_counting(bar),
                        on_total=_sized(bar),
                    )
                )
            finally:
                bar.close()
            report.objects.append(counted)
            if not target.quiet:
                notice(target, f"migrate: {counted.object}: {counted.written:,} records copied")
        report.calls = {"source": reading.stats.as_dict(), "target": writing.stats.as_dict()}
    return report


def _one_workspace(source: Settings, target: Settings) -> bool:
    """Both sides are one workspace: the same sandbox, or the same address and key."""
    a, b = source.workspace, target.workspace
    if a.sandbox is not None or b.sandbox is not None:
        return a.sandbox is not None and a.sandbox == b.sandbox
    keys = [w.key.reveal() if w.key is not None else None for w in (a, b)]
    return a.url == b.url and keys[0] == keys[1]


def _sized(bar: Any) -> Callable[[int], None]:
    """A callback that gives ``bar`` its total (then tqdm shows a rate and an ETA)."""

    def total(records: int) -> None:
        bar.total = records
        bar.refresh()

    return total


def _counting(bar: Any) -> Callable[[int], None]:
    """A progress callback that moves ``bar``."""

    def moved(rows: int) -> None:
        bar.update(rows)

    return moved


def _print(report: MigrationReport) -> None:
    click.echo(f"{'object':<16} {'copied':>8} {'source':>8} {'target':>8}")
    for o in report.objects:
        mark = ""
        if (o.target_count or 0) < (o.source_count or 0):
            mark = "  (fewer in the target)"
        elif (o.target_count or 0) > (o.source_count or 0):
            mark = "  (the target held others already)"
        source, target = o.source_count or 0, o.target_count or 0
        click.echo(f"{o.object:<16} {o.written:>8,} {source:>8,} {target:>8,}{mark}")
        if o.members_unmatched:
            click.echo(
                f"  {o.members_unmatched} member links left empty (no member with that e-mail)"
            )
    for side, calls in report.calls.items():
        click.echo(
            f"{side} calls: {calls.get('reads', 0)} reads, {calls.get('writes', 0)} writes, "
            f"{calls.get('retries', 0)} retries, {calls.get('rate_limited', 0)} rate-limited"
        )
