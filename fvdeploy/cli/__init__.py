"""The ``fvdeploy`` command line: parse, call the library, print. Results go to stdout, logs,
progress and errors to stderr. A library error (FvdeployError) is one line and exit 1; usage
errors exit 2 (Typer's default)."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

err = Console(stderr=True)

app = typer.Typer(
    name="fvdeploy",
    help="Full-video action recognition: every frame seen, G temporal clusters, one pass.",
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
)


def print_error(message: str, kind: str = "error", style: str = "red") -> None:
    """One line on stderr; the message is escaped, so "pip install 'fvdeploy[trt]'" keeps its brackets."""
    from rich.markup import escape

    err.print(f"[{style}]{kind}:[/] {escape(str(message))}", markup=True, highlight=False, soft_wrap=True)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into one line on stderr and exit 1 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..errors import FvdeployError

        try:
            return fn(*args, **kwargs)
        except FvdeployError as e:
            print_error(str(e))
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as e:  # a bug, not bad input: still one line, traceback on request
            if os.environ.get("FVDEPLOY_DEBUG"):
                raise
            first = str(e).splitlines()[0] if str(e) else ""
            print_error(f"internal error {type(e).__name__}: {first} (set FVDEPLOY_DEBUG=1 for the traceback)")
            raise typer.Exit(1) from None

    return wrapper


def usage_error(message: str) -> typer.Exit:
    print_error(message, "usage error")
    return typer.Exit(2)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"fvdeploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """fvdeploy: classify, train and export full-video action recognition models."""


# Each part registers its commands from its own module.
from . import info  # noqa: E402,F401
from . import export  # noqa: E402,F401
from . import train  # noqa: E402,F401
from . import import_checkpoint  # noqa: E402,F401
from . import classify  # noqa: E402,F401
from . import watch  # noqa: E402,F401
from ..bench import cli as _bench_cli  # noqa: E402,F401


def main() -> None:
    app(prog_name="fvdeploy")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
