"""Expanding what the user named (files, directories, globs, manifests) into a list of inputs,
and taking one shard of it."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from ..io.urls import is_url
from ..io.video import describe_skipped, scan_folder


@dataclass(frozen=True)
class Input:
    path: str
    error: str | None = None  # known before decoding: nothing matched, empty directory, ...


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` with 0 <= I < N, else ValueError with the reason."""
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--shard must look like I/N (e.g. 0/4), got {text!r}")
    i, n = int(parts[0]), int(parts[1])
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {text}: need 0 <= I < N")
    return i, n


def read_manifest(path: str | Path) -> list[str]:
    """One path per line; blank lines and lines starting with # are skipped."""
    text = Path(path).read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def expand_inputs(paths: list[str], skipped: list[str] | None = None) -> list[Input]:
    """Files, directories (searched recursively for every video extension, case-insensitive,
    through symlinked sub-folders, each once) and globs as inputs; a URL as it is (its ``?`` starts
    a query, not a pattern). What a directory scan skips (other files, dangling links, folders
    already scanned) is described, one line per directory, in ``skipped`` (the CLI prints them:
    nothing is skipped silently)."""
    out: list[Input] = []
    for p in paths:
        if is_url(p):
            out.append(Input(p))
        elif any(ch in p for ch in "*?[") and not Path(p).exists():
            matches = sorted(glob.glob(p, recursive=True))
            if not matches:
                out.append(Input(p, f"{p}: no file matches this pattern"))
            for m in matches:
                out.extend(expand_inputs([m], skipped) if Path(m).is_dir() else [Input(m)])
        elif Path(p).is_dir():
            scan = scan_folder(p)
            if scan.skipped and skipped is not None:
                skipped.append(describe_skipped(p, scan.skipped))
            if not scan.videos:
                out.append(Input(p, f"{p}: directory contains no video files"))
            out.extend(Input(str(v)) for v in scan.videos)
        else:
            out.append(Input(p))
    return out


def take_shard(inputs: list[Input], shard: tuple[int, int] | None) -> list[Input]:
    if shard is None:
        return inputs
    i, n = shard
    return sorted(inputs, key=lambda x: x.path)[i::n]
