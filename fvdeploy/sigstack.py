"""Keep the calling thread's alternate signal stack across a library call that replaces it.

OpenVINO's CPU plugin installs an alternate signal stack of its own (mmap'd) on the thread that
creates it, for AMX (openvinotoolkit/openvino PR 11894, ``SigAltStackSetup``), and unmaps it when
the plugin unloads without putting the previous one back. Python runs its signal handlers
(Ctrl-C's KeyboardInterrupt, and SIGTERM/SIGHUP under ``cli/signals.py``) with ``SA_ONSTACK``, so
the first signal after an OpenVINO Core is gone was delivered onto unmapped memory: SIGSEGV, exit
139 instead of 130/143 (measured: ``Exporter(...)()`` with the OpenVINO check, then SIGINT to the
process; and the test suite, which sends SIGHUP to itself after the OpenVINO tests).

:func:`kept_signal_stack` reads the stack before the call (``sigaltstack(NULL, &old)``) and puts
it back after. Python's faulthandler stack (16 KiB here) is larger than OpenVINO's own (11 KiB),
so AMX signal frames still fit. Hand-written (ctypes, Linux/glibc); elsewhere it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from collections.abc import Iterator


class _StackT(ctypes.Structure):  # struct sigaltstack (stack_t), x86_64 and aarch64 Linux
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc if hasattr(libc, "sigaltstack") else None
    except OSError:
        return None


def current() -> tuple[int, int, int] | None:
    """(address, flags, size) of this thread's alternate signal stack; None where unknown."""
    libc = _libc()
    if libc is None:
        return None
    old = _StackT()
    if libc.sigaltstack(None, ctypes.byref(old)) != 0:
        return None
    return (old.ss_sp or 0, old.ss_flags, old.ss_size)


@contextlib.contextmanager
def kept_signal_stack() -> Iterator[None]:
    """Run the body, then give this thread back the alternate signal stack it had before."""
    libc = _libc()
    before = _StackT()
    saved = libc is not None and libc.sigaltstack(None, ctypes.byref(before)) == 0
    try:
        yield
    finally:
        if saved and libc is not None:
            now = _StackT()
            if libc.sigaltstack(None, ctypes.byref(now)) == 0 and (now.ss_sp, now.ss_size) != (
                before.ss_sp,
                before.ss_size,
            ):
                if before.ss_flags & 2:  # SS_DISABLE: there was none
                    before.ss_sp, before.ss_size = None, 0
                libc.sigaltstack(ctypes.byref(before), None)
