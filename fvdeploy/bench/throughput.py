"""``fvdeploy bench throughput``: end-to-end vs decode-only frames/s of one file in one run."""

from __future__ import annotations

import time

import numpy as np

from .gpu import sync


def bench_throughput(video: str, model: str | None, device: str, decoder: str | None = None, log=print) -> dict:
    """End-to-end frames/s vs decode-only frames/s of the same file, same decoder, same run."""
    from ..io.sources import FrameReader, open_source
    from ..runtime import Classifier

    clf = Classifier.load(model, device=device, decoder=decoder)
    clf.classify(np.zeros((clf.config.num_clusters + 3, 64, 64, 3), np.uint8))  # warm up
    gpu = clf.backend.device.index or 0
    src = open_source(video, decoder=clf.decoder, gpu_id=gpu)
    plan = clf.plan(src.frame_bytes)
    cpu0, t0 = time.process_time(), time.perf_counter()
    frames = 0
    with FrameReader(src, batch_frames=plan.decode_frames, queue_frames=3 * plan.decode_frames) as reader:
        for batch in reader:  # the reader thread the runtime uses, for NVDEC too
            frames += len(batch)
    sync(clf.backend.device)
    decode_s, decode_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = clf.classify(video)
    e2e_s, e2e_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    out = {
        "video": str(video),
        "frames": frames,
        "device": str(clf.backend.device),
        "precision": clf.backend.precision,
        "decoder": result.run["decoder"],
        "arch": clf.config.arch,
        "resize": "decode thread" if clf.shrink_in_decoder and clf.decoder == "opencv" else "compute device",
        "decode_fps": round(frames / decode_s, 1),
        "end_to_end_fps": round(result.num_frames / e2e_s, 1),
        "ratio": round((result.num_frames / e2e_s) / (frames / decode_s), 3),
        "cpu_s_per_frame": {
            "decode": round(decode_cpu / frames, 5),
            "end_to_end": round(e2e_cpu / result.num_frames, 5),
        },
        "timings": result.timings,
    }
    log(
        f"{frames} frames: decode-only {out['decode_fps']} fps, end to end {out['end_to_end_fps']} fps, "
        f"ratio {out['ratio']}"
    )
    return out
