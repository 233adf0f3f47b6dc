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
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

RESOLUTIONS = {"360p": (640, 360), "720p": (1280, 720), "1080p": (1920, 1080)}


def _percentiles(values: list[float], scale: float = 1.0) -> dict:
    if not values:
        return {"p50": None, "p95": None}
    a = np.asarray(values) * scale
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3)}


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class GpuSampler:
    """nvidia-smi utilisation of one GPU, sampled twice a second in a thread (None without one)."""

    def __init__(self, index: int) -> None:
        self.index, self.samples = index, []
        self.available = shutil.which("nvidia-smi") is not None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True) if self.available else None

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                out = subprocess.run(["nvidia-smi", "-i", str(self.index), "--query-gpu=utilization.gpu",
                                      "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5)
                self.samples.append(float(out.stdout.strip().splitlines()[0]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return

    def __enter__(self):
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def mean(self) -> float | None:
        return round(float(np.mean(self.samples)), 1) if self.samples else None


def make_clip(folder: Path, resolution: str, fps: float, seconds: float = 2.0) -> Path:
    from ..bench import looped_clip

    w, h = RESOLUTIONS[resolution]
    n = int(round(fps * seconds))
    return looped_clip(folder / f"bench_{resolution}.mp4", n, w, h, fps=fps, base_frames=n)


def bench_watch(clf, *, streams: int, fps: float, resolution: str, seconds: float, window_s: float, stride_s: float,
                log=print) -> dict:
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
        with GpuSampler(device.index or 0) if device.type == "cuda" else _Null() as gpu:
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
        "streams": streams, "fps": fps, "resolution": resolution, "device": str(device),
        "precision": clf.backend.precision, "arch": clf.config.arch, "crop": clf.config.input.crop,
        "window_s": window_s, "stride_s": stride_s, "seconds": round(wall, 1),
        "frames": frames, "dropped_frames": dropped, "sustained": sustained,
        "window_latency_ms": _percentiles(window_latency, 1000.0),
        "frame_latency_s": _percentiles(watcher.frame_latency),
        "device_loop_busy": round(busy, 3),
        "cpu_cores_used": round(cpu / wall, 2),
        "gpu_util_percent": gpu.mean(),
        "gpu_peak_memory_mib": _peak_cuda_mib(device),
    }
    log(f"{streams} x {resolution} @ {fps:g} fps on {device} ({clf.config.arch} {clf.config.input.crop}px): "
        f"{'sustained' if sustained else 'NOT sustained'}, dropped {dropped} of {frames} frames, "
        f"window latency p50/p95 {out['window_latency_ms']['p50']}/{out['window_latency_ms']['p95']} ms, "
        f"device loop busy {busy:.0%}, CPU {out['cpu_cores_used']} cores, GPU {out['gpu_util_percent']}%")
    return out


def _peak_cuda_mib(device) -> float | None:
    if device.type != "cuda":
        return None
    import torch

    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def mean(self) -> None:
        return None
