"""``fvdeploy bench ...``: benchmark commands (figures for humans on stderr, one JSON line last)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import app, err, guarded

bench_app = typer.Typer(help="Benchmarks: each prints one JSON object as its last line.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def _log(msg: str) -> None:
    err.print(msg, highlight=False, soft_wrap=True)


@bench_app.command("memory")
@guarded
def memory(
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="Model folder; default: the bundled model.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    max_memory: Annotated[int, typer.Option("--max-memory", help="The runtime's budget in MiB.", min=16)] = 256,
    frames: Annotated[str, typer.Option(help="Comma-separated video lengths.")] = "300,10000,30000",
    size: Annotated[str, typer.Option(help="WxH of the generated clips.")] = "320x180",
    quick: Annotated[bool, typer.Option(help="Small lengths (100,1000,3000) at 96x64, for smoke tests.")] = False,
) -> None:
    """Peak memory growth over the loaded model for videos of the same content and different lengths."""
    from ..bench import bench_memory
    from ..backends import resolve_device

    resolve_device(device)  # a bad device is a one-line error before any clip is written
    lengths = [100, 1000, 3000] if quick else [int(x) for x in frames.split(",")]
    w, h = (96, 64) if quick else (int(v) for v in size.lower().split("x"))
    out = bench_memory(str(model) if model else None, device, max_memory, lengths, w, h, log=_log)
    typer.echo(json.dumps(out))


@bench_app.command("throughput")
@guarded
def throughput(
    video: Annotated[Path, typer.Argument(help="A video file.")],
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="Model folder; default: the bundled model.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
) -> None:
    """End-to-end frames/s vs decode-only frames/s of the same file in the same run."""
    from ..bench import bench_throughput
    from ..runtime.sources import FileSource

    FileSource(video)  # one-line error for a bad file before loading anything
    typer.echo(json.dumps(bench_throughput(str(video), str(model) if model else None, device, log=_log)))
