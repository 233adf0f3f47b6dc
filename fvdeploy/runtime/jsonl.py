"""JSON Lines output that is never half-written: lines go to ``FILE.partial`` (flushed each line),
which is renamed to ``FILE`` at the end. An existing FILE is refused unless overwriting is asked
for, or resumed: its successful records are kept and their inputs skipped."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class OutputExists(Exception):
    pass


class JsonlWriter:
    def __init__(self, path: str | Path, *, force: bool = False, resume: bool = False) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.done: set[str] = set()
        kept: list[str] = []
        if self.path.exists():
            if not (force or resume):
                raise OutputExists(f"{self.path} exists; pass --force to overwrite it or --resume to continue it")
            if resume:
                for line in self.path.read_text().splitlines():
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if isinstance(rec, dict) and rec.get("path") and not rec.get("error"):
                        self.done.add(rec["path"])
                        kept.append(line)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.partial, "w")
        for line in kept:
            self._f.write(line + "\n")
        self._f.flush()

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()
        os.replace(self.partial, self.path)
