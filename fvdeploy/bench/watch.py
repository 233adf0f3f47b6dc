"""``fvdeploy bench watch``: how many live 30-fps streams one device keeps up with.

N streams each play a generated clip (looped) paced in real time, like N cameras, through one
watcher. A stream is *sustained* when no frame had to be dropped before the model and each
window's result came before the next window closed (its latency below one stride). Reported:
dropped frames, the latency from a window's last frame arriving to its result (p50/p95), the
latency from each frame arriving to the first window result that includes it (which includes
waiting for the window to fill), the share of wall time the device loop was busy, process CPU
use in cores, and GPU utilisation sampled with nvidia-smi where there is one.
"""

from __future__ import annotations

import math
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from .clips import looped_clip
from .gpu import GpuSampler

RESOLUTIONS = {"360p": (640, 360), "720p": (1280, 720), "1080p": (1920, 1080)}


def _percentiles(values: list[float], scale: float = 1.0) -> dict:
    if not values:
        return {"p50": None, "p95": None}
    a = np.asarray(values) * scale
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3)}


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def make_clip(folder: Path, resolution: str, fps: float, seconds: float = 2.0) -> Path:
    w, h = RESOLUTIONS[resolution]
    n = int(round(fps * seconds))
    return looped_clip(folder / f"bench_{resolution}.mp4", n, w, h, fps=fps, base_frames=n)


def bench_watch(
    clf, *, streams: int, fps: float, resolution: str, seconds: float, window_s: float, stride_s: float, log=print
) -> dict:
    """Run ``streams`` real-time streams for about ``seconds`` each and measure (see module doc)."""
    from ..watch import StreamEnd, StreamSpec, Watcher, WatchOptions, WindowResult

    device = clf.backend.device
    with tempfile.TemporaryDirectory(prefix="fvdeploy-bench-watch-") as tmp:
        clip = make_clip(Path(tmp), resolution, fps)
        loops = max(1, math.ceil(seconds / 2.0))
        # warm up (allocator, kernels) on a short file, not measured
        warm = Watcher(clf, WatchOptions(window_frames=max(clf.config.num_clusters, 8), stride_frames=4))
        for _ in warm.run([str(clip)]):
            pass
        specs = [StreamSpec(f"stream{i}", str(clip), loops=loops) for i in range(streams)]
        options = WatchOptions(window_s=window_s, stride_s=stride_s, realtime=True, fps=fps, max_open_files=streams)
        watcher = Watcher(clf, options, collect_latency=True)
        if device.type == "cuda":
            import torch

            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        window_latency, ends = [], []
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        with GpuSampler(device) as gpu:
            for item in watcher.run(specs):
                if isinstance(item, WindowResult):
                    window_latency.append(item.latency_s)
                elif isinstance(item, StreamEnd):
                    ends.append(item)
        wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    errors = [e.error for e in ends if e.error]
    if errors:
        from ..errors import FvdeployError

        raise FvdeployError(f"bench watch: a stream failed: {errors[0]}")
    dropped = sum(e.dropped_frames for e in ends)
    frames = sum(e.frames for e in ends)
    p95 = _percentiles(window_latency)["p95"]
    sustained = dropped == 0 and p95 is not None and p95 < stride_s
    busy = watcher.busy_s / wall
    out = {
        "streams": streams,
        "fps": fps,
        "resolution": resolution,
        "device": str(device),
        "precision": clf.backend.precision,
        "arch": clf.config.arch,
        "crop": clf.config.input.crop,
        "window_s": window_s,
        "stride_s": stride_s,
        "seconds": round(wall, 1),
        "frames": frames,
        "dropped_frames": dropped,
        "sustained": sustained,
        "window_latency_ms": _percentiles(window_latency, 1000.0),
        "frame_latency_s": _percentiles(watcher.frame_latency),
        "device_loop_busy": round(busy, 3),
        "cpu_cores_used": round(cpu / wall, 2),
        "gpu_util_percent": gpu.mean,
        "gpu_peak_memory_mib": _peak_cuda_mib(device),
    }
    log(
        f"{streams} x {resolution} @ {fps:g} fps on {device} ({clf.config.arch} {clf.config.input.crop}px): "
        f"{'sustained' if sustained else 'NOT sustained'}, dropped {dropped} of {frames} frames, "
        f"window latency p50/p95 {out['window_latency_ms']['p50']}/{out['window_latency_ms']['p95']} ms, "
        f"device loop busy {busy:.0%}, CPU {out['cpu_cores_used']} cores, GPU {out['gpu_util_percent']}%"
    )
    return out


def _peak_cuda_mib(device) -> float | None:
    if device.type != "cuda":
        return None
    import torch

    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
