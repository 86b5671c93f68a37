"""``python -m pipeline`` is the same CLI as ``twenty-pipeline``.

The entry point imports the CLI inside a guard, so that Ctrl-C while Python is still
loading the modules (the first fraction of a second) ends with exit 130 and one line,
not a traceback.

Every exit 130 (interrupted while loading or while running) leaves with ``os._exit``
rather than ``sys.exit``: when the interrupt passed through
code that an extension module ran while being imported, CPython remembers it as an
unhandled Ctrl-C even though we caught it, and would end the process by SIGINT (-2)
instead of our 130. Nothing is left to clean up at this point: the state store commits
every batch as it goes.
"""

from __future__ import annotations

import contextlib
import os
import sys


def main() -> None:
    """Console-script entry point."""
    try:
        from pipeline.cli import main as run_cli

        run_cli()
    except SystemExit as done:
        if done.code != 130:
            raise
        _leave_interrupted()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        _leave_interrupted()


def _leave_interrupted() -> None:
    """Exit 130 now (see the module docstring for why not ``sys.exit``)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(130)


if __name__ == "__main__":
    main()
