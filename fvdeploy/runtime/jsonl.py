"""Output files that are never half-written, whatever the format (issue 24): JSON Lines here,
Parquet in ``arrow.py`` on the same machinery.

- **One writer per output.** ``FILE.lock`` is held (``filelock``: ``flock`` on a file opened
  without following symlinks) for the writer's life, so a second run on the same output is refused
  with one line naming the pid that writes it. The kernel drops the lock when its process dies, so
  a lock file left by a killed run (SIGKILL, OOM) never blocks the next one: that run takes it
  over and says so (``notes``).
- **Finished rows survive a SIGKILL.** Records go to ``FILE.partial`` as JSON lines, each flushed
  as it is written; a line cut by the kill is dropped when the file is read back.
- **Resume.** ``resume=True`` keeps the successful records of FILE and of the ``FILE.partial`` an
  interrupted run left (complete lines only, each input once) and ``done`` names their inputs.
  An existing FILE, or a ``FILE.partial`` holding an interrupted run's results, is refused unless
  ``force`` or ``resume``.
- **Atomic finish.** ``close()`` syncs ``FILE.partial`` and renames it to FILE: FILE is either
  what it was before the run or the whole new output, never a mixture.
- **I/O errors** (disk full, quota, I/O error) are one :class:`OutputError` line naming FILE
  (``FILE: no space left on device``); ``abort()`` then releases the lock and keeps the complete
  lines in ``FILE.partial``; an earlier FILE is untouched.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import FvdeployError
from ..records import dumps


class OutputExists(Exception):
    pass


class OutputLocked(FvdeployError):
    """Another live process is writing the same output file."""


class OutputError(FvdeployError):
    """The output cannot be written (disk full, permission denied, I/O error): one line naming it."""


def os_error(path: Path, e: OSError) -> OutputError:
    """``FILE: no space left on device``: the error's strerror, first letter lowered. pyarrow's
    OSErrors carry the errno only in their text ("[errno 28] ..."): it is read from there."""
    code = e.errno
    if code is None:
        m = re.search(r"errno (\d+)", str(e), re.IGNORECASE)
        code = int(m.group(1)) if m else None
    why = os.strerror(code) if code else (e.strerror or str(e).splitlines()[0] if str(e) else type(e).__name__)
    return OutputError(f"{path}: {why[:1].lower()}{why[1:]}")


def iter_records(path: Path) -> Iterator[tuple[str, dict]]:
    """(line, record) for each complete line of ``path`` (ends with a newline, parses as a JSON
    object), read one line at a time; a line cut by an interrupt is dropped. Nothing if absent."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        for raw in f:
            if not raw.endswith(b"\n"):  # the piece after the last newline is incomplete
                return
            try:
                line = raw[:-1].decode()
                rec = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                continue
            if isinstance(rec, dict):
                yield line, rec


def complete_records(path: Path) -> list[tuple[str, dict]]:
    """``iter_records`` as a list."""
    return list(iter_records(path))


def _pid_in(path: Path) -> int | None:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class OutputLock:
    """``OUTPUT.lock`` held exclusively (``filelock.FileLock``, non-blocking) with this process's
    pid in it; removed on release. Raises :class:`OutputLocked` when a live process holds it.
    ``note``: set when the lock file was left by a process that no longer runs (it is taken over)."""

    def __init__(self, output: Path) -> None:
        import filelock

        self.output = output
        self.path = output.with_name(output.name + ".lock")
        left_by = _pid_in(self.path)
        self._lock = filelock.FileLock(str(self.path), timeout=0)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            pid = _pid_in(self.path)
            owner = f" (pid {pid})" if pid else ""
            raise OutputLocked(
                f"{output}: another fvdeploy run is writing it{owner}; wait for it or choose another --output"
            ) from None
        self.note = None
        if left_by is not None and left_by != os.getpid() and not _alive(left_by):
            self.note = f"{self.path}: taking over the lock of pid {left_by}, which ended without releasing it"
        try:  # our pid, for the message a second writer gets (O_NOFOLLOW: filelock opened it so too)
            fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0))
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)
        except OSError:
            pass  # a full disk: the lock holds all the same, only the pid is missing from the message
        self.held = True

    def release(self) -> None:
        """Remove the lock file, then drop the lock (a waiter that opened the removed file sees it
        gone and does not take a lock that guards nothing). Idempotent."""
        if not self.held:
            return
        self.held = False
        try:
            os.unlink(self.path)
        except OSError:
            pass
        self._lock.release(force=True)


