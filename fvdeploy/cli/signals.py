"""SIGTERM and SIGHUP behave as SIGINT (docs/design.md#signals): what Kubernetes, Slurm and Ray
send to stop a job, and what a closed terminal sends, wind a command down the way Ctrl-C does.

:func:`interruptible` wraps a command: while it runs, SIGTERM and SIGHUP raise :class:`Interrupted`
(a ``KeyboardInterrupt``) in the main thread, so every ``except KeyboardInterrupt`` /
``except BaseException`` / ``finally`` that cleans up after Ctrl-C (the output's complete lines
stay in ``FILE.partial``, the lock is released, decoders stop) runs for them too. ``guarded``
(``cli/app.py``) then prints one ``interrupted`` line and exits with :func:`exit_code`: 128 plus
the signal's number (SIGINT 130, SIGTERM 143, SIGHUP 129), the status a shell reports for a
process the signal ended.
"""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A stop request by ``signum`` (SIGTERM, SIGHUP), raised where Ctrl-C's KeyboardInterrupt would be."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def interruptible(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` with SIGTERM and SIGHUP raising :class:`Interrupted`; the previous handlers come
    back afterwards (in-process runs: tests, an application calling the command). Off the main
    thread (where Python cannot set handlers) ``fn`` runs as it is."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return fn(*args, **kwargs)
        previous = {sig: signal.signal(sig, _raise) for sig in SIGNALS}
        try:
            return fn(*args, **kwargs)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    return wrapper


def exit_code(interrupt: BaseException) -> int:
    """128 + the signal's number: 130 for Ctrl-C (a plain KeyboardInterrupt), 143 SIGTERM, 129 SIGHUP."""
    return 128 + getattr(interrupt, "signum", signal.SIGINT)


def describe(interrupt: BaseException) -> str:
    """The one stderr line: ``interrupted`` (Ctrl-C), ``interrupted (SIGTERM)``, ``interrupted (SIGHUP)``."""
    signum = getattr(interrupt, "signum", None)
    return "interrupted" if signum is None else f"interrupted ({signal.Signals(signum).name})"
