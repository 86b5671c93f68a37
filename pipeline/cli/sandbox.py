"""`sandbox serve`: a local Twenty-compatible workspace over HTTP."""

from __future__ import annotations

import gc
import logging
import math
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipeline.cli.base import (
    cli,
)
from pipeline.config import DEFAULT_STATE_DIR, SANDBOX_FILE_NAME, Rate
from pipeline.errors import ConfigError
from pipeline.workspace import open_sandbox

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from pipeline.sandbox import SandboxOptions


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
@click.option(
    "--bucket",
    type=click.Choice(["legacy", "v2"]),
    default=None,
    help="Twenty's token bucket: the legacy throttler (refill rounded down, bare 429) or "
    "the v2 usage-limit engine (fractions kept, Retry-After). Default: the profile's "
    "(newest: v2, legacy: legacy).",
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
@click.option(
    "--database-wait-ms",
    default=1.0,
    show_default=True,
    type=float,
    help="How long a counted call awaits its database before it is applied (Twenty "
    "awaits Postgres; other calls are counted meanwhile).",
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
    host: str, port: int, db_path: str, profile: str, api_key: str | None, **given: Any
) -> None:
    """Serve a sandbox workspace over HTTP (REST, GraphQL and metadata API).

    Example: twenty-pipeline sandbox serve --port 3000 --profile legacy
    """
    options = _sandbox_options(profile, given)
    workspace = open_sandbox(Path(db_path), options, api_key=api_key)
    try:
        listener = _listen(host, port)
        # What is built now lives as long as the server: kept out of the collector's
        # reach, a full collection no longer takes ~30 ms, which held the calls then
        # arriving at the door (the token bucket saw them as late arrivals). Schemas
        # rebuilt after a metadata change are not frozen.
        workspace.warm_up()
        gc.collect()
        gc.freeze()
        url = f"http://{host}:{listener.getsockname()[1]}"
        click.echo(
            f"Sandbox workspace {db_path} ({profile} profile, {options.bucket_kind} bucket "
            f"{given['rate']}) listening on {url}"
        )
        click.echo(f"  export TWENTY_API_URL={url}")
        click.echo(f"  export TWENTY_API_KEY={workspace.api_key}")
        sys.stdout.flush()
        _serve(workspace.app, listener)
    finally:
        workspace.close()


RATE_FLAGS = (
    "error_rate",
    "reset_rate",
    "drop_after_apply_rate",
    "no_ids_rate",
    "wrong_ids_rate",
    "duplicate_ids_rate",
    "short_rate",
    "garbage_rate",
    "trickle_rate",
    "echo_key_rate",
)
"""The fault shares (each 0-1, together at most 1), by their click parameter names."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _sandbox_options(profile: str, given: dict[str, Any]) -> SandboxOptions:
    """The serve flags checked and turned into options; every problem reported at once."""
    from pipeline.sandbox import Faults, SandboxOptions

    problems: list[str] = []
    try:
        bucket = Rate.parse(given["rate"])
    except ValueError as exc:
        problems.append(f"--rate: {exc}")
        bucket = Rate(100, 60)
    latency = given["latency"]
    try:
        low, _, high = latency.partition(":")
        latency_s = (float(low) / 1000, float(high or low) / 1000)
    except ValueError:
        problems.append(f"--latency: {latency!r} is not MS or MIN_MS:MAX_MS")
        latency_s = (0.0, 0.0)
    spike = given["spike"]
    try:
        spike_rate_text, _, spike_text = spike.partition(":")
        spike_rate, spike_s = float(spike_rate_text), float(spike_text or 0)
    except ValueError:
        problems.append(f"--spike: {spike!r} is not RATE:SECONDS, e.g. 0.1:70")
        spike_rate, spike_s = 0.0, 0.0
    outage_s, mode = _outage(given["outage"], problems)
    rates = [(_flag(name), float(given[name])) for name in RATE_FLAGS] + [("--spike", spike_rate)]
    for name, value in rates:
        if not 0 <= value <= 1:
            problems.append(f"{name}: {value} must be between 0 and 1")
    if sum(value for _, value in rates) > 1:
        problems.append("the fault rates add up to more than 1")
    wait_ms = given["database_wait_ms"]
    if not math.isfinite(wait_ms) or wait_ms < 0:
        problems.append(f"--database-wait-ms: {wait_ms:g} is not a number of milliseconds >= 0")
    if given["trickle_bytes_per_s"] <= 0:
        problems.append(f"--trickle-bytes-per-s: {given['trickle_bytes_per_s']} must be above 0")
    if problems:
        raise ConfigError(problems)
    return SandboxOptions(
        profile="legacy" if profile == "legacy" else "newest",
        bucket=given["bucket"],
        rate_limit=bucket.calls,
        rate_window_ms=bucket.seconds * 1000,
        throttle=not given["no_throttle"],
        max_records=given["max_records"],
        database_wait_ms=given["database_wait_ms"],
        faults=Faults(
            latency=latency_s,
            seed=given["seed"],
            trickle_bytes_per_s=given["trickle_bytes_per_s"],
            spike_rate=spike_rate,
            spike_s=spike_s,
            outage=outage_s,
            outage_mode="reset" if mode == "reset" else "503",
            metadata=given["fault_metadata"],
            trace=given["trace_path"],
            **{name: float(given[name]) for name in RATE_FLAGS},
        ),
    )


def _outage(text: str, problems: list[str]) -> tuple[tuple[float, float], str]:
    """``START:SECONDS[:503|reset]`` as ((start, seconds), mode)."""
    start_text, _, rest = text.partition(":")
    duration_text, _, mode = rest.partition(":")
    try:
        outage_s = (float(start_text), float(duration_text or 0))
    except ValueError:
        problems.append(f"--outage: {text!r} is not START:SECONDS[:503|reset], e.g. 2:5")
        outage_s = (0.0, 0.0)
    if mode not in ("", "503", "reset"):
        problems.append(f"--outage: mode {mode!r} is not 503 or reset")
    return outage_s, mode


def _listen(host: str, port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        raise ConfigError(f"--port: cannot listen on {host}:{port}: {exc.strerror}") from exc
    return listener


def _serve(app: ASGIApp, listener: socket.socket) -> None:
    import uvicorn

    logging.getLogger("uvicorn.error").addFilter(_QuietInjectedFaults())
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    uvicorn.Server(config).run(sockets=[listener])


class _QuietInjectedFaults(logging.Filter):
    """Injected disconnects are the sandbox doing its job, not errors worth a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pipeline.sandbox.app import InjectedDisconnect

        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, InjectedDisconnect)
