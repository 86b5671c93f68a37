"""Settings: precedence, validation (every problem at once), secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.config import DEFAULT_STATE_DIR, Rate, Secret, build_settings
from pipeline.errors import ConfigError

REAL = {"TWENTY_API_URL": "https://crm.example.com", "TWENTY_API_KEY": "sk-live-abc"}


def test_defaults_match_the_design() -> None:
    s = build_settings({}, REAL)
    assert s.api_url == "https://crm.example.com"
    assert s.api == "graphql"
    assert s.rate == Rate(100, 60)
    assert s.batch_size == 60
    assert s.concurrency == 4
    assert s.state_dir == DEFAULT_STATE_DIR
    assert s.log_format == "text"
    assert s.api_key_source == "TWENTY_API_KEY"
    assert s.sandbox is None


def test_flags_beat_environment() -> None:
    env = {**REAL, "TWENTY_BATCH_SIZE": "100", "TWENTY_RATE": "50/60", "TWENTY_API": "rest"}
    s = build_settings({"batch_size": "20", "rate": "10/1", "api": "graphql"}, env)
    assert (s.batch_size, s.rate, s.api) == (20, Rate(10, 1), "graphql")
    s = build_settings({}, env)
    assert (s.batch_size, s.rate, s.api) == (100, Rate(50, 60), "rest")


def test_trailing_slash_dropped_from_url() -> None:
    assert build_settings({}, {**REAL, "TWENTY_API_URL": "https://x.io/"}).api_url == "https://x.io"


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("100/60", Rate(100, 60)),
        ("20/2", Rate(20, 2)),
        (" 5 / 0.5 ", Rate(5, 0.5)),
        ("100/1m", Rate(100, 60)),
    ],
)
def test_rate_parsing(text: str, rate: Rate) -> None:
    assert Rate.parse(text) == rate


@pytest.mark.parametrize("text", ["100", "fast", "0/60", "10/0", "-1/60", "100/60/2", ""])
def test_rate_nonsense_rejected_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match=r"100/60|at least 1 call"):
        Rate.parse(text)


def test_rate_interval_and_str() -> None:
    assert Rate(100, 60).interval == pytest.approx(0.6)
    assert str(Rate(100, 60)) == "100/60"


def test_every_problem_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        build_settings(
            {"batch_size": "500", "rate": "lots", "concurrency": "zero", "api": "soap"}, {}
        )
    text = str(info.value)
    assert len(info.value.problems) == 6
    assert "--batch-size: 500 must be between 1 and 200" in text
    assert "--rate: rate 'lots' is not CALLS/SECONDS" in text
    assert "--concurrency: 'zero' is not a whole number" in text
    assert "--api: 'soap' is not one of graphql, rest" in text
    assert "TWENTY_API_URL" in text and "--sandbox" in text
    assert "TWENTY_API_KEY" in text
    assert info.value.exit_code == 2


def test_no_url_names_both_ways_out() -> None:
    with pytest.raises(ConfigError) as info:
        build_settings({}, {"TWENTY_API_KEY": "k"})
    assert info.value.problems == [
        "no workspace: set TWENTY_API_URL (or --api-url) to your Twenty server, "
        "or use --sandbox (TWENTY_SANDBOX=1) to work on a local sandbox workspace"
    ]


def test_not_an_http_url() -> None:
    with pytest.raises(ConfigError, match="is not an http"):
        build_settings({"api_url": "crm.example.com"}, {"TWENTY_API_KEY": "k"})


def test_secret_never_shows(tmp_path: Path) -> None:
    s = build_settings({}, REAL)
    assert "sk-live-abc" not in repr(s)
    assert "sk-live-abc" not in str(s.api_key)
    assert repr(s.api_key) == "Secret('***')"
    assert s.api_key == Secret("sk-live-abc")
    assert s.api_key is not None and s.api_key.reveal() == "sk-live-abc"


def test_key_file_for_docker_secrets(tmp_path: Path) -> None:
    key = tmp_path / "twenty_key"
    key.write_text("sk-from-file\n")
    s = build_settings({}, {"TWENTY_API_URL": "https://x.io", "TWENTY_API_KEY_FILE": str(key)})
    assert s.api_key == Secret("sk-from-file")
    assert s.api_key_source == f"TWENTY_API_KEY_FILE ({key})"


def test_key_file_missing_or_empty(tmp_path: Path) -> None:
    env = {"TWENTY_API_URL": "https://x.io", "TWENTY_API_KEY_FILE": str(tmp_path / "nope")}
    with pytest.raises(ConfigError, match="cannot read"):
        build_settings({}, env)
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    with pytest.raises(ConfigError, match="is empty"):
        build_settings({}, {**env, "TWENTY_API_KEY_FILE": str(empty)})


def test_two_key_sources_refused(tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_text("a")
    with pytest.raises(ConfigError, match="unset one of them"):
        build_settings({}, {**REAL, "TWENTY_API_KEY_FILE": str(key)})


def test_sandbox_needs_no_url_or_key(tmp_path: Path) -> None:
    s = build_settings({"sandbox": ""}, {})
    assert s.sandbox == DEFAULT_STATE_DIR / "sandbox.sqlite"
    assert s.api_key is None
    s = build_settings({"sandbox": str(tmp_path / "w.sqlite")}, {})
    assert s.sandbox == tmp_path / "w.sqlite"
    assert build_settings({}, {"TWENTY_SANDBOX": "1"}).sandbox is not None
    assert build_settings({}, {**REAL, "TWENTY_SANDBOX": "0"}).sandbox is None


def test_sandbox_and_url_from_the_same_layer_conflict() -> None:
    with pytest.raises(ConfigError, match="not both"):
        build_settings({"sandbox": "", "api_url": "https://x.io"}, {})
    with pytest.raises(ConfigError, match="not both"):
        build_settings({}, {**REAL, "TWENTY_SANDBOX": "1"})


def test_explicit_flag_wins_over_the_other_from_env() -> None:
    s = build_settings({"sandbox": ""}, REAL)
    assert s.sandbox is not None and s.api_url is None
    s = build_settings({"api_url": "https://y.io"}, {"TWENTY_SANDBOX": "1", "TWENTY_API_KEY": "k"})
    assert s.sandbox is None and s.api_url == "https://y.io"


def test_schema_only_commands_may_skip_the_workspace() -> None:
    s = build_settings({}, {}, need_workspace=False)
    assert s.api_url is None


# ------------------------------------------------------------------ keys that cannot be sent

KEY = "sk-live-abc"
ADVICE = (
    "(the key is not shown); an API key is one line of ASCII letters, digits and "
    "punctuation: copy it again from Twenty (Settings > APIs & Webhooks)"
)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (f"{KEY}\n# prod key", "holds more than one line"),
        (f"{KEY} extra", "holds whitespace"),
        (f"{KEY}\tx", "holds whitespace"),
        (f"{KEY}\x07", "holds control characters"),
        (f"{KEY}é", "holds non-ASCII characters"),
    ],
)
@pytest.mark.parametrize("layer", ["flag", "env"])
def test_key_that_cannot_be_sent_is_refused_without_showing_it(
    value: str, problem: str, layer: str
) -> None:
    flags = {"api_key": value} if layer == "flag" else {}
    env = {"TWENTY_API_URL": "https://x.io"} | (
        {} if layer == "flag" else {"TWENTY_API_KEY": value}
    )
    with pytest.raises(ConfigError) as info:
        build_settings(flags, env)
    source = "--api-key" if layer == "flag" else "TWENTY_API_KEY"
    assert info.value.problems == [f"{source}: the API key {problem} {ADVICE}"]
    assert KEY not in str(info.value)
    assert info.value.exit_code == 2


def test_key_file_with_a_comment_line_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "twenty_key"
    key.write_text(f"{KEY}\n# prod key\n")
    env = {"TWENTY_API_URL": "https://x.io", "TWENTY_API_KEY_FILE": str(key)}
    with pytest.raises(ConfigError) as info:
        build_settings({}, env)
    assert info.value.problems == [
        f"TWENTY_API_KEY_FILE ({key}): the file holds more than one line (the key is not "
        "shown); keep only the key in it, comments included"
    ]
    assert KEY not in str(info.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (f" {KEY}\n".encode(), "holds whitespace"),
        (f"{KEY}\n\n".encode(), None),
        ("\ufeffsk-live-abc".encode(), "holds non-ASCII characters"),
        (b"sk-live-\xff", "holds non-ASCII characters"),
    ],
    ids=["leading-space", "blank-second-line", "bom", "not-utf8"],
)
def test_key_file_other_refusals(tmp_path: Path, content: bytes, problem: str | None) -> None:
    key = tmp_path / "twenty_key"
    key.write_bytes(content)
    env = {"TWENTY_API_URL": "https://x.io", "TWENTY_API_KEY_FILE": str(key)}
    with pytest.raises(ConfigError) as info:
        build_settings({}, env)
    if problem is None:
        assert info.value.problems[0].endswith("keep only the key in it, comments included")
    else:
        assert info.value.problems == [
            f"TWENTY_API_KEY_FILE ({key}): the API key {problem} {ADVICE}"
        ]
    assert KEY not in str(info.value)


@pytest.mark.parametrize("ending", ["", "\n", "\r\n"])
def test_key_file_drops_one_trailing_newline(tmp_path: Path, ending: str) -> None:
    key = tmp_path / "twenty_key"
    key.write_bytes(f"{KEY}{ending}".encode())
    s = build_settings({}, {"TWENTY_API_URL": "https://x.io", "TWENTY_API_KEY_FILE": str(key)})
    assert s.api_key == Secret(KEY)


def test_commands_without_api_calls_ignore_a_bad_key_and_url() -> None:
    env = {"TWENTY_API_URL": "http://crm.example.com", "TWENTY_API_KEY": "a b"}
    s = build_settings({}, env, need_workspace=False)
    assert (s.api_url, s.api_key) == (None, None)


# ------------------------------------------------------------------ URLs


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (
            "http://127.0.0.1:99999",
            "is not a valid URL (Port out of range 0-65535); give the base URL, "
            "e.g. https://crm.example.com",
        ),
        (
            "http://[::1",
            "is not a valid URL (Invalid IPv6 URL); give the base URL, "
            "e.g. https://crm.example.com",
        ),
        (
            "https://crm.example.com:port",
            "is not a valid URL (Port could not be cast to integer value as 'port'); "
            "give the base URL, e.g. https://crm.example.com",
        ),
        (
            "https://exa mple.com",
            "holds whitespace or control characters; give the base URL, "
            "e.g. https://crm.example.com",
        ),
        (
            "https://crm_example!.com",
            "has an invalid host name 'crm_example!.com'; give the base URL, "
            "e.g. https://crm.example.com",
        ),
        (
            "crm.example.com",
            "is not an http(s) URL; give the workspace's base URL, e.g. https://crm.example.com",
        ),
    ],
)
def test_malformed_url_is_one_line_config_error(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_settings({"api_url": url}, {"TWENTY_API_KEY": KEY})
    assert info.value.problems == [f"--api-url: {url!r} {problem}"]


def test_plain_http_to_a_remote_host_is_refused() -> None:
    env = {"TWENTY_API_URL": "http://crm.example.com", "TWENTY_API_KEY": KEY}
    with pytest.raises(ConfigError) as info:
        build_settings({}, env)
    assert info.value.problems == [
        "TWENTY_API_URL: 'http://crm.example.com' is plain http:// to crm.example.com, which "
        "would send the API key unencrypted over the network; use https://, or pass "
        "--allow-insecure (TWENTY_ALLOW_INSECURE=1) if the network between you and the "
        "server is trusted"
    ]
    assert KEY not in str(info.value)
    assert build_settings({"allow_insecure": True}, env).allow_insecure is True
    s = build_settings({}, {**env, "TWENTY_ALLOW_INSECURE": "1"})
    assert s.api_url == "http://crm.example.com" and s.allow_insecure


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:3000",
        "http://127.8.9.10",
        "http://[::1]:3000",
        "http://localhost:3000",
        "https://crm.example.com:8443/twenty",
        "https://münchen.example.de",
        "https://[2001:db8::1]",
        "https://10.0.0.7",
    ],
)
def test_plain_http_to_loopback_is_fine(url: str) -> None:
    """And every ordinary host name, IPv4 or IPv6 literal passes the URL checks."""
    assert build_settings({"api_url": url}, {"TWENTY_API_KEY": KEY}).api_url == url


def test_sandbox_beats_an_insecure_url_from_the_environment() -> None:
    s = build_settings({"sandbox": ""}, {"TWENTY_API_URL": "http://crm.example.com"})
    assert s.api_url is None and s.sandbox == DEFAULT_STATE_DIR / "sandbox.sqlite"


def test_allow_insecure_nonsense_is_refused() -> None:
    env = {**REAL, "TWENTY_ALLOW_INSECURE": "maybe"}
    with pytest.raises(ConfigError) as info:
        build_settings({}, env)
    assert info.value.problems == [
        "TWENTY_ALLOW_INSECURE: 'maybe' is not one of 1, 0, true, false, yes, no"
    ]


# ------------------------------------------------------------------ through the CLI


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (
            ["--api-url", "http://127.0.0.1:99999"],
            {"TWENTY_API_KEY": KEY},
            "Error: --api-url: 'http://127.0.0.1:99999' is not a valid URL (Port out of range "
            "0-65535); give the base URL, e.g. https://crm.example.com",
        ),
        (
            ["--api-url", "http://[::1"],
            {"TWENTY_API_KEY": KEY},
            "Error: --api-url: 'http://[::1' is not a valid URL (Invalid IPv6 URL); give the "
            "base URL, e.g. https://crm.example.com",
        ),
        (
            ["--api-url", "https://crm.example.com"],
            {"TWENTY_API_KEY": "sk-lïve"},
            f"Error: TWENTY_API_KEY: the API key holds non-ASCII characters {ADVICE}",
        ),
        (
            ["--api-url", "http://crm.example.com"],
            {"TWENTY_API_KEY": KEY},
            "Error: --api-url: 'http://crm.example.com' is plain http:// to crm.example.com, "
            "which would send the API key unencrypted over the network; use https://, or pass "
            "--allow-insecure (TWENTY_ALLOW_INSECURE=1) if the network between you and the "
            "server is trusted",
        ),
    ],
    ids=["port-out-of-range", "broken-ipv6", "non-ascii-key", "plain-http"],
)
def test_cli_refuses_before_any_call_in_one_line(
    args: list[str], env: dict[str, str], line: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["schema", *args])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.output.strip().splitlines() == [line]
    assert KEY not in result.output


def test_cli_key_file_with_comment_never_prints_the_key(tmp_path: Path) -> None:
    key = tmp_path / "twenty_key"
    key.write_text(f"{KEY}\n# prod key\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TWENTY_")},
        "TWENTY_API_URL": "https://crm.example.com",
        "TWENTY_API_KEY_FILE": str(key),
        "TWENTY_LOG_FORMAT": "json",
    }
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "schema"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()  # with JSON logs, the fatal line is JSON too
    assert json.loads(line)["message"] == (
        f"TWENTY_API_KEY_FILE ({key}): the file holds more than one line (the key is "
        "not shown); keep only the key in it, comments included"
    )
    assert KEY not in done.stdout + done.stderr
