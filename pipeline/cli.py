"""The command line: flags -> Settings, PipelineError -> exit code, output and progress.

Only this module imports click; stages stay plain functions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pipeline import __version__
from pipeline.config import (
    DEFAULT_STATE_DIR,
    SANDBOX_FILE_NAME,
    Rate,
    Secret,
    Settings,
    build_settings,
)
from pipeline.errors import (
    EXIT_INTERRUPTED,
    EXIT_REJECTED,
    ConfigError,
    Interrupted,
    MappingError,
    PipelineError,
)
from pipeline.schema import WorkspaceSchema, describe_field, load_schema, object_to_json
from pipeline.workspace import open_sandbox, open_workspace

if TYPE_CHECKING:
    from pipeline.load import LoadStats
    from pipeline.reports import ImportReport, ValidationReport

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("pipeline")


class PipelineClickError(click.ClickException):
    """A PipelineError on its way out, with the exit code design.md §3 gives it."""

    def __init__(self, error: PipelineError) -> None:
        if isinstance(error, ConfigError | MappingError) and len(error.problems) > 1:
            message = "\n".join(
                ["several problems, nothing was sent:"] + [f"  - {p}" for p in error.problems]
            )
        else:
            message = str(error)
        super().__init__(message)
        # click declares exit_code a ClassVar but reads it from the instance.
        self.exit_code = error.exit_code  # type: ignore[misc]


class PipelineGroup(click.Group):
    """Turns every PipelineError and Ctrl-C into a message and an exit code, in one place."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PipelineError as exc:
            raise PipelineClickError(exc) from exc
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)


# --------------------------------------------------------------------------- logging


class _RedactSecrets(logging.Filter):
    """Last line of defence: a secret value never reaches a log line."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(s in message for s in self._secrets):
            for secret in self._secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


def setup_logging(settings: Settings) -> None:
    """Log lines go to stderr, as text or JSON, with secrets redacted."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("twenty-pipeline: %(levelname)s: %(message)s"))
    secrets = [settings.api_key.reveal()] if isinstance(settings.api_key, Secret) else []
    handler.addFilter(_RedactSecrets(secrets))
    root = logging.getLogger("pipeline")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if settings.quiet else logging.INFO)
    root.propagate = False


# --------------------------------------------------------------------------- options


