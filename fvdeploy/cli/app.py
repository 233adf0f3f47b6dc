"""The ``fvdeploy`` application object and what every command shares: parse, call the library, print. Results go to stdout, logs,
progress and errors to stderr. A library error (FvdeployError) is one line and exit 1; usage
errors exit 2 (Typer's default)."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, Optional

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
    """Turn library errors into one line on stderr and exit 1 (no traceback); an interrupt into
    one ``interrupted`` line and exit 128 + its signal (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..errors import FvdeployError

        try:
            return fn(*args, **kwargs)
        except FvdeployError as e:
            print_error(str(e))
            raise typer.Exit(1) from None
        except KeyboardInterrupt as e:  # Ctrl-C, and SIGTERM/SIGHUP under signals.interruptible
            from .signals import describe, exit_code

            err.print(describe(e), highlight=False, markup=False)
            raise typer.Exit(exit_code(e)) from None
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


@contextlib.contextmanager
def progress_bar(enabled: bool, *columns: Any) -> Iterator[Any]:
    """A rich progress display on stderr with done/total, rate (``unit`` field of a task, per
    second) and ETA; yields None when disabled (-q, or stderr is not a terminal)."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            unit = task.fields.get("unit", "it")
            return Text(f"{speed:,.1f} {unit}/s" if speed else f"- {unit}/s", style="progress.data.speed")

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        *columns,
        console=err,
        transient=True,
    ) as progress:
        yield progress


@contextlib.contextmanager
def status(message: str, enabled: bool) -> Iterator[None]:
    """A spinner on stderr while something slow without a count runs (loading a model)."""
    if not enabled:
        yield
        return
    with err.status(message):
        yield


LOG_LEVELS = ("debug", "info", "warning", "error")


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"fvdeploy {__version__}")
        raise typer.Exit()


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes, not the stream of the first
    command: in-process runs (tests, CliRunner) swap it per command and close the old one."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(level: str) -> None:
    """The library logs under ``fvdeploy``; one handler on stderr, set once per process."""
    logger = logging.getLogger("fvdeploy")
    logger.setLevel(level.upper())
    if not any(getattr(h, "_fvdeploy", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._fvdeploy = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="More library logging on stderr: -v info, -vv debug."
    ),
    log_level: Optional[str] = typer.Option(
        None, "--log-level", help="Library log level: debug | info | warning | error (default: warning)."
    ),
) -> None:
    """fvdeploy: classify, train and export full-video action recognition models."""
    if log_level is not None and log_level.lower() not in LOG_LEVELS:
        raise usage_error(f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    level = log_level or ("debug" if verbose >= 2 else "info" if verbose == 1 else "warning")
    configure_logging(level)


def main() -> None:
    try:
        app(prog_name="fvdeploy")
    except KeyboardInterrupt:  # outside a command (guarded handles those): still one line
        sys.stderr.write("interrupted\n")
        sys.exit(130)
