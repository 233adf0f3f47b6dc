"""The ``fvdeploy`` command line: parse, call the library, print. Results go to stdout, logs,
progress and errors to stderr. A library error (FvdeployError) is one line and exit 1; usage
errors exit 2 (Typer's default).

``app.py`` holds the Typer application and the helpers every command shares; each command
registers itself from its own module, imported here (they import ``app.py``, never this package).
"""

from __future__ import annotations

from . import bench, classify, export, import_checkpoint, info, serve, train, watch  # noqa: F401  (registration)
from .app import app, err, guarded, main, print_error, usage_error

__all__ = ["app", "err", "guarded", "main", "print_error", "usage_error"]
