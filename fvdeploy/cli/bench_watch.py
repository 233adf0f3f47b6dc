"""``fvdeploy bench watch``: real-time streams one device sustains (figures on stderr, one JSON line last)."""

from __future__ import annotations

import json
import tempfile
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import guarded
from .bench import _log, bench_app
from .choices import Precision


class Resolution(str, Enum):
    p360 = "360p"
    p720 = "720p"
    p1080 = "1080p"


class Arch(str, Enum):
    resnet18 = "resnet18"
    resnet50 = "resnet50"


@bench_app.command("watch")
@guarded
def watch(
    streams: Annotated[int, typer.Option(help="Live streams watched at once.", min=1)] = 1,
    fps: Annotated[float, typer.Option(help="Frame rate of each stream.", min=1.0)] = 30.0,
    resolution: Annotated[Resolution, typer.Option(help="Frame size of each stream.")] = Resolution.p360,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    precision: Annotated[Optional[Precision], typer.Option(help="Default: fp16 on CUDA, fp32 on CPU.")] = None,
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="Model folder; default: the bundled model.")] = None,
    arch: Annotated[Optional[Arch], typer.Option(help="Instead of a model folder: a randomly initialised ARCH (speed does not depend on the weights).")] = None,
    crop: Annotated[int, typer.Option(help="Input size for --arch.", min=32)] = 224,
    seconds: Annotated[float, typer.Option(help="How long each stream plays.", min=1.0)] = 20.0,
    window: Annotated[float, typer.Option(help="Window length in seconds.")] = 8.0,
    stride: Annotated[float, typer.Option(help="Seconds between window starts.")] = 2.0,
    max_memory: Annotated[Optional[int], typer.Option("--max-memory", help="MiB the watch may hold beyond the model.", min=16)] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch intra-op threads (default: torch's own choice).", min=1)] = None,
    quick: Annotated[bool, typer.Option(help="A smoke-test size: 4 s streams, 2 s windows, 1 s stride.")] = False,
) -> None:
    """Stream N real-time 30-fps sources through one device: sustained or not, latency, CPU/GPU use."""
    from ..backends import resolve_device
    from ..runtime import Classifier
    from ..runtime.watch_bench import bench_watch

    resolve_device(device)  # a bad device is a one-line error before any clip is written
    if arch is not None and model is not None:
        from . import usage_error

        raise usage_error("--model and --arch are alternatives; pick one")
    if quick:
        seconds, window, stride = 4.0, 2.0, 1.0
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="fvdeploy-bench-model-") as tmp:
        if arch is not None:
            model = _random_model(Path(tmp) / arch.value, arch.value, crop)
        clf = Classifier.load(model, device=device, precision=precision.value if precision else None,
                              max_memory_mib=max_memory, mode="full")
        out = bench_watch(clf, streams=streams, fps=fps, resolution=resolution.value, seconds=seconds,
                          window_s=window, stride_s=stride, log=_log)
    import torch

    out["model"] = f"random {arch.value}" if arch is not None else str(model or "bundled default")
    out["threads"] = torch.get_num_threads()
    typer.echo(json.dumps(out))


def _random_model(path: Path, arch: str, crop: int) -> Path:
    from ..bundle import save_model
    from ..config import InputSpec, ModelConfig
    from ..models import create_model

    config = ModelConfig(arch=arch, num_classes=400, input=InputSpec(shorter_side=round(crop * 256 / 224), crop=crop))
    save_model(create_model(config).eval(), path)
    return path
