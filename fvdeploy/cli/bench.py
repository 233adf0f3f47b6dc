"""``fvdeploy bench ...``: benchmark commands (figures for humans on stderr, one JSON line last).
Each command parses its options and imports its benchmark module only when it runs, so
``fvdeploy --help`` stays light."""

from __future__ import annotations

import json
import tempfile
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app, err, guarded, usage_error
from .choices import Arch, BackendName, Decoder, Precision

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
    quick: Annotated[
        bool, typer.Option("--quick/--no-quick", help="Small lengths (100,1000,3000) at 96x64, for smoke tests.")
    ] = False,
) -> None:
    """Peak memory growth over the loaded model for videos of the same content and different lengths."""
    from ..backends import resolve_device
    from ..bench.memory import bench_memory

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
    decoder: Annotated[Optional[Decoder], typer.Option(help="Default: auto on CUDA, opencv on CPU.")] = None,
    fast_resize: Annotated[
        bool,
        typer.Option("--fast-resize/--no-fast-resize", help="No effect (resizing is uint8 always).", hidden=True),
    ] = False,
    repeats: Annotated[int, typer.Option(help="Alternating runs of each; the best of each is reported.", min=1)] = 3,
) -> None:
    """End-to-end frames/s vs decode-only frames/s of the same file in the same run.

    Decode-only opens the file and reads every frame (no resize); end to end is classify, which
    also resizes (in its decode thread on the CPU: "resize" in the JSON), preprocesses and runs the
    model. ratio = end to end / decode-only; each run's timings are its end-to-end run's."""
    from ..bench.throughput import bench_throughput
    from ..io.sources import open_source

    open_source(str(video)).close()  # one-line error for a bad file before loading anything
    typer.echo(
        json.dumps(
            bench_throughput(
                str(video),
                str(model) if model else None,
                device,
                decoder.value if decoder else None,
                repeats,
                log=_log,
            )
        )
    )


