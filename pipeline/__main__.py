"""``python -m pipeline`` is the same CLI as ``twenty-pipeline``.

The entry point imports the CLI inside a guard, so that Ctrl-C while Python is still
loading the modules (the first fraction of a second) ends with exit 130 and one line,
not a traceback.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Console-script entry point."""
    try:
        from pipeline.cli import main as run_cli

        run_cli()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
