"""JSON Lines output that is never half-written: lines go to ``FILE.partial`` (flushed each line),
which is renamed to ``FILE`` at the end. An existing FILE is refused unless overwriting is asked
for, or resumed: the successful records of FILE and of a ``FILE.partial`` an interrupted run left
are kept (complete lines only) and their inputs skipped.

One writer per output: ``FILE.lock`` is held with ``flock`` for the writer's life, so a second run
on the same output is refused while the first runs. The kernel drops the lock when its process
dies, so a lock file left by a killed run never blocks the next one."""

from __future__ import annotations

import errno
import fcntl
import json
import os
from pathlib import Path
from typing import Any

from ..errors import FvdeployError


class OutputExists(Exception):
    pass


class OutputLocked(FvdeployError):
    """Another live process is writing the same output file."""


def _complete_records(path: Path) -> list[tuple[str, dict]]:
    """(line, record) for each complete line of ``path`` (ends with a newline, parses as a JSON
    object); a line cut by an interrupt is dropped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for raw in data.split(b"\n")[:-1]:  # the piece after the last newline is incomplete
        try:
            line = raw.decode()
            rec = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(rec, dict):
            out.append((line, rec))
    return out


class _Lock:
    """An exclusive ``flock`` on ``path`` (created if missing), removed on release. After taking
    the lock the file must still be the one at ``path``: a releasing writer may have just
    unlinked it, and a lock on an unlinked file guards nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EAGAIN, errno.EACCES):
                    owner = ""
                    try:
                        owner = f" (pid {path.read_text().strip()})" if path.read_text().strip() else ""
                    except OSError:
                        pass
                    raise OutputLocked(
                        f"{path.with_suffix('')}: another fvdeploy run is writing it{owner}; "
                        "wait for it or choose another --output"
                    ) from None
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)  # closing drops the flock
        self.fd = -1


class JsonlWriter:
    """``path``: the output file. Raises ``OutputExists`` (FILE exists, neither ``force`` nor
    ``resume``), ``OutputLocked`` (another live run writes it), ``OSError`` (cannot write)."""

    def __init__(self, path: str | Path, *, force: bool = False, resume: bool = False) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.done: set[str] = set()
        if self.path.exists() and not (force or resume):
            raise OutputExists(f"{self.path} exists; pass --force to overwrite it or --resume to continue it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _Lock(self.path.with_name(self.path.name + ".lock"))
        # an interrupted run's results (checked under the lock, so not a live run's): never dropped silently
        if not (force or resume) and self.partial.exists() and next(iter(_complete_records(self.partial)), None):
            self._lock.release()
            raise OutputExists(
                f"{self.partial} holds an interrupted run's results; pass --resume to continue it "
                "or --force to start over"
            )
        kept: list[str] = []
        if resume:  # FILE first, then what an interrupted run left in FILE.partial
            for source in (self.path, self.partial):
                for line, rec in _complete_records(source):
                    p = rec.get("path")
                    if p and not rec.get("error") and p not in self.done:
                        self.done.add(p)
                        kept.append(line)
        try:
            self._f = open(self.partial, "w")  # the usual mode (0666 less the umask)
            for line in kept:
                self._f.write(line + "\n")
            self._f.flush()
        except BaseException:
            self._lock.release()
            raise

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record, allow_nan=False) + "\n")
        self._f.flush()

    def close(self) -> None:
        """Finish: FILE.partial becomes FILE, the lock goes."""
        self._f.close()
        os.replace(self.partial, self.path)
        self._lock.release()

    def abort(self) -> None:
        """Stop without finishing (an interrupt, an error): the complete lines stay in FILE.partial
        for ``--resume``; the lock goes. Does nothing after ``close``."""
        if self._lock.fd < 0:
            return
        self._f.close()
        self._lock.release()
