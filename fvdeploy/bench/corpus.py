"""``fvdeploy bench corpus``: videos/s and frames/s over a folder of clips, as a batch job runs them."""

from __future__ import annotations

import time

import numpy as np

from .gpu import GpuSampler


def bench_corpus(
    folder: str, model: str | None, device: str, decode_workers: int | None, decoder: str | None, log=print
) -> dict:
    """videos/s and frames/s over every video in a folder, as a batch job runs them."""
    from ..io.video import find_videos
    from ..runtime import Classifier

    paths = [str(p) for p in find_videos(folder)]
    if not paths:
        from ..errors import VideoError

        raise VideoError(f"{folder}: directory contains no video files")
    clf = Classifier.load(model, device=device, decoder=decoder, decode_workers=decode_workers)
    clf.classify(np.zeros((clf.config.num_clusters + 3, 64, 64, 3), np.uint8))  # warm up
    frames = failed = 0
    decoders = set()
    cpu0, t0 = time.process_time(), time.perf_counter()
    with GpuSampler(clf.backend.device) as gpu:
        for r in clf.classify_many(paths):
            frames += r.num_frames
            failed += r.error is not None
            decoders.add(r.run.get("decoder"))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    out = {
        "videos": len(paths),
        "failed": failed,
        "frames": frames,
        "device": str(clf.backend.device),
        "decoder": sorted(d for d in decoders if d),
        "decode_workers": clf.decode_workers,
        "videos_per_s": round(len(paths) / wall, 2),
        "frames_per_s": round(frames / wall, 1),
        "cpu_s_per_frame": round(cpu / max(1, frames), 5),
        "gpu_util_percent": gpu.mean,
    }
    log(
        f"{len(paths)} videos, {frames} frames in {wall:.1f} s: {out['videos_per_s']} videos/s, "
        f"{out['frames_per_s']} frames/s, {out['cpu_s_per_frame'] * 1000:.2f} ms CPU per frame"
    )
    return out
