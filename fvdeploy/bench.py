"""Benchmarks behind ``fvdeploy bench``: measured figures, never asserted in tests.

Each benchmark prints a human summary on stderr and, as its last stdout line, one JSON object.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


# -- test content -------------------------------------------------------------------------------
def looped_clip(path: str | Path, num_frames: int, width: int = 320, height: int = 180, fps: float = 25.0,
                base_frames: int = 50, seed: int = 0) -> Path:
    """A video of ``num_frames`` that loops the same ``base_frames`` of moving content, so videos
    of different lengths have the same content (mp4v: OpenCV's own writer)."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = []
    for t in range(base_frames):
        img = np.empty((height, width, 3), np.uint8)
        for c in range(3):
            img[..., c] = ((xx * (c + 1) + yy * (3 - c) + 7 * t * (c + 1)) % 256).astype(np.uint8)
        cy, cx = int((height - 40) * (0.5 + 0.5 * np.sin(t / 5))), int((width - 40) * t / base_frames)
        img[cy : cy + 40, cx : cx + 40] = rng.integers(0, 255, 3)
        base.append(img)
    path = Path(path)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    for i in range(num_frames):
        writer.write(base[i % base_frames])
    writer.release()
    return path


# -- memory ---------------------------------------------------------------------------------------
def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(video: str, model: str | None, device: str, max_memory_mib: int) -> dict:
    """In a fresh process: load, warm up, then the peak growth while classifying ``video``."""
    import torch

    from .runtime import Classifier

    clf = Classifier.load(model, device=device, max_memory_mib=max_memory_mib)
    clf.classify(np.zeros((clf.config.num_clusters + 3, 64, 64, 3), np.uint8))  # allocate lazy state once
    gc.collect()
    cuda = clf.backend.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM (the peak RSS) to the current RSS
            f.write("5")
        base = _rss_bytes("VmRSS")
    result = clf.classify(video)
    sources_extra = clf.last_stats["extra_decoded_frames"]
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _rss_bytes("VmHWM")
    return {"frames": result.num_frames, "growth_mib": round((peak - base) / 2**20, 1),
            "extra_decoded_frames": sources_extra, "label": result.label, "path": clf.last_stats["memory_path"],
            "measure": "torch.cuda.max_memory_allocated" if cuda else "peak RSS (VmHWM)"}


def bench_memory(model: str | None, device: str, max_memory_mib: int, lengths: list[int], width: int, height: int,
                 log=print) -> dict:
    growth, extra = {}, {}
    with tempfile.TemporaryDirectory(prefix="fvdeploy-bench-") as tmp:
        for t in lengths:
            clip = looped_clip(Path(tmp) / f"clip{t}.mp4", t, width, height)
            cmd = [sys.executable, "-m", "fvdeploy.bench", "memory-child", str(clip), device, str(max_memory_mib)]
            if model is not None:
                cmd.append(str(model))
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"memory child failed for T={t}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
            child = json.loads(r.stdout.strip().splitlines()[-1])
            if child["frames"] != t:
                raise RuntimeError(f"decoded {child['frames']} frames of a {t}-frame clip")
            growth[str(t)], extra[str(t)] = child["growth_mib"], child["extra_decoded_frames"]
            log(f"T={t:>6}: growth {child['growth_mib']:8.1f} MiB ({child['measure']}), "
                f"extra decoded frames {child['extra_decoded_frames']}, {child['path']}")
            os.unlink(clip)
    ok = all(g <= 1.1 * max_memory_mib for g in growth.values())
    return {"budget_mib": max_memory_mib, "growth_mib": growth, "extra_decoded_frames": extra, "ok": ok}


# -- throughput -------------------------------------------------------------------------------------
def bench_throughput(video: str, model: str | None, device: str, log=print) -> dict:
    """End-to-end frames/s vs decode-only frames/s of the same file, same decoder, same run."""
    from .io.video import BackgroundReader
    from .runtime import Classifier
    from .runtime.sources import FileSource

    clf = Classifier.load(model, device=device)
    clf.classify(np.zeros((clf.config.num_clusters + 3, 64, 64, 3), np.uint8))  # warm up
    plan = clf.plan(FileSource(video).frame_bytes)
    cpu0, t0 = time.process_time(), time.perf_counter()
    frames = 0
    with BackgroundReader(FileSource(video).chunks(plan.decode_frames), max_chunks=3) as chunks:
        for chunk in chunks:
            frames += len(chunk)
    decode_s, decode_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = clf.classify(video)
    e2e_s, e2e_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    out = {
        "video": str(video), "frames": frames, "device": str(clf.backend.device), "precision": clf.backend.precision,
        "decode_fps": round(frames / decode_s, 1), "end_to_end_fps": round(result.num_frames / e2e_s, 1),
        "ratio": round((result.num_frames / e2e_s) / (frames / decode_s), 3),
        "cpu_s_per_frame": {"decode": round(decode_cpu / frames, 5), "end_to_end": round(e2e_cpu / result.num_frames, 5)},
        "timings": result.timings,
    }
    log(f"{frames} frames: decode-only {out['decode_fps']} fps, end to end {out['end_to_end_fps']} fps, "
        f"ratio {out['ratio']}")
    return out


if __name__ == "__main__":  # the per-length child of bench_memory
    if len(sys.argv) >= 5 and sys.argv[1] == "memory-child":
        print(json.dumps(memory_child(sys.argv[2], sys.argv[5] if len(sys.argv) > 5 else None, sys.argv[3], int(sys.argv[4]))))
