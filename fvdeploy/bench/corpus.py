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


def bench_corpus_ray(
    folder: str,
    model: str | None,
    address: str | None = "local",
    actor_counts=(1, 2),
    batch_size: int = 2,
    threads: int = 1,
    log=print,
) -> dict:
    """The same folder classified locally (this process) and on Ray Data with 1 and 2 CPU actors,
    every process running torch on ``threads`` threads (on a busy shared CPU, two threads of one
    process spin against each other and the comparison would measure that, not Ray); videos/s and
    frames/s of each, Ray's fixed cost (a run on one video) and its cost per video beyond the local
    run's. Every figure is wall time of a whole run, actors' start-up (process, imports, model
    load) included."""
    import os

    import torch

    from ..io.video import find_videos

    paths = [str(p) for p in find_videos(folder)]
    if not paths:
        from ..errors import VideoError

        raise VideoError(f"{folder}: directory contains no video files")
    cpus = os.cpu_count() or 1
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _corpus_ray_runs(paths, model, address, actor_counts, batch_size, threads, cpus, log)
    finally:
        torch.set_num_threads(before)


def _corpus_ray_runs(paths, model, address, actor_counts, batch_size, threads, cpus, log) -> dict:
    from .. import distributed
    from ..runtime import Classifier

    clf = Classifier.load(model, device="cpu")

    def local_run(items: list[str]) -> tuple[float, int, int]:
        t0 = time.perf_counter()
        rs = list(clf.classify_many(items))
        return time.perf_counter() - t0, sum(r.num_frames for r in rs), sum(r.error is not None for r in rs)

    local_run(paths[:1])  # warm up: first-call allocations, page cache
    distributed.connect(address, num_cpus=cpus if address in (None, "local") else None)

    def ray_run(items: list[str], actors: int) -> tuple[float, int, int]:
        t0 = time.perf_counter()
        ds = distributed.classify_dataset(
            items, model=model, actors=actors, num_cpus=threads, threads=threads, batch_size=batch_size
        )
        rs = list(distributed.iter_results(ds, progress=False))
        return time.perf_counter() - t0, sum(r.num_frames for r in rs), sum(r.error is not None for r in rs)

    out: dict = {"videos": len(paths), "cpus": cpus, "threads_per_process": threads, "batch_size": batch_size}
    wall, frames, failed = local_run(paths)
    out.update(frames=frames, failed=failed)
    runs = {"local": wall}
    for n in actor_counts:
        runs[f"ray_{n}_actor{'s' if n > 1 else ''}"], f, _ = ray_run(paths, n)
        if f != frames:
            raise RuntimeError(f"Ray read {f} frames where the local run read {frames}")
    # local again after the Ray runs: on a shared machine the load drifts; the mean of both is the yardstick
    again = local_run(paths)[0]
    out["local_runs_s"] = [round(wall, 2), round(again, 2)]
    runs["local"] = (wall + again) / 2
    for name, w in runs.items():
        out[name] = {
            "wall_s": round(w, 2),
            "videos_per_s": round(len(paths) / w, 3),
            "frames_per_s": round(frames / w, 1),
        }
        log(
            f"{name:>14}: {len(paths)} videos, {frames} frames in {w:.1f} s: {out[name]['videos_per_s']} videos/s, "
            f"{out[name]['frames_per_s']} frames/s"
        )
    one_local, _, _ = local_run(paths[:1])
    one_ray, _, _ = ray_run(paths[:1], 1)
    fixed = one_ray - one_local
    first = f"ray_{actor_counts[0]}_actor{'s' if actor_counts[0] > 1 else ''}"
    out["ray_fixed_s"] = round(fixed, 2)
    out["ray_overhead_per_video_s"] = round((runs[first] - fixed - runs["local"]) / len(paths), 3)
    for name in runs:
        if name != "local":
            out[name]["videos_per_s_after_startup"] = round(len(paths) / max(1e-9, runs[name] - fixed), 3)
    log(
        f"Ray's fixed cost (actor start-up, model load, scheduling; a one-video run minus the local one): {fixed:.1f} s; "
        f"beyond it, {out['ray_overhead_per_video_s']} s per video ({first} vs local)"
    )
    return out
