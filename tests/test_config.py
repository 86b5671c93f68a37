"""Settings: precedence, validation (every problem at once), secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

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
