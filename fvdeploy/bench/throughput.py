"""``fvdeploy bench throughput``: end-to-end vs decode-only frames/s of one file in one run."""

from __future__ import annotations

import time

import numpy as np

from .gpu import sync


def bench_throughput(
    video: str, model: str | None, device: str, decoder: str | None = None, repeats: int = 3, log=print
) -> dict:
    """End-to-end frames/s vs decode-only frames/s of the same file, same decoder, same run.

    Decode-only opens the file and reads every frame through the frame source's reader thread (the
    one the runtime uses), as end to end does; the two alternate ``repeats`` times so that a
    changing machine load touches both alike, and each figure is the best run (``runs`` lists them
    all). ``ratio`` = best end to end / best decode-only."""
    from ..io.sources import FrameReader
    from ..runtime import Classifier

    clf = Classifier.load(model, device=device, decoder=decoder)
    clf.classify(np.zeros((clf.config.num_clusters + 3, 64, 64, 3), np.uint8))  # warm up

    probe = clf.engine.open(video)
    shrunk = clf.engine.shrinks(probe)  # where the runtime resizes this video's frames
    probe.close()

    def decode_only() -> tuple[int, float, float]:
        cpu0, t0 = time.process_time(), time.perf_counter()
        src = clf.engine.open(video)
        plan = clf.plan(src.frame_bytes, shrunk=shrunk)  # the batches the runtime reads
        frames = 0
        with FrameReader(src, batch_frames=plan.decode_frames, queue_frames=3 * plan.decode_frames) as reader:
            for batch in reader:  # the reader thread the runtime uses, for NVDEC too
                frames += len(batch)
        sync(clf.backend.device)
        return frames, time.perf_counter() - t0, time.process_time() - cpu0

    decode_only()  # untimed: the first read of a file pays for the page cache and FFmpeg's start
    runs, result = [], None
    for _ in range(max(1, repeats)):
        frames, decode_s, decode_cpu = decode_only()
        cpu0, t0 = time.process_time(), time.perf_counter()
        result = clf.classify(video)
        e2e_s, e2e_cpu = time.perf_counter() - t0, time.process_time() - cpu0
        runs.append(
            {
                "decode_fps": round(frames / decode_s, 1),
                "end_to_end_fps": round(result.num_frames / e2e_s, 1),
                "cpu_s_per_frame": {
                    "decode": round(decode_cpu / frames, 5),
                    "end_to_end": round(e2e_cpu / result.num_frames, 5),
                },
                "end_to_end_timings": result.timings,
            }
        )
    assert result is not None
    best_decode = max(r["decode_fps"] for r in runs)
    best_e2e = max(r["end_to_end_fps"] for r in runs)
    out = {
        "video": str(video),
        "frames": frames,
        "device": str(clf.backend.device),
        "backend": clf.backend.name,
        "choice": clf.backend.choice,  # why --backend auto (the default) ran it
        "precision": clf.backend.precision,
        "decoder": result.run["decoder"],
        "arch": clf.config.arch,
        "resize": "decode thread" if shrunk else "compute device",
        "repeats": len(runs),
        "decode_fps": best_decode,
        "end_to_end_fps": best_e2e,
        "ratio": round(best_e2e / best_decode, 3),
        "runs": runs,
    }
    log(
        f"{out['backend']} {out['precision']} ({out['choice'] or 'named'}): {frames} frames: decode-only {best_decode} fps, end to end {best_e2e} fps (best of {len(runs)} each), "
        f"end to end / decode-only {out['ratio']}"
    )
    return out