@bench_app.command("model")
@guarded
def model_only(
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    arch: Annotated[Arch, typer.Option(help="Random weights of this architecture, unless --model.")] = Arch.resnet50,
    model: Annotated[
        Optional[Path], typer.Option("--model", "-m", help="Use this model folder's weights and input size.")
    ] = None,
    frames: Annotated[int, typer.Option(help="Frames in the video.", min=1)] = 3000,
    precision: Annotated[Optional[Precision], typer.Option(help="Default: fp16 on CUDA, fp32 on CPU.")] = None,
    size: Annotated[int, typer.Option(help="Input crop.", min=16)] = 224,
    clusters: Annotated[int, typer.Option(help="G.", min=1)] = 8,
    batch: Annotated[int, typer.Option(help="Batch of the plain-ResNet yardstick.", min=1)] = 256,
    chunk: Annotated[int, typer.Option(help="Frames per stem+layer1 call.", min=1)] = 64,
    quick: Annotated[
        bool, typer.Option("--quick/--no-quick", help="resnet18, 48 frames at 64 px, batch 8: a smoke test.")
    ] = False,
    compile: Annotated[
        bool,
        typer.Option(
            "--compile/--no-compile",
            help="torch.compile stem+layer1 on the fixed chunk shape (measure whether it pays).",
        ),
    ] = False,
    block_frames: Annotated[
        Optional[int],
        typer.Option(
            help=(
                "CPU cache blocking inside each --chunk call: stem+layer1 advance this many frames at "
                "a time so their maps stay in cache (0: the whole chunk at once; default: what the "
                "runtime picks, by device and crop; at or above --chunk it changes nothing)."
            ),
            min=0,
        ),
    ] = None,
    threads: Annotated[
        Optional[int],
        typer.Option(
            help="torch intra-op threads (default: torch's, one per core; more than the cores slows it).", min=1
        ),
    ] = None,
) -> None:
    """Model-only frames/s: full-video model (G clusters) vs TSM-all, plus a plain ResNet's images/s."""
    from ..bench.model import bench_model

    if quick:
        arch, frames, size, batch, chunk = Arch.resnet18, 48, 64, 8, 16
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    typer.echo(
        json.dumps(
            bench_model(
                arch.value,
                device,
                precision.value if precision else None,
                frames,
                size,
                clusters,
                batch,
                chunk,
                str(model) if model else None,
                compile=compile,
                block_frames=block_frames,
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
    decoder: Annotated[Optional[Decoder], typer.Option(help="Default: auto on CUDA, opencv on CPU.")] = None,
    ray: Annotated[
        bool,
        typer.Option(
            "--ray/--no-ray",
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
    from ..bench.corpus import bench_corpus

    if ray:
        from ..bench.corpus import bench_corpus_ray

        out = bench_corpus_ray(str(folder), str(model) if model else None, ray_address, threads=threads, log=_log)
        typer.echo(json.dumps(out))
        return

    typer.echo(
        json.dumps(
            bench_corpus(
                str(folder),
                str(model) if model else None,
                device,
                decode_workers,
                decoder.value if decoder else None,
                log=_log,
            )
        )
    )


@bench_app.command("precision")
@guarded
def precision_agreement(
    folder: Annotated[Path, typer.Argument(help="A folder of videos (searched recursively).")],
    model: Annotated[
        Optional[Path], typer.Option("--model", "-m", help="Model folder; default: the bundled model.")
    ] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    precision: Annotated[Precision, typer.Option(help="The reduced precision to compare with fp32.")] = Precision.fp16,
    backend: Annotated[
        BackendName, typer.Option(help="What runs it (auto: the rule in fvdeploy.backends.choice).")
    ] = BackendName.auto,
    features_precision: Annotated[
        Optional[Precision],
        typer.Option(help="Precision of stem + layer1, whose signs the clustering reads (default: --precision)."),
    ] = None,
) -> None:
    """Reduced precision vs fp32: model frames/s, top-1 agreement and cluster-boundary shifts over many clips."""
    from ..bench.precision import bench_precision
    from ..io.video import find_videos

    paths = [str(p) for p in find_videos(folder)] if folder.is_dir() else [str(folder)]
    out = bench_precision(
        paths,
        str(model) if model else None,
        device,
        precision.value,
        log=_log,
        backend=backend.value,
        features_precision=features_precision.value if features_precision else None,
    )
    typer.echo(json.dumps(out))


@bench_app.command("onnx")
@guarded
def onnx_vs_torch(
    video: Annotated[Optional[Path], typer.Argument(help="A video file; default: a generated clip.")] = None,
    model: Annotated[
        Optional[Path],
        typer.Option(
            "--model",
            "-m",
            help="Model folder (its export bundle is used, or a temporary one made); default: the bundled model.",
        ),
    ] = None,
    device: Annotated[
        str, typer.Option(help="auto | cpu | cuda | cuda:N (ONNX Runtime's CUDA provider, no fallback).")
    ] = "auto",
    frames: Annotated[int, typer.Option(help="Frames of the generated clip.", min=1)] = 600,
    repeats: Annotated[int, typer.Option(help="Timed runs per figure (the best is kept).", min=1)] = 2,
    threads: Annotated[Optional[int], typer.Option(help="Intra-op threads for both (default: torch's).", min=1)] = None,
    quick: Annotated[
        bool, typer.Option("--quick/--no-quick", help="48 frames at 96x64, one run: a smoke test.")
    ] = False,
    backends: Annotated[
        Optional[str],
        typer.Option(
            "--backends",
            help="Comma-separated: torch,onnxruntime,openvino (default: those installed; OpenVINO on the CPU only).",
        ),
    ] = None,
) -> None:
    """ONNX Runtime vs PyTorch eager, model only and end to end, as ratios (PyTorch s / ONNX Runtime s)."""
    from ..bench.onnx import bench_onnx
    from ..io.video import probe

    if video is not None:
        probe(video)  # one-line error for a bad file before anything is loaded
    size = (320, 180)
    if quick:
        frames, repeats, size = 48, 1, (96, 64)

    out = bench_onnx(
        str(model) if model else None,
        str(video) if video else None,
        device,
        frames,
        repeats,
        size=size,
        threads=threads,
        log=_log,
        backends=tuple(b.strip() for b in backends.split(",") if b.strip()) if backends else None,
    )
    typer.echo(json.dumps(out))


class Resolution(str, Enum):
    p360 = "360p"
    p720 = "720p"
    p1080 = "1080p"


@bench_app.command("watch")
@guarded
def watch(
    streams: Annotated[int, typer.Option(help="Live streams watched at once.", min=1)] = 1,
    fps: Annotated[float, typer.Option(help="Frame rate of each stream.", min=1.0)] = 30.0,
    resolution: Annotated[Resolution, typer.Option(help="Frame size of each stream.")] = Resolution.p360,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    precision: Annotated[Optional[Precision], typer.Option(help="Default: fp16 on CUDA, fp32 on CPU.")] = None,
    model: Annotated[
        Optional[Path], typer.Option("--model", "-m", help="Model folder; default: the bundled model.")
    ] = None,
    arch: Annotated[
        Optional[Arch],
        typer.Option(
            help="Instead of a model folder: a randomly initialised ARCH (speed does not depend on the weights)."
        ),
    ] = None,
    crop: Annotated[int, typer.Option(help="Input size for --arch.", min=32)] = 224,
    seconds: Annotated[float, typer.Option(help="How long each stream plays.", min=1.0)] = 20.0,
    window: Annotated[float, typer.Option(help="Window length in seconds.")] = 8.0,
    stride: Annotated[float, typer.Option(help="Seconds between window starts.")] = 2.0,
    max_memory: Annotated[
        Optional[int], typer.Option("--max-memory", help="MiB the watch may hold beyond the model.", min=16)
    ] = None,
    threads: Annotated[
        Optional[int],
        typer.Option(
            help="torch intra-op threads (default: torch's, one per core; more than the cores slows it).", min=1
        ),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick/--no-quick", help="A smoke-test size: 4 s streams, 2 s windows, 1 s stride.")
    ] = False,
) -> None:
    """Stream N real-time 30-fps sources through one device: sustained or not, latency, CPU/GPU use."""
    from ..backends import resolve_device
    from ..bench.watch import bench_watch
    from ..runtime import Classifier

    resolve_device(device)  # a bad device is a one-line error before any clip is written
    if arch is not None and model is not None:
        raise usage_error("--model and --arch are alternatives; pick one")
    if quick:
        seconds, window, stride = 4.0, 2.0, 1.0
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="fvdeploy-bench-model-") as tmp:
        if arch is not None:
            model = _random_model(Path(tmp) / arch.value, arch.value, crop)
        clf = Classifier.load(
            model,
            device=device,
            precision=precision.value if precision else None,
            max_memory_mib=max_memory,
            mode="full",
        )
        out = bench_watch(
            clf,
            streams=streams,
            fps=fps,
            resolution=resolution.value,
            seconds=seconds,
            window_s=window,
            stride_s=stride,
            log=_log,
        )
    import torch

    out["model"] = f"random {arch.value}" if arch is not None else str(model or "bundled default")
    out["threads"] = torch.get_num_threads()
    typer.echo(json.dumps(out))


@bench_app.command("serve")
@guarded
def serve(
    clients: Annotated[int, typer.Option(help="Concurrent clients sending classify uploads.", min=1)] = 8,
    requests: Annotated[int, typer.Option(help="Requests per client, one after another.", min=1)] = 4,
    streams: Annotated[int, typer.Option(help="Streams watched meanwhile (files paced like cameras).", min=0)] = 4,
    seconds: Annotated[float, typer.Option(help="How long each stream plays.", min=1.0)] = 60.0,
    window: Annotated[float, typer.Option(help="Stream window in seconds.", min=0.001)] = 1.28,
    stride: Annotated[float, typer.Option(help="Stream stride in seconds.", min=0.001)] = 0.64,
    workers: Annotated[int, typer.Option(help="The server's classify threads.", min=1)] = 2,
    model: Annotated[
        Optional[Path], typer.Option("--model", "-m", help="Model folder; default: the bundled model.")
    ] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    quick: Annotated[
        bool, typer.Option("--quick/--no-quick", help="A smoke-test size: 2 clients x 2 requests, 1 stream, 4 s.")
    ] = False,
) -> None:
    """A real fvdeploy serve under load: N clients x M classify requests while K streams run for S
    seconds. Prints latency p50/p95, requests/s, frames/s, peak RSS, the slowest /healthz, and
    whether every stream's events reached its listener."""
    from ..bench.serve import bench_serve

    if quick:
        clients, requests, streams, seconds = 2, 2, 1, 4.0
    out = bench_serve(
        model=str(model) if model else None,
        device=device,
        clients=clients,
        requests=requests,
        streams=streams,
        seconds=seconds,
        window_s=window,
        stride_s=stride,
        workers=workers,
        log=_log,
    )
    for key in (
        "latency_p50_s",
        "latency_p95_s",
        "requests_per_s",
        "classify_frames_per_s",
        "stream_frames_per_s",
        "peak_rss_mib",
        "slowest_healthz_s",
        "events_delivered",
        "load_avg",
    ):
        _log(f"{key}: {out[key]}")
    typer.echo(json.dumps(out))
    if not out["ok"]:
        raise typer.Exit(1)


def _random_model(path: Path, arch: str, crop: int) -> Path:
    from ..bundle import save_model
    from ..config import InputSpec, ModelConfig
    from ..models import create_model

    config = ModelConfig(arch=arch, num_classes=400, input=InputSpec(shorter_side=round(crop * 256 / 224), crop=crop))
    save_model(create_model(config).eval(), path)
    return path


@bench_app.command("startup")
@guarded
def startup(
    repeats: Annotated[int, typer.Option(help="Timed runs per command (the best is kept).", min=1)] = 3,
    quick: Annotated[
        bool, typer.Option("--quick/--no-quick", help="Time --help only (still checks every command's imports).")
    ] = False,
) -> None:
    """Start-up: wall time of --help, --version and every SUB --help, and the heavy modules each imports."""
    import typer.main

    from ..bench.startup import bench_startup

    typer.echo(json.dumps(bench_startup(typer.main.get_command(app), repeats, quick, log=_log)))
