"""Commands that look at a workspace or the state folder: schema, status, init-mapping."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from pipeline.cli.base import (
    cli,
    fetch_schema,
    run_async,
    settings_from,
    table,
    workspace_options,
)
from pipeline.config import build_settings
from pipeline.errors import ConfigError
from pipeline.schema import describe_field, load_schema, object_to_json
from pipeline.workspace import open_workspace


@cli.command()
@click.argument("object_name", required=False, metavar="[OBJECT | apply JOB|MAPPING]")
@click.argument("apply_target", required=False, metavar="", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--all", "show_all", is_flag=True, help="Include system objects and fields.")
@click.option("--dry-run", is_flag=True, help="With apply: print the plan, change nothing.")
@workspace_options
def schema(
    object_name: str | None,
    apply_target: str | None,
    as_json: bool,
    show_all: bool,
    dry_run: bool,
    **flags: Any,
) -> None:
    """Show the workspace's objects, or one OBJECT's fields; or apply what a job needs.

    For each field: type, nullability, uniqueness, select options, relation target
    and join column. `schema apply JOB|MAPPING` creates the custom fields the mappings
    declare with create: and adds the select options their values: tables name (a plan
    first; --dry-run prints only the plan).

    Example: twenty-pipeline schema person
    """
    if object_name == "apply" or apply_target is not None:
        if object_name != "apply" or apply_target is None:
            raise click.UsageError("write `schema apply JOB|MAPPING` (or `schema OBJECT`)")
        _apply(apply_target, dry_run, flags)
        return
    if dry_run:
        raise click.UsageError("--dry-run goes with `schema apply JOB|MAPPING`")
    workspace = run_async(fetch_schema(settings_from(flags)))
    if object_name is None:
        objects = [o for o in workspace.objects if o.is_active and (show_all or not o.is_system)]
        if as_json:
            click.echo(json.dumps([object_to_json(o) for o in objects], indent=2))
            return
        rows = [
            (
                o.name_singular,
                o.name_plural,
                o.label_singular,
                "custom" if o.is_custom else ("system" if o.is_system else "standard"),
                str(sum(1 for f in o.fields.values() if f.is_active)),
                ", ".join(o.unique_paths),
            )
            for o in objects
        ]
        table(("OBJECT", "PLURAL", "LABEL", "KIND", "FIELDS", "UNIQUE KEYS"), rows)
        return
    obj = workspace.object(object_name)
    if obj is None:
        hint = workspace.suggest_object(object_name)
        did_you_mean = f" (did you mean {' or '.join(hint)}?)" if hint else ""
        raise ConfigError(
            f"no object {object_name!r} in this workspace{did_you_mean}; "
            "`twenty-pipeline schema` lists them"
        )
    if as_json:
        click.echo(json.dumps(object_to_json(obj), indent=2))
        return
    click.echo(
        f"{obj.name_singular} ({obj.name_plural}): {obj.label_singular}"
        f" - unique keys: {', '.join(obj.unique_paths)}"
    )
    fields = [f for f in obj.fields.values() if f.is_active and (show_all or not f.is_system)]
    rows = [
        (
            f.name,
            f.type + (f" {f.relation.type}" if f.relation else ""),
            "yes" if f.is_nullable else "no",
            "unique" if f.is_unique else "",
            "" if f.writable else "read-only",
            describe_field(f),
        )
        for f in fields
    ]
    table(("FIELD", "TYPE", "NULL", "UNIQUE", "WRITE", "DETAILS"), rows)


@cli.command()
@click.argument("name", required=False)
@click.option("--state-dir", help="State folder [TWENTY_STATE_DIR; .twenty-pipeline].")
def status(name: str | None, state_dir: str | None) -> None:
    """Show what a mapping's state holds: its last run, batches and rows by outcome.

    NAME is a mapping's name (its file name without .yaml); without it, every
    state store in the state folder is listed.
    """
    from pipeline.status import store_statuses

    settings = build_settings({"state_dir": state_dir}, os.environ, need_workspace=False)
    for item in store_statuses(settings.state_dir, name):
        run = item.last_run
        if run is None:
            click.echo(f"{item.name}: no run yet")
            continue
        state = {
            "finished": "complete",
            "undone": "undone (`undo`)",
            "partly_undone": "partly undone (records changed since were kept; `undo --force`)",
        }.get(run.status, "incomplete")
        click.echo(f"{item.name}: {state} - {run.source} -> {run.object}")
        click.echo(
            f"  runs: {item.runs:,} (last: #{run.id}, {run.attempts:,} attempt(s)); "
            f"keys confirmed across runs: {item.keys:,}"
        )
        line = f"  batches: {item.batches.get('done', 0):,} done"
        if item.unconfirmed_batches:
            line += f", {item.unconfirmed_batches:,} sent but unconfirmed (re-sent on resume)"
        click.echo(line)
        parts = ", ".join(f"{v:,} {k}" for k, v in sorted(item.rows.items())) or "none yet"
        click.echo(f"  rows: {parts}")


@cli.command("init-mapping")
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("--object", "object_name", required=True, help="Target object, e.g. person.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write the draft here instead of printing it.",
)
@click.option("--offline", is_flag=True, help="Use Twenty's standard objects only.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@workspace_options
def init_mapping(
    source: str, object_name: str, output: str | None, offline: bool, force: bool, **flags: Any
) -> None:
    """Draft a mapping for SOURCE from its headers, a sample and the workspace fields.

    Example: twenty-pipeline init-mapping contacts.csv --object person -o people.yaml
    """
    from pipeline.draft import draft_mapping
    from pipeline.standard import standard_schema

    settings = settings_from(flags, need_workspace=not offline)
    workspace = standard_schema() if offline else run_async(fetch_schema(settings))
    obj = workspace.object(object_name)
    if obj is None:
        hint = workspace.suggest_object(object_name)
        did_you_mean = f" (did you mean {' or '.join(hint)}?)" if hint else ""
        raise ConfigError(f"--object: no object {object_name!r} in this workspace{did_you_mean}")
    out_path = Path(output) if output else None
    if out_path is not None and out_path.exists() and not force:
        raise ConfigError(f"-o: {out_path} exists; use --force to overwrite it")
    text = draft_mapping(Path(source), obj, workspace, out_path)
    if out_path is None:
        click.echo(text, nl=False)
    else:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(text, encoding="utf-8")
        click.echo(
            f"wrote {out_path}: check it, then run twenty-pipeline validate {out_path}", err=True
        )


def _apply(target: str, dry_run: bool, flags: dict[str, Any]) -> None:
    """``schema apply``: the plan, then the fields and options created."""
    from pipeline.schema_apply import apply_plan, plan_schema

    settings = settings_from(flags)
    mappings = _mappings_of(target)

    async def work() -> list[str] | None:
        async with open_workspace(settings) as client:
            plan = plan_schema(mappings, await load_schema(client))
            if plan.problems:
                raise ConfigError(plan.problems)
            if not plan.changes:
                click.echo(f"{target}: the workspace has every field and option it needs")
                return None
            click.echo("plan:")
            for change in plan.changes:
                click.echo(f"  {change.line()}")
            if dry_run:
                click.echo("dry run: nothing changed")
                return None
            return await apply_plan(client, plan)

    done = run_async(work())
    for line in done or []:
        click.echo(line)


def _mappings_of(target: str) -> list[Any]:
    """The mappings of a job file (its steps'), or the one mapping file."""
    import yaml

    from pipeline.jobs import load_job
    from pipeline.mapping import load_mapping

    path = Path(target)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return [(load_mapping(path), None)]  # its own one-line error
    if isinstance(raw, dict) and "steps" in raw:
        return [(step.mapping, step.source) for step in load_job(path).steps]
    return [(load_mapping(path), None)]