class JsonlWriter:
    """``path``: the output file. Raises ``OutputExists`` (FILE exists, neither ``force`` nor
    ``resume``; its message offers ``--resume`` only when ``resumable``), ``OutputLocked`` (another
    live run writes it), ``OutputError`` (cannot write, or ``path`` is a folder)."""

    def __init__(self, path: str | Path, *, force: bool = False, resume: bool = False, resumable: bool = True) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.done: set[str] = set()
        self.notes: list[str] = []
        # before any work: the result replaces FILE at the end (an atomic rename), which must
        # never turn a folder, a device (/dev/null as root) or a pipe into a plain file
        if self.path.is_dir():
            raise OutputError(f"{self.path}: is a folder; name a file for the output")
        if self.path.exists() and not self.path.is_file():
            raise OutputError(
                f"{self.path}: not a regular file (a device, pipe or socket); --output writes a file and replaces "
                "it when done: name a regular file"
            )
        if self.path.exists() and not (force or resume):
            how = " or --resume to continue it" if resumable else ""
            raise OutputExists(f"{self.path} exists; pass --force to overwrite it{how}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = OutputLock(self.path)
        except OSError as e:
            raise os_error(self.path, e) from None
        if self._lock.note:
            self.notes.append(self._lock.note)
        try:
            # an interrupted run's results (checked under the lock, so not a live run's): never dropped silently
            if not (force or resume) and next(iter_records(self.partial), None) is not None:
                how = (
                    "pass --resume to continue it or --force to start over"
                    if resumable
                    else "pass --force to start over"
                )
                raise OutputExists(f"{self.partial} holds an interrupted run's results; {how}")
            kept: list[str] = []
            if resume:  # FILE first, then what an interrupted run left in FILE.partial
                for line, rec in itertools.chain(self._finished_records(), iter_records(self.partial)):
                    p = rec.get("path")
                    if p and not rec.get("error") and p not in self.done:
                        self.done.add(p)
                        kept.append(line)
            self._f = open(self.partial, "w")  # the usual mode (0666 less the umask)
            for line in kept:
                self._f.write(line + "\n")
            self._f.flush()
        except OSError as e:
            self._release()
            raise os_error(self.path, e) from None
        except BaseException:
            self._release()
            raise

    # -- what a format changes ----------------------------------------------------------------------
    def _finished_records(self) -> Iterable[tuple[str, dict]]:
        """(line, record) of the finished FILE (resume)."""
        return complete_records(self.path)

    def _finish(self) -> None:
        """FILE.partial (synced, closed) becomes FILE."""
        os.replace(self.partial, self.path)

    # -- writing ------------------------------------------------------------------------------------
    def write(self, record: dict[str, Any]) -> None:
        """One record as one flushed line; OutputError (naming FILE) when it cannot be written."""
        try:
            self._f.write(dumps(record) + "\n")
            self._f.flush()
        except OSError as e:
            raise os_error(self.path, e) from None

    def close(self) -> None:
        """Finish: FILE.partial becomes FILE, the lock goes (also when finishing fails)."""
        if not self._lock.held:
            return
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            self._finish()
        except OSError as e:
            raise os_error(self.path, e) from None
        finally:
            self._release()

    def abort(self) -> None:
        """Stop without finishing (an interrupt, an error): the complete lines stay in FILE.partial
        for ``--resume``; the lock goes. Does nothing after ``close``."""
        if not self._lock.held:
            return
        self._release()

    def _release(self) -> None:
        f = getattr(self, "_f", None)
        if f is not None and not f.closed:
            try:
                f.close()
            except OSError:  # a full disk: what was flushed stays, the cut line is dropped on reading
                pass
        self._lock.release()
