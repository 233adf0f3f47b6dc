"""``fvdeploy export [MODEL]``: ONNX and TensorRT export bundles in ``MODEL/export/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import app, err, guarded
from .choices import Precision


@app.command("export")
@guarded
def export(
    model: Annotated[Optional[Path], typer.Argument(help="Model folder; default: the bundled model (written to --out, "
                                                         "default ./fvdeploy-default-model, never into the package).")] = None,
    onnx: Annotated[bool, typer.Option("--onnx", help="ONNX: model.onnx, frontend.onnx, backend.onnx (the default format).")] = False,
    trt: Annotated[bool, typer.Option("--trt", help="TensorRT engines too (needs tensorrt 10.x/11.x and a GPU; built from the ONNX).")] = False,
    formats: Annotated[Optional[list[str]], typer.Option("--format", "-f", help="Formats by name (repeatable): onnx, trt. Same as --onnx / --trt.")] = None,
    precision: Annotated[Optional[Precision], typer.Option(help="Precision of the TensorRT engines (the ONNX files are fp32).")] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="Same as --precision fp16.")] = False,
    opset: Annotated[int, typer.Option(help="ONNX opset (14..20).")] = 17,
    min_frames: Annotated[int, typer.Option("--min-frames", help="Whole-graph frames profile: shortest video.")] = 1,
    opt_frames: Annotated[Optional[int], typer.Option("--opt-frames", help="Whole-graph frames profile: the length TensorRT tunes for (default 64, within min..max).")] = None,
    max_frames: Annotated[int, typer.Option("--max-frames", help="Whole-graph frames profile: longest video; longer ones run through the split pair.")] = 256,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Whole-graph TensorRT engine: most videos per call.")] = 1,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write a new model folder here (config, weights, export/) instead of MODEL/export.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing export bundle (or --out folder).")] = False,
    clip: Annotated[Optional[Path], typer.Option(help="A real video for the validation (default: the bundled sample, else one written with OpenCV).")] = None,
    device: Annotated[str, typer.Option(help="--trt: the CUDA device that builds and checks the engines.")] = "cuda",
    workspace: Annotated[float, typer.Option(help="--trt: builder workspace in GiB.")] = 4.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the export record (export.json) on stdout.")] = False,
) -> None:
    """Export a model for ONNX Runtime and TensorRT: the whole network in one graph (clustering
    inside, G fixed, N and T dynamic) and the split pair the runtime streams any length through.
    Every file is checked (onnx.checker, shape inference, ONNX Runtime vs PyTorch) before the
    bundle appears; a failed export leaves nothing behind."""
    from ..errors import ExportError
    from ..export import Exporter, ExportOptions

    if fp16 and precision not in (None, Precision.fp16):
        raise ExportError(f"--fp16 and --precision {precision.value} disagree; pass one of them")
    prec = "fp16" if fp16 else (precision.value if precision else "fp32")
    named = [f.strip().lower() for item in (formats or []) for f in item.split(",") if f.strip()]
    chosen = [f for f, on in (("onnx", onnx), ("trt", trt)) if on] + named
    formats = tuple(dict.fromkeys(chosen or ["onnx"]))
    options = ExportOptions(formats=formats, precision=prec, opset=opset, min_frames=min_frames, opt_frames=opt_frames,
                            max_frames=max_frames, max_batch=max_batch, out=out, force=force, clip=clip, device=device,
                            workspace_gib=workspace)

    def log(message: str) -> None:
        err.print(message, highlight=False, soft_wrap=True, markup=False)

    result = Exporter(model, options, log=log)()
    if as_json:
        typer.echo(json.dumps(result.record, indent=2))
    else:
        typer.echo(str(result.export_dir))
