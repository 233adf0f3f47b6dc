"""``fvdeploy bench onnx``: ONNX Runtime vs PyTorch eager on the same clip (last stdout line: JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import err, guarded
from .bench import bench_app


@bench_app.command("onnx")
@guarded
def onnx_vs_torch(
    video: Annotated[Optional[Path], typer.Argument(help="A video file; default: a generated clip.")] = None,
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="Model folder (its export bundle is used, or a temporary one made); default: the bundled model.")] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N (ONNX Runtime's CUDA provider, no fallback).")] = "cpu",
    frames: Annotated[int, typer.Option(help="Frames of the generated clip.", min=1)] = 600,
    repeats: Annotated[int, typer.Option(help="Timed runs per figure (the best is kept).", min=1)] = 2,
    threads: Annotated[Optional[int], typer.Option(help="Intra-op threads for both (default: torch's).", min=1)] = None,
    quick: Annotated[bool, typer.Option("--quick", help="48 frames at 96x64, one run: a smoke test.")] = False,
    backends: Annotated[Optional[str], typer.Option("--backends", help="Comma-separated: torch,onnxruntime,openvino (default: those installed; OpenVINO on the CPU only).")] = None,
) -> None:
    """PyTorch eager vs ONNX Runtime (and OpenVINO), model only and end to end, as ratios (PyTorch s / backend s), with parity figures."""
    from ..export.bench import bench_onnx
    from ..io.video import probe

    if video is not None:
        probe(video)  # one-line error for a bad file before anything is loaded
    size = (320, 180)
    if quick:
        frames, repeats, size = 48, 1, (96, 64)

    def log(message: str) -> None:
        err.print(message, highlight=False, soft_wrap=True, markup=False)

    out = bench_onnx(str(model) if model else None, str(video) if video else None, device, frames, repeats, size=size,
                     threads=threads, log=log,
                     backends=tuple(b.strip() for b in backends.split(",") if b.strip()) if backends else None)
    typer.echo(json.dumps(out))