def workspace_options(func: F) -> F:
    """The settings of design.md §3, on every command that talks to a workspace."""
    options = [
        click.option(
            "--api-url", help="Workspace base URL, e.g. https://crm.example.com [TWENTY_API_URL]"
        ),
        click.option(
            "--sandbox",
            is_flag=False,
            flag_value="",
            default=None,
            metavar="[PATH]",
            help="Work on a local sandbox workspace stored at PATH "
            "[TWENTY_SANDBOX; default PATH .twenty-pipeline/sandbox.sqlite].",
        ),
        click.option(
            "--api-key",
            help="API key (prefer TWENTY_API_KEY or TWENTY_API_KEY_FILE: flags show in `ps`).",
        ),
        click.option(
            "--api",
            type=click.Choice(["graphql", "rest"]),
            help="API flavour for writes [TWENTY_API; default graphql].",
        ),
        click.option(
            "--rate",
            metavar="CALLS/SECONDS",
            help="Workspace rate limit [TWENTY_RATE; default 100/60].",
        ),
        click.option(
            "--batch-size", help="Records per write call, 1-200 [TWENTY_BATCH_SIZE; default 60]."
        ),
        click.option("--concurrency", help="Requests in flight [TWENTY_CONCURRENCY; default 4]."),
        click.option(
            "--state-dir",
            help="Folder for checkpoints, ledgers, reports [TWENTY_STATE_DIR; .twenty-pipeline].",
        ),
        click.option(
            "--allow-insecure",
            is_flag=True,
            default=None,
            help="Allow plain http:// to a host that is not this machine: the API key "
            "crosses the network unencrypted [TWENTY_ALLOW_INSECURE].",
        ),
        click.option("--quiet", "-q", is_flag=True, default=None, help="No progress bars."),
        click.option(
            "--log-format",
            type=click.Choice(["text", "json"]),
            help="Log lines on stderr [TWENTY_LOG_FORMAT; default text].",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


SETTING_FLAGS = (
    "api_url",
    "api_key",
    "sandbox",
    "api",
    "rate",
    "batch_size",
    "concurrency",
    "state_dir",
    "quiet",
    "log_format",
    "allow_insecure",
)


def settings_from(flags: dict[str, Any], *, need_workspace: bool = True) -> Settings:
    """Settings from this command's flags and the environment; logging set up from them."""
    given = {name: flags.pop(name, None) for name in SETTING_FLAGS}
    settings = build_settings(given, os.environ, need_workspace=need_workspace)
    setup_logging(settings)
    return settings


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine to completion (one event loop per command)."""
    return asyncio.run(coro)


# --------------------------------------------------------------------------- commands


@click.group(cls=PipelineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="twenty-pipeline")
def cli() -> None:
    """Move data between files and a Twenty CRM workspace: batched, paced, resumable.

    Exit codes: 0 done, 1 run failed (re-run resumes), 2 usage/config/mapping error
    (nothing sent), 3 finished with rejected rows, 130 interrupted.
    """


@cli.command()
@click.argument("object_name", required=False, metavar="[OBJECT]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--all", "show_all", is_flag=True, help="Include system objects and fields.")
@workspace_options
def schema(object_name: str | None, as_json: bool, show_all: bool, **flags: Any) -> None:
    """Show the workspace's objects, or one OBJECT's fields.

    For each field: type, nullability, uniqueness, select options, relation target
    and join column.

    Example: twenty-pipeline schema person
    """
    settings = settings_from(flags)

    async def fetch() -> WorkspaceSchema:
        async with open_workspace(settings) as client:
            return await load_schema(client)

    workspace = run_async(fetch())
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
        _table(("OBJECT", "PLURAL", "LABEL", "KIND", "FIELDS", "UNIQUE KEYS"), rows)
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
    _table(("FIELD", "TYPE", "NULL", "UNIQUE", "WRITE", "DETAILS"), rows)


async def _fetch_schema(settings: Settings) -> WorkspaceSchema:
    async with open_workspace(settings) as client:
        return await load_schema(client)


def _progress_bar(settings: Settings, desc: str) -> Any:
    """A tqdm bar on stderr, shown only on a terminal and without --quiet."""
    from tqdm import tqdm

    return tqdm(
        desc=desc,
        unit=" rows",
        unit_scale=True,
        file=sys.stderr,
        disable=settings.quiet or not sys.stderr.isatty(),
        leave=False,
    )


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
    workspace = standard_schema() if offline else run_async(_fetch_schema(settings))
    rejects = (
        Path(rejects_file) if rejects_file else validate_rejects_path(settings.state_dir, mapping)
    )
    with _progress_bar(settings, "validate") as bar:
        report = run_validate(
            mapping, workspace, source=source, rejects_path=rejects, progress=bar.update
        )
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print_validation(report, offline)
    if report.rejected:
        where = f"; see {report.rejects_path}" if report.rejects_path else ""
        click.echo(f"validate: {report.rejected:,} rows would be rejected{where}", err=True)
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
    click.echo(f"  rejected: {report.rejected:,}")
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
        click.echo("rejected by reason:")
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
@click.option(
    "--on-deleted",
    type=click.Choice(["restore", "skip", "reject"]),
    default="restore",
    show_default=True,
    help="A row whose key matches a soft-deleted record: restore it (as Twenty "
    "does), leave it deleted, or reject the row.",
)
@click.option("--dry-run", is_flag=True, help="Only validate: read and normalize, zero writes.")
@workspace_options
def import_(
    mapping_file: str,
    source: str | None,
    restart: bool,
    on_deleted: str,
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
    from pipeline.runner import import_file, state_folder

    settings = settings_from(flags)
    mapping = load_mapping(mapping_file)
    folder = state_folder(settings.state_dir, mapping)
    if folder.name != mapping.name:
        click.echo(
            f"state folder {folder} (another mapping named {mapping.name!r} uses "
            f"{settings.state_dir / mapping.name})",
            err=True,
        )
    bar = _progress_bar(settings, f"import {mapping.name}")

    def on_start(report: ImportReport, counts: dict[str, int]) -> None:
        if report.resumed:
            done = sum(counts.values())
            click.echo(
                f"resuming {mapping.name}: {done:,} rows already recorded "
                f"({counts.get('rejected', 0):,} rejected); sending the rest",
                err=True,
            )

    def on_total(total: int) -> None:
        bar.total = total
        bar.refresh()

    def progress(stats: LoadStats, rows: int) -> None:
        bar.update(rows)
        bar.set_postfix(
            loaded=stats.loaded,
            rejected=stats.rejected,
            rate_limited=stats.rate_limited,
            refresh=False,
        )

    async def run() -> ImportReport:
        async with open_workspace(settings) as client:
            task = asyncio.current_task()
            loop = asyncio.get_running_loop()
            if task is not None:
                # docker stop sends SIGTERM: stop like Ctrl-C, checkpoint intact
                loop.add_signal_handler(signal.SIGTERM, task.cancel)
            try:
                return await import_file(
                    mapping,
                    client,
                    state_dir=settings.state_dir,
                    source=source,
                    batch_size=settings.batch_size,
                    concurrency=settings.concurrency,
                    on_deleted=on_deleted,  # type: ignore[arg-type]
                    restart=restart,
                    progress=progress,
                    on_start=on_start,
                    on_total=on_total,
                )
            finally:
                loop.remove_signal_handler(signal.SIGTERM)

    try:
        report = run_async(run())
    except (KeyboardInterrupt, asyncio.CancelledError):
        bar.close()
        again = "again without --restart" if restart else "again"
        raise Interrupted(
            f"interrupted: the state store in {folder} is intact; "
            f"run the same command {again} to resume"
        ) from None
    finally:
        bar.close()
    _print_import(report)
    if report.exit_code == EXIT_REJECTED:
        click.echo(
            f"import {mapping.name}: {report.rejected:,} rows rejected; see {report.rejects_file}",
            err=True,
        )
    if report.exit_code:
        raise click.exceptions.Exit(report.exit_code)


def _print_import(report: ImportReport) -> None:
    if report.already_done:
        click.echo(
            f"{report.mapping}: already imported (state store complete); "
            "use --restart to import again"
        )
    click.echo(f"{report.source} -> {report.object}{_how_read(report)}")
    rows = [
        ("read", report.rows_read),
        ("created", report.created),
        ("updated", report.updated),
        ("restored", report.restored),
        ("unchanged", report.unchanged),
        ("rejected", report.rejected),
    ]
    for label, value in rows:
        if value or label in ("read", "rejected"):
            click.echo(f"  {label:<10}{value:>10,}")
    if report.links_left_empty:
        click.echo(
            f"  {report.links_left_empty:,} loaded rows have a link left empty "
            "(on_missing: null; the note column of success.csv says which and why)"
        )
    calls = report.calls
    click.echo(
        f"  calls: {calls.get('writes', 0):,} writes, {calls.get('reads', 0):,} reads, "
        f"{calls.get('retries', 0):,} retries, {calls.get('rate_limited', 0):,} "
        f"rate-limited, in {report.seconds:.1f}s"
    )
    click.echo(f"ledgers: {report.state_dir}/success.csv, rejects.csv, report.json")


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
        state = "complete" if item.complete else "incomplete"
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
    workspace = standard_schema() if offline else run_async(_fetch_schema(settings))
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


@cli.group()
def sandbox() -> None:
    """A local Twenty-compatible workspace to rehearse a migration against."""


@sandbox.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=3000, show_default=True, type=int, help="Port (0: any free one).")
@click.option(
    "--db",
    "db_path",
    default=str(DEFAULT_STATE_DIR / SANDBOX_FILE_NAME),
    show_default=True,
    help="SQLite file of the workspace (created and seeded on first use).",
)
@click.option(
    "--profile",
    type=click.Choice(["newest", "legacy"]),
    default="newest",
    show_default=True,
    help="Which Twenty generation to mimic (envelopes, 429 shape, REST batch upsert).",
)
@click.option("--api-key", "api_key", help="Accept this API key (default: the stored one).")
@click.option(
    "--rate",
    default="100/60",
    show_default=True,
    metavar="CALLS/SECONDS",
    help="The workspace token bucket.",
)
@click.option("--no-throttle", is_flag=True, help="Never answer 429.")
@click.option(
    "--max-records", default=200, show_default=True, type=int, help="Records per batch call."
)
@click.option("--latency", default="0", metavar="MS[:MS]", help="Added latency range (faults).")
@click.option("--error-rate", default=0.0, type=float, help="Share of calls answered 500.")
@click.option("--reset-rate", default=0.0, type=float, help="Share of calls cut before applying.")
@click.option(
    "--drop-after-apply-rate",
    default=0.0,
    type=float,
    help="Share of calls applied whose answer is then lost.",
)
@click.option("--seed", type=int, default=None, help="Seed of the fault draws.")
@click.option(
    "--no-ids-rate", default=0.0, type=float, help="Share of batch answers with {} records."
)
@click.option(
    "--wrong-ids-rate", default=0.0, type=float, help="Share of batch answers with other ids."
)
@click.option(
    "--duplicate-ids-rate",
    default=0.0,
    type=float,
    help="Share of batch answers repeating one id.",
)
@click.option(
    "--short-rate", default=0.0, type=float, help="Share of batch answers one record short."
)
@click.option(
    "--garbage-rate",
    default=0.0,
    type=float,
    help="Share of batch answers that are 200 with malformed JSON, nothing or HTML.",
)
@click.option(
    "--trickle-rate",
    default=0.0,
    type=float,
    help="Share of batch answers sent 1 byte a second (see --trickle-bytes-per-s).",
)
@click.option("--trickle-bytes-per-s", default=1.0, type=float, help="Speed of a trickle.")
@click.option(
    "--echo-key-rate",
    default=0.0,
    type=float,
    help="Share of calls answered 500 quoting the Authorization header.",
)
@click.option(
    "--spike",
    default="0:0",
    metavar="RATE:SECONDS",
    help="Share of calls whose answer is held SECONDS (applied first).",
)
@click.option(
    "--outage",
    default="0:0",
    metavar="START:SECONDS[:503|reset]",
    help="From START seconds after the first call, SECONDS of 503s (or cut connections).",
)
@click.option("--fault-metadata", is_flag=True, help="Fault the metadata API calls too.")
@click.option("--trace", "trace_path", help="Append one line per faulted call to this file.")
def sandbox_serve(
    host: str,
    port: int,
    db_path: str,
    profile: str,
    api_key: str | None,
    rate: str,
    no_throttle: bool,
    max_records: int,
    latency: str,
    error_rate: float,
    reset_rate: float,
    drop_after_apply_rate: float,
    seed: int | None,
    no_ids_rate: float,
    wrong_ids_rate: float,
    duplicate_ids_rate: float,
    short_rate: float,
    garbage_rate: float,
    trickle_rate: float,
    trickle_bytes_per_s: float,
    echo_key_rate: float,
    spike: str,
    outage: str,
    fault_metadata: bool,
    trace_path: str | None,
) -> None:
    """Serve a sandbox workspace over HTTP (REST, GraphQL and metadata API).

    Example: twenty-pipeline sandbox serve --port 3000 --profile legacy
    """
    import socket

    import uvicorn

    from pipeline.sandbox import Faults, SandboxOptions

    problems = []
    try:
        bucket = Rate.parse(rate)
    except ValueError as exc:
        problems.append(f"--rate: {exc}")
        bucket = Rate(100, 60)
    try:
        low, _, high = latency.partition(":")
        latency_s = (float(low) / 1000, float(high or low) / 1000)
    except ValueError:
        problems.append(f"--latency: {latency!r} is not MS or MIN_MS:MAX_MS")
        latency_s = (0.0, 0.0)
    try:
        spike_rate_text, _, spike_text = spike.partition(":")
        spike_rate, spike_s = float(spike_rate_text), float(spike_text or 0)
    except ValueError:
        problems.append(f"--spike: {spike!r} is not RATE:SECONDS, e.g. 0.1:70")
        spike_rate, spike_s = 0.0, 0.0
    start_text, _, rest = outage.partition(":")
    duration_text, _, mode = rest.partition(":")
    try:
        outage_s = (float(start_text), float(duration_text or 0))
    except ValueError:
        problems.append(f"--outage: {outage!r} is not START:SECONDS[:503|reset], e.g. 2:5")
        outage_s = (0.0, 0.0)
    if mode not in ("", "503", "reset"):
        problems.append(f"--outage: mode {mode!r} is not 503 or reset")
    rates = (
        ("--error-rate", error_rate),
        ("--reset-rate", reset_rate),
        ("--drop-after-apply-rate", drop_after_apply_rate),
        ("--no-ids-rate", no_ids_rate),
        ("--wrong-ids-rate", wrong_ids_rate),
        ("--duplicate-ids-rate", duplicate_ids_rate),
        ("--short-rate", short_rate),
        ("--garbage-rate", garbage_rate),
        ("--trickle-rate", trickle_rate),
        ("--echo-key-rate", echo_key_rate),
        ("--spike", spike_rate),
    )
    for name, value in rates:
        if not 0 <= value <= 1:
            problems.append(f"{name}: {value} must be between 0 and 1")
    if sum(value for _, value in rates) > 1:
        problems.append("the fault rates add up to more than 1")
    if trickle_bytes_per_s <= 0:
        problems.append(f"--trickle-bytes-per-s: {trickle_bytes_per_s} must be above 0")
    if problems:
        raise ConfigError(problems)
    options = SandboxOptions(
        profile="legacy" if profile == "legacy" else "newest",
        rate_limit=bucket.calls,
        rate_window_ms=bucket.seconds * 1000,
        throttle=not no_throttle,
        max_records=max_records,
        faults=Faults(
            latency=latency_s,
            error_rate=error_rate,
            reset_rate=reset_rate,
            drop_after_apply_rate=drop_after_apply_rate,
            seed=seed,
            no_ids_rate=no_ids_rate,
            wrong_ids_rate=wrong_ids_rate,
            duplicate_ids_rate=duplicate_ids_rate,
            short_rate=short_rate,
            garbage_rate=garbage_rate,
            trickle_rate=trickle_rate,
            trickle_bytes_per_s=trickle_bytes_per_s,
            echo_key_rate=echo_key_rate,
            spike_rate=spike_rate,
            spike_s=spike_s,
            outage=outage_s,
            outage_mode="reset" if mode == "reset" else "503",
            metadata=fault_metadata,
            trace=trace_path,
        ),
    )
    workspace = open_sandbox(Path(db_path), options, api_key=api_key)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        raise ConfigError(f"--port: cannot listen on {host}:{port}: {exc.strerror}") from exc
    url = f"http://{host}:{listener.getsockname()[1]}"
    click.echo(f"Sandbox workspace {db_path} ({profile} profile) listening on {url}")
    click.echo(f"  export TWENTY_API_URL={url}")
    click.echo(f"  export TWENTY_API_KEY={workspace.api_key}")
    sys.stdout.flush()
    logging.getLogger("uvicorn.error").addFilter(_QuietInjectedFaults())
    config = uvicorn.Config(workspace.app, log_level="warning", lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[listener])
    finally:
        workspace.close()


class _QuietInjectedFaults(logging.Filter):
    """Injected disconnects are the sandbox doing its job, not errors worth a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pipeline.sandbox.app import InjectedDisconnect

        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, InjectedDisconnect)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    click.echo(line.rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="twenty-pipeline")
