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
    err.print(msg, highlight=False, soft_wrap=True, markup=False)


@bench_app.command("memory")
@guarded
def memory(
    model: Annotated[
        Optional[Path], typer.Option("--model", "-m", help="Model folder; default: the bundled model.")
    ] = None,
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
    model: Annotated[
        Optional[Path], typer.Option("--model", "-m", help="Model folder; default: the bundled model.")
    ] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    decoder: Annotated[Optional[str], typer.Option(help="opencv | nvdec | auto (default: auto on CUDA).")] = None,
    fast_resize: Annotated[
        bool, typer.Option("--fast-resize", help="CPU: resize in uint8 (see fvdeploy classify --help).")
    ] = False,
) -> None:
    """End-to-end frames/s vs decode-only frames/s of the same file in the same run."""
    from ..bench import bench_throughput
    from ..runtime.sources import FileSource

    FileSource(video)  # one-line error for a bad file before loading anything
    typer.echo(
        json.dumps(bench_throughput(str(video), str(model) if model else None, device, decoder, fast_resize, log=_log))
    )


@bench_app.command("model")
@guarded
def model_only(
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    arch: Annotated[str, typer.Option(help="resnet18 | resnet50 (random weights) unless --model.")] = "resnet50",
    model: Annotated[
        Optional[Path], typer.Option("--model", "-m", help="Use this model folder's weights and input size.")
    ] = None,
    frames: Annotated[int, typer.Option(help="Frames in the video.", min=1)] = 3000,
    precision: Annotated[Optional[str], typer.Option(help="fp32 | fp16 | bf16 (default fp16 on CUDA).")] = None,
    size: Annotated[int, typer.Option(help="Input crop.", min=16)] = 224,
    clusters: Annotated[int, typer.Option(help="G.", min=1)] = 8,
    batch: Annotated[int, typer.Option(help="Batch of the plain-ResNet yardstick.", min=1)] = 256,
    chunk: Annotated[int, typer.Option(help="Frames per stem+layer1 call.", min=1)] = 64,
    quick: Annotated[bool, typer.Option(help="resnet18, 48 frames at 64 px, batch 8: a smoke test.")] = False,
    compile: Annotated[
        bool,
        typer.Option("--compile", help="torch.compile stem+layer1 on the fixed chunk shape (measure whether it pays)."),
    ] = False,
) -> None:
    """Model-only frames/s: full-video model (G clusters) vs TSM-all, plus a plain ResNet's images/s."""
    from ..bench import bench_model

    if quick:
        arch, frames, size, batch, chunk = "resnet18", 48, 64, 8, 16
    typer.echo(
        json.dumps(
            bench_model(
                arch,
                device,
                precision,
                frames,
                size,
                clusters,
                batch,
                chunk,
                str(model) if model else None,
                compile=compile,
                log=_log,
            )
        )
    )


@bench_app.command("corpus")
@guarded
def corpus(
    folder: Annotated[Path, typer.Argument(help="A folder of videos (searched recursively).")],
    model: Annotated[
        Optional[Path], typer.Option("--model", "-m", help="Model folder; default: the bundled model.")
    ] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    decode_workers: Annotated[Optional[int], typer.Option(help="Videos decoded in parallel.", min=1)] = None,
    decoder: Annotated[Optional[str], typer.Option(help="opencv | nvdec | auto.")] = None,
    ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Compare the local run with Ray Data, 1 and 2 CPU actors on the same cores (needs fvdeploy[ray]).",
        ),
    ] = False,
    ray_address: Annotated[
        str, typer.Option(help="With --ray: local (start a cluster here), auto or an address.")
    ] = "local",
    threads: Annotated[
        int, typer.Option(help="With --ray: torch threads of each process (local and every actor).", min=1)
    ] = 1,
) -> None:
    """videos/s and frames/s over a folder of clips (the realistic batch job), CPU s/frame, GPU busy."""
    from ..bench import bench_corpus

    if ray:
        from ..bench import bench_corpus_ray

        typer.echo(
            json.dumps(
                bench_corpus_ray(str(folder), str(model) if model else None, ray_address, threads=threads, log=_log)
            )
        )
        return
    typer.echo(
        json.dumps(bench_corpus(str(folder), str(model) if model else None, device, decode_workers, decoder, log=_log))
    )


@bench_app.command("precision")
@guarded
def precision_agreement(
    folder: Annotated[Path, typer.Argument(help="A folder of videos (searched recursively).")],
    model: Annotated[
        Optional[Path], typer.Option("--model", "-m", help="Model folder; default: the bundled model.")
    ] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    precision: Annotated[str, typer.Option(help="The reduced precision to compare with fp32: fp16 | bf16.")] = "fp16",
) -> None:
    """Reduced vs fp32 stem+layer1: top-1 agreement and cluster-boundary shifts over many clips."""
    from ..bench import bench_precision
    from ..io.video import find_videos

    paths = [str(p) for p in find_videos(folder)] if folder.is_dir() else [str(folder)]
    typer.echo(json.dumps(bench_precision(paths, str(model) if model else None, device, precision, log=_log)))
