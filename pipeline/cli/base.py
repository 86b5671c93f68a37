"""What every command shares: the group, error bridging, logging, settings flags, output."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from tqdm import tqdm

from pipeline import __version__
from pipeline.config import (
    Secret,
    Settings,
    build_settings,
)
from pipeline.errors import (
    EXIT_INTERRUPTED,
    ConfigError,
    MappingError,
    PipelineError,
    SettingAdvice,
)
from pipeline.schema import WorkspaceSchema, load_schema
from pipeline.workspace import open_workspace

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
            message = error.described(flag_advice)
        super().__init__(message)
        # click declares exit_code a ClassVar but reads it from the instance.
        self.exit_code = error.exit_code  # type: ignore[misc]


def flag_advice(advice: SettingAdvice) -> str:
    """A setting's advice in command-line words: ``run again with --api graphql``."""
    flag = "--" + advice.setting.replace("_", "-")
    if advice.value is True:
        return f"pass {flag} to {advice.purpose}"
    if advice.value == "":
        return f"{advice.purpose} with {flag}"
    return f"{'run again with' if advice.certain else 'try'} {flag} {advice.value}"


class PipelineGroup(click.Group):
    """Turns every PipelineError and Ctrl-C into a message and an exit code, in one place."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_ARGS] = list(args)  # kept for _json_wanted: the group consumes them
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            try:
                return super().invoke(ctx)
            except PipelineError as exc:
                raise PipelineClickError(exc) from exc
        except click.ClickException as exc:
            if not _json_wanted(ctx):
                raise
            _log_fatal(exc)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            if _json_wanted(ctx):
                _log_fatal(click.ClickException("interrupted"), EXIT_INTERRUPTED)
            else:
                click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)


_ARGS = "pipeline.args"


def _json_wanted(ctx: click.Context) -> bool:
    """``--log-format json`` on the command line (or TWENTY_LOG_FORMAT), even when the
    settings could not be built: a log collector reads fatal lines too."""
    args: list[str] = ctx.meta.get(_ARGS, [])
    for at, arg in enumerate(args):
        if arg == "--log-format" and at + 1 < len(args):
            return args[at + 1] == "json"
        if arg.startswith("--log-format="):
            return arg.partition("=")[2] == "json"
    return os.environ.get("TWENTY_LOG_FORMAT", "").strip().lower() == "json"


def _log_fatal(exc: click.ClickException, exit_code: int | None = None) -> None:
    """A fatal error as one JSON record on stderr, secrets redacted like every log line."""
    code = exc.exit_code if exit_code is None else exit_code
    fields: dict[str, object] = {"exit_code": code}
    cause = exc.__cause__
    if isinstance(cause, ConfigError | MappingError) and len(cause.problems) > 1:
        fields["problems"] = list(cause.problems)
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        fields["usage"] = exc.ctx.get_usage()
    root = logging.getLogger("pipeline")
    # the settings may never have been built: a JSON handler of our own on today's
    # stderr, redacting what the run's handler redacted and the environment's keys
    secrets = _environment_secrets()
    for old in root.handlers:
        secrets += [s for f in old.filters if isinstance(f, _RedactSecrets) for s in f.secrets]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    handler.addFilter(_RedactSecrets(secrets))
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(min(root.level or logging.ERROR, logging.ERROR))
    logging.getLogger("pipeline.cli").error(
        exc.format_message(), extra={"event": "error", "fields": fields}
    )


def _environment_secrets() -> list[str]:
    """The API keys the environment holds (values, or the files named by ``*_FILE``)."""
    found = []
    for name in ("TWENTY_API_KEY", "TWENTY_FROM_API_KEY", "TWENTY_TO_API_KEY"):
        if value := os.environ.get(name, "").strip():
            found.append(value)
        if path := os.environ.get(f"{name}_FILE"):
            with contextlib.suppress(OSError, UnicodeError):  # every line: a bad file too
                text = Path(path).read_text(encoding="utf-8")
                found += [line.strip() for line in text.splitlines() if len(line.strip()) >= 8]
    return found


# --------------------------------------------------------------------------- logging


class _RedactSecrets(logging.Filter):
    """Last line of defence: a secret value never reaches a log line."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(s in message for s in self.secrets):
            record.msg, record.args = self._scrub(message), None
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = {
                k: self._scrub(v) if isinstance(v, str) else v for k, v in fields.items()
            }
        return True

    def _scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


