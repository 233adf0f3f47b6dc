"""``fvdeploy bench memory``: peak memory growth over the loaded model for videos of the same
content and different lengths, each length measured in a fresh process (``python -m
fvdeploy.bench.memory VIDEO DEVICE BUDGET [MODEL]``)."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .clips import looped_clip


def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(video: str, model: str | None, device: str, max_memory_mib: int) -> dict:
    """In a fresh process: load, warm up, then the peak growth while classifying ``video``."""
    import cv2
    import torch

    from ..runtime import Classifier

    clf = Classifier.load(model, device=device, max_memory_mib=max_memory_mib, bound_heap=True)  # as the CLI runs
    cap = cv2.VideoCapture(video)
    size = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) or 64, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) or 64
    cap.release()
    # Allocate lazy state once, at the video's frame size: cuDNN picks its algorithms (and their
    # workspaces) per shape, a fixed cost like the weights, not growth with T.
    clf.classify(np.zeros((clf.config.num_clusters + 3, *size, 3), np.uint8))
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
    return {
        "frames": result.num_frames,
        "growth_mib": round((peak - base) / 2**20, 1),
        "peak_mib": round(peak / 2**20, 1),
        "extra_decoded_frames": sources_extra,
        "label": result.label,
        "path": clf.last_stats["memory_path"],
        "measure": "torch.cuda.max_memory_allocated" if cuda else "peak RSS (VmHWM)",
    }


def bench_memory(
    model: str | None, device: str, max_memory_mib: int, lengths: list[int], width: int, height: int, log=print
) -> dict:
    growth, extra = {}, {}
    with tempfile.TemporaryDirectory(prefix="fvdeploy-bench-") as tmp:
        for t in lengths:
            clip = looped_clip(Path(tmp) / f"clip{t}.mp4", t, width, height)
            cmd = [sys.executable, "-m", "fvdeploy.bench.memory", str(clip), device, str(max_memory_mib)]
            if model is not None:
                cmd.append(str(model))
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(
                    f"memory child failed for T={t}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}"
                )
            child = json.loads(r.stdout.strip().splitlines()[-1])
            if child["frames"] != t:
                raise RuntimeError(f"decoded {child['frames']} frames of a {t}-frame clip")
            growth[str(t)], extra[str(t)] = child["growth_mib"], child["extra_decoded_frames"]
            log(
                f"T={t:>6}: growth {child['growth_mib']:8.1f} MiB ({child['measure']}; peak {child['peak_mib']} MiB in all), "
                f"extra decoded frames {child['extra_decoded_frames']}, {child['path']}"
            )
            os.unlink(clip)
    ok = all(g <= 1.1 * max_memory_mib for g in growth.values())
    return {"budget_mib": max_memory_mib, "growth_mib": growth, "extra_decoded_frames": extra, "ok": ok}


if __name__ == "__main__":  # the per-length child of bench_memory
    print(
        json.dumps(memory_child(sys.argv[1], sys.argv[4] if len(sys.argv) > 4 else None, sys.argv[2], int(sys.argv[3])))
    )
