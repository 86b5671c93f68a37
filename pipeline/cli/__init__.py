"""The command line: flags -> Settings, PipelineError -> exit code, output and progress.

Only this package imports click; stages stay plain functions. ``base`` holds the group
and what every command shares; each other module adds its commands to the group when
imported.
"""

from __future__ import annotations

from pipeline.cli import (
    explore,
    exporting,
    initializing,
    loading,
    migrating,
    planning,
    running,
    sandbox,
    undoing,
)
from pipeline.cli.base import cli, setup_logging

__all__ = [
    "cli",
    "explore",
    "exporting",
    "initializing",
    "loading",
    "main",
    "migrating",
    "planning",
    "running",
    "sandbox",
    "setup_logging",
    "undoing",
]


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="twenty-pipeline")