class _JsonFormatter(logging.Formatter):
    """One JSON object per line; an event's name and fields are top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        event = getattr(record, "event", None)
        if event is not None:
            line["event"] = event
            fields = getattr(record, "fields", None)
            if isinstance(fields, dict):
                line.update({k: v for k, v in fields.items() if k not in line})
        return json.dumps(line, ensure_ascii=False)


def rows(count: int) -> str:
    """``1 row``, ``4 rows``."""
    return f"{count:,} row{'' if count == 1 else 's'}"


def notice(settings: Settings, text: str) -> None:
    """A line for the person or the log collector on stderr: plain, or a JSON record."""
    if settings.log_format == "json":
        logging.getLogger("pipeline.cli").warning(text, extra={"event": "notice", "fields": {}})
    else:
        click.echo(text, err=True)


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
    if settings.quiet:
        root.setLevel(logging.WARNING)
    else:  # JSON lines carry every event (DEBUG records); text stays to what a person reads
        root.setLevel(logging.DEBUG if settings.log_format == "json" else logging.INFO)
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
            "--batch-size",
            help="Records per write call, 1-200, or auto: 200, lowered for the rest of the "
            "run if the server refuses [TWENTY_BATCH_SIZE; default 60].",
        ),
        click.option("--concurrency", help="Requests in flight [TWENTY_CONCURRENCY; default 4]."),
        click.option(
            "--bucket",
            type=click.Choice(["auto", "legacy", "v2"]),
            help="The server's rate-limit bucket: legacy (Twenty's throttler) or v2 (its "
            "usage-limit engine, which keeps fractions of a token); auto learns it from a "
            "429 [TWENTY_BUCKET; default auto].",
        ),
        click.option(
            "--reserve",
            metavar="TOKENS",
            help="Calls of the workspace's rate-limit bucket left unspent for other clients "
            "[TWENTY_RESERVE; default 1].",
        ),
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


on_deleted_option = click.option(
    "--on-deleted",
    type=click.Choice(["restore", "skip", "reject"]),
    default="restore",
    show_default=True,
    help="A row whose key matches a soft-deleted record: restore it (as Twenty "
    "does), leave it deleted, or reject the row.",
)
"""``--on-deleted``, the same on import and run."""

wait_option = click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0,
    metavar="SECONDS",
    help="If another run holds this state folder, wait up to SECONDS for it to finish "
    "(default: exit 1 at once).",
)
"""``--wait``, the same on import and run."""

undoable_option = click.option(
    "--undoable",
    is_flag=True,
    help="Keep the values of the records this run updates (read before each batch: about "
    "one read call per batch) so that `undo` can put them back; without it, undo removes "
    "the records the run created and lists the updates it cannot take back.",
)
"""``--undoable``, the same on import and run."""


SETTING_FLAGS = (
    "api_url",
    "api_key",
    "sandbox",
    "api",
    "rate",
    "batch_size",
    "concurrency",
    "reserve",
    "bucket",
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


async def stopping_on_sigterm(work: Awaitable[T]) -> T:
    """Await ``work``; SIGTERM (``docker stop``) cancels it like Ctrl-C, state intact."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await work
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


@click.group(cls=PipelineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="twenty-pipeline")
def cli() -> None:
    """Move data between files and a Twenty CRM workspace: batched, paced, resumable.

    Exit codes: 0 done, 1 run failed (re-run resumes), 2 usage/config/mapping error
    (nothing sent), 3 finished with rejected rows, 130 interrupted.
    """


def progress_bar(settings: Settings, desc: str) -> tqdm[NoReturn]:
    """A tqdm bar on stderr, shown only on a terminal and without --quiet."""
    return tqdm(
        desc=desc,
        unit=" rows",
        unit_scale=True,
        file=sys.stderr,
        disable=settings.quiet or not sys.stderr.isatty(),
        leave=False,
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    click.echo(line.rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


async def fetch_schema(settings: Settings) -> WorkspaceSchema:
    """The workspace's data model, read through one client opened for it."""
    async with open_workspace(settings) as client:
        return await load_schema(client)
