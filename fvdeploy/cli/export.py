"""``fvdeploy export [--model] MODEL``: ONNX and TensorRT export bundles in ``MODEL/export/``.
Old spellings kept as hidden aliases: ``--onnx``/``--trt`` (= ``--format``), ``--fp16``
(= ``--precision fp16``), ``--out``/``-o`` (= ``--out-dir``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app, err, guarded, progress_bar, usage_error
from .choices import Precision


@app.command("export")
@guarded
def export(
    model_arg: Annotated[
        Optional[Path], typer.Argument(help="Model folder (same as --model).", metavar="MODEL", show_default=False)
    ] = None,
    model: Annotated[
        Optional[Path],
        typer.Option(
            "--model",
            "-m",
            help="Model folder; default: the bundled model (written to --out-dir, default ./fvdeploy-default-model, never into the package).",
        ),
    ] = None,
    formats: Annotated[
        Optional[list[str]],
        typer.Option(
            "--format",
            "-f",
            help="Formats (repeatable or comma-separated): onnx (default), int8 (NNCF, needs --calibrate), "
            "trt (needs tensorrt 10.x/11.x and a GPU).",
        ),
    ] = None,
    precision: Annotated[
        Optional[Precision], typer.Option(help="Precision of the TensorRT engines (the ONNX files are fp32).")
    ] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (14..20).")] = 17,
    min_frames: Annotated[int, typer.Option("--min-frames", help="Whole-graph frames profile: shortest video.")] = 1,
    opt_frames: Annotated[
        Optional[int],
        typer.Option(
            "--opt-frames",
            help="Whole-graph frames profile: the length TensorRT tunes for (default 64, within min..max).",
        ),
    ] = None,
    max_frames: Annotated[
        int,
        typer.Option(
            "--max-frames", help="Whole-graph frames profile: longest video; longer ones run through the split pair."
        ),
    ] = 256,
    max_batch: Annotated[
        int, typer.Option("--max-batch", help="Whole-graph TensorRT engine: most videos per call.")
    ] = 1,
    out_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--out-dir", help="Write a new model folder here (config, weights, export/) instead of MODEL/export."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force/--no-force", help="Replace an existing export bundle (or --out-dir folder).")
    ] = False,
    clip: Annotated[
        Optional[Path],
        typer.Option(
            help="A real video for the validation (default: the bundled sample, else one written with OpenCV)."
        ),
    ] = None,
    device: Annotated[
        str,
        typer.Option(help="trt: the CUDA device that builds and checks the engines (auto: cuda:0 when there is one)."),
    ] = "auto",
    workspace: Annotated[float, typer.Option(help="trt: builder workspace in GiB.")] = 4.0,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8/--no-int8",
            help="Also int8 graphs for --precision int8 on the CPU (NNCF post-training quantization; = --format int8).",
        ),
    ] = False,
    calibrate: Annotated[
        Optional[Path],
        typer.Option(help="int8: a folder of videos like the ones you will classify, to calibrate on."),
    ] = None,
    calibration_videos: Annotated[
        int, typer.Option("--calibration-videos", help="int8: at most this many videos of --calibrate.", min=1)
    ] = 100,
    calibration_frames: Annotated[
        int, typer.Option("--calibration-frames", help="int8: the first frames of each calibration video.", min=1)
    ] = 64,
    as_json: Annotated[
        bool, typer.Option("--json/--no-json", help="Print the export record (export.json) on stdout.")
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet/--no-quiet",
            "-q",
            help="No progress and no per-step lines (the bundle's path or --json still go to stdout).",
        ),
    ] = False,
    onnx: Annotated[bool, typer.Option("--onnx", hidden=True)] = False,
    trt: Annotated[bool, typer.Option("--trt", hidden=True)] = False,
    fp16: Annotated[bool, typer.Option("--fp16", hidden=True)] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", hidden=True)] = None,
) -> None:
    """Export a model for ONNX Runtime and TensorRT: the whole network in one graph (clustering
    inside, G fixed, N and T dynamic) and the split pair the runtime streams any length through.
    Every file is checked (onnx.checker, shape inference, ONNX Runtime vs PyTorch) before the
    bundle appears; a failed export leaves nothing behind."""
    from ..errors import ExportError
    from ..export import Exporter, ExportOptions

    if model is not None and model_arg is not None and model != model_arg:
        raise usage_error("name the model once: MODEL or --model")
    model = model if model is not None else model_arg
    if out is not None and out_dir is not None and out != out_dir:
        raise usage_error("--out is the old spelling of --out-dir; pass one")
    out = out_dir if out_dir is not None else out

    if fp16 and precision is not None and precision.value != "fp16":
        raise ExportError(f"--fp16 and --precision {precision.value} disagree; pass one of them")
    prec = "fp16" if fp16 else (precision.value if precision else "fp32")
    if device == "auto":
        device = "cuda"  # only a TensorRT build uses it, and that needs CUDA (a one-line error without)
    named = [f.strip().lower() for item in (formats or []) for f in item.split(",") if f.strip()]
    chosen = [f for f, on in (("onnx", onnx), ("int8", int8), ("trt", trt)) if on] + named
    formats = tuple(dict.fromkeys(chosen or ["onnx"]))
    options = ExportOptions(
        formats=formats,
        precision=prec,
        opset=opset,
        min_frames=min_frames,
        opt_frames=opt_frames,
        max_frames=max_frames,
        max_batch=max_batch,
        out=out,
        force=force,
        clip=clip,
        device=device,
        workspace_gib=workspace,
        calibrate=calibrate,
        calibration_videos=calibration_videos,
        calibration_frames=calibration_frames,
    )

    def log(message: str) -> None:
        err.print(message, highlight=False, soft_wrap=True, markup=False)

    with progress_bar(not quiet and err.is_terminal) as bar:
        task = bar.add_task("export", total=None, unit="steps") if bar else None

        def on_stage(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, total=total, description=what, refresh=True)

        result = Exporter(model, options, log=None if quiet else log, progress=on_stage if bar else None)()
    if as_json:
        typer.echo(json.dumps(result.record, indent=2))
    else:
        typer.echo(str(result.export_dir))
