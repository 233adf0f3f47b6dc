"""The ``fvdeploy`` console script. Nothing but the standard library is imported before the
``try``, so a Ctrl-C while the command line itself is still importing is one line and exit 130,
not a traceback."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from .cli import main as cli_main

        cli_main()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
