"""The CLI: help everywhere, exit codes and exact messages, errors mapped in one place."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline import errors
from pipeline.cli import base as cli_module
from pipeline.cli import cli
from pipeline.errors import AuthError


def all_commands() -> list[str]:
    return sorted(cli.commands)


def test_help_lists_commands_and_exit_codes() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in all_commands():
        assert name in result.output
    assert "130 interrupted" in result.output


@pytest.mark.parametrize("command", all_commands())
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: cli " + command in result.output or f"Usage: twenty-pipeline {command}" in (
        result.output
    )


def test_python_dash_m_is_the_same_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert "Usage: twenty-pipeline" in done.stdout or "Usage: python -m pipeline" in done.stdout
    assert "schema" in done.stdout


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert "twenty-pipeline, version" in result.output


def test_no_workspace_is_exit_2_naming_both_options() -> None:
    result = CliRunner().invoke(cli, ["schema"], env={"TWENTY_API_KEY": "k"})
    assert result.exit_code == 2
    assert result.output == (
        "Error: no workspace: set TWENTY_API_URL (or --api-url) to your Twenty server, "
        "or use --sandbox (TWENTY_SANDBOX=1) to work on a local sandbox workspace\n"
    )


def test_every_config_problem_at_once() -> None:
    result = CliRunner().invoke(
        cli,
        ["schema", "--rate", "fast", "--batch-size", "0", "--api-url", "https://x.io"],
        env={"TWENTY_API_KEY": "k"},
    )
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "Error: several problems, nothing was sent:",
        "  - --batch-size: 0 must be between 1 and 200",
        "  - --rate: rate 'fast' is not CALLS/SECONDS: write it like 100/60 "
        "(100 calls every 60 seconds, Twenty's default)",
    ]


def test_pipeline_errors_become_exit_codes_without_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @asynccontextmanager
    async def refusing(settings: Any) -> AsyncIterator[Any]:
        raise AuthError(
            "the workspace refused the API key from TWENTY_API_KEY (401: Token invalid.)"
        )
        yield  # pragma: no cover

    monkeypatch.setattr(cli_module, "open_workspace", refusing)
    result = CliRunner().invoke(
        cli, ["schema"], env={"TWENTY_API_URL": "https://x.io", "TWENTY_API_KEY": "sk-secret-9"}
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "Token invalid." in result.output
    assert "sk-secret-9" not in result.output


def test_schema_on_the_in_process_sandbox(tmp_path: Path) -> None:
    db = tmp_path / "ws.sqlite"
    result = CliRunner().invoke(cli, ["schema", "person", "--sandbox", str(db)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "person (people): Person - unique keys: id, emails.primaryEmail"
    emails = next(line for line in lines if line.startswith("emails "))
    assert "EMAILS" in emails and "unique" in emails
    company = next(line for line in lines if line.startswith("company "))
    assert "-> company via companyId" in company
    assert db.exists()
    as_json = CliRunner().invoke(cli, ["schema", "--json", f"--sandbox={db}"])
    objects = json.loads(as_json.output)
    assert {o["nameSingular"] for o in objects} >= {"company", "person", "opportunity"}
    assert all(not o["system"] for o in objects)


def test_sandbox_flag_refuses_a_swallowed_argument() -> None:
    result = CliRunner().invoke(cli, ["schema", "--sandbox", "person"])
    assert result.exit_code == 2
    assert result.output == (
        "Error: --sandbox: 'person' is not a .sqlite file; to pass an argument, put it before "
        "--sandbox or write --sandbox=.twenty-pipeline/sandbox.sqlite\n"
    )


def test_sandbox_env_variable(tmp_path: Path) -> None:
    db = tmp_path / "env.sqlite"
    result = CliRunner().invoke(cli, ["schema", "task"], env={"TWENTY_SANDBOX": str(db)})
    assert result.exit_code == 0
    assert "TODO, IN_PROGRESS, DONE" in result.output


def test_serve_rejects_bad_options() -> None:
    result = CliRunner().invoke(cli, ["sandbox", "serve", "--rate", "x", "--error-rate", "2"])
    assert result.exit_code == 2
    assert "--rate: rate 'x' is not CALLS/SECONDS" in result.output
    assert "--error-rate: 2.0 must be between 0 and 1" in result.output


@pytest.mark.parametrize("wait", ["nan", "inf", "-1"])
def test_serve_rejects_a_database_wait_that_is_not_a_duration(wait: str) -> None:
    result = CliRunner().invoke(cli, ["sandbox", "serve", "--database-wait-ms", wait])
    assert result.exit_code == 2
    assert "--database-wait-ms: " in result.output
    assert "is not a number of milliseconds >= 0" in result.output


def test_serve_options_carry_the_database_wait() -> None:
    from pipeline.cli.sandbox import _sandbox_options

    given = {
        param.name: param.default
        for param in cli.commands["sandbox"].commands["serve"].params  # type: ignore[attr-defined]
        if param.name is not None
    }
    assert _sandbox_options("newest", given).database_wait_ms == 1.0  # served: 1 ms
    assert _sandbox_options("newest", {**given, "database_wait_ms": 0.0}).database_wait_ms == 0


def test_json_logs_and_secret_redaction(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from pipeline.cli import setup_logging
    from pipeline.config import Secret, Settings

    setup_logging(Settings(api_key=Secret("sk-live-zzz"), log_format="json"))
    logging.getLogger("pipeline.client").warning("retrying with key %s", "sk-live-zzz")
    line = capsys.readouterr().err.strip()
    record = json.loads(line)
    assert record["level"] == "warning" and record["logger"] == "pipeline.client"
    assert record["message"] == "retrying with key ***"
    assert "sk-live-zzz" not in line


@pytest.mark.parametrize(
    ("advice", "wording"),
    [
        (errors.USE_GRAPHQL_WRITES, "Error: refused; run again with --api graphql"),
        (errors.MAYBE_USE_GRAPHQL_WRITES, "Error: refused; try --api graphql"),
        (
            errors.RESTART_STARTS_OVER,
            "Error: refused, or pass --restart to start over (records already loaded are "
            "updated, not duplicated)",
        ),
        (errors.WRITABLE_STATE_DIR, "Error: refused; choose a writable folder with --state-dir"),
    ],
)
def test_the_cli_words_a_setting_advice_as_its_flag(
    monkeypatch: pytest.MonkeyPatch, advice: errors.SettingAdvice, wording: str
) -> None:
    @asynccontextmanager
    async def refusing(settings: Any) -> AsyncIterator[Any]:
        raise errors.FatalApiError("refused", advice=advice)
        yield  # pragma: no cover

    monkeypatch.setattr(cli_module, "open_workspace", refusing)
    result = CliRunner().invoke(cli, ["schema"], env={"TWENTY_SANDBOX": "1"})
    assert result.exit_code == 1
    assert result.output.strip() == wording


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_fatal_errors_are_json_records_with_json_logs(tmp_path: Path) -> None:
    """A log collector reads the line that ended the run like any other."""
    result = CliRunner().invoke(
        cli,
        ["import", str(tmp_path / "missing.yaml"), "--log-format", "json"],
        env={"TWENTY_SANDBOX": str(tmp_path / "ws.sqlite")},
    )
    assert result.exit_code == 2
    [record] = _json_lines(result.output)
    assert record["level"] == "error" and record["event"] == "error"
    assert record["exit_code"] == 2
    assert record["message"] == f"{tmp_path / 'missing.yaml'}: no such mapping file"

    bad = CliRunner().invoke(
        cli,
        ["import", "m.yaml", "--rate", "zz", "--batch-size", "0"],
        env={"TWENTY_SANDBOX": "1", "TWENTY_LOG_FORMAT": "json"},
    )
    assert bad.exit_code == 2
    [record] = _json_lines(bad.output)
    assert record["problems"] == [
        "--batch-size: 0 must be between 1 and 200",
        "--rate: rate 'zz' is not CALLS/SECONDS: write it like 100/60 (100 calls every 60 "
        "seconds, Twenty's default)",
    ]

    usage = CliRunner().invoke(cli, ["import", "--log-format=json", "--bogus"])
    assert usage.exit_code == 2
    [record] = _json_lines(usage.output)
    assert record["message"] == "No such option '--bogus'."
    assert record["usage"] == "Usage: cli import [OPTIONS] MAPPING [SOURCE]"


def test_a_fatal_json_record_never_holds_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    @asynccontextmanager
    async def echoing(settings: Any) -> AsyncIterator[Any]:
        raise errors.FatalApiError("server said: bad token sk-live-echoed")
        yield  # pragma: no cover

    monkeypatch.setattr(cli_module, "open_workspace", echoing)
    result = CliRunner().invoke(
        cli,
        ["schema", "--log-format", "json"],
        env={"TWENTY_API_URL": "https://crm.example.com", "TWENTY_API_KEY": "sk-live-echoed"},
    )
    assert result.exit_code == 1
    [record] = _json_lines(result.output)
    assert record["message"] == "server said: bad token ***"
    assert "sk-live-echoed" not in result.output


def test_text_logs_keep_plain_fatal_lines(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["import", str(tmp_path / "m.yaml")], env={"TWENTY_SANDBOX": "1"}
    )
    assert result.exit_code == 2
    assert result.output.strip() == f"Error: {tmp_path / 'm.yaml'}: no such mapping file"
