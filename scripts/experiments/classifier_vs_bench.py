"""``Classifier`` model seconds against ``bench model``'s full-video loop on the same frames count,
one process, interleaved, best of ``--repeats`` (issue 25: the user's path at the benchmark's speed).

    python scripts/experiments/classifier_vs_bench.py MODEL --frames 300 [--repeats 2] [--profile OUT]

``bench`` is ``fvdeploy bench model``'s ``full()`` (the torch backend's stem + layer1 streamed with
the halo, the accumulator, layer2..4 on the G means) on preprocessed random frames; ``classifier``
is ``Classifier.classify`` on a uint8 array of the crop's size (its ``timings.model``: conversion,
normalisation, the same model stages and the runtime's per-chunk work). ``--profile OUT`` also
writes cProfile's statistics of one more classify (sorted by own time) to OUT."""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import time

# isort: off
import fvdeploy  # noqa: F401  (before torch: OMP_WAIT_POLICY=PASSIVE, as the CLI has it)

# isort: on
import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--profile", default=None)
    args = ap.parse_args()
    from fvdeploy.ops.halo import stream_with_halo
    from fvdeploy.runtime import Classifier

    try:
        from fvdeploy.engine.clusters import ClusterAccumulator
    except ImportError:  # before the engine
        from fvdeploy.runtime.accumulate import ClusterAccumulator

    clf = Classifier.load(args.model, device="cpu")
    b, cfg = clf.backend, clf.config
    s, t, g = cfg.input.crop, args.frames, cfg.num_clusters
    chunk = torch.randn(64, 3, s, s, generator=torch.Generator().manual_seed(0))
    video = np.random.default_rng(0).integers(0, 255, (min(t, 600), s, s, 3), dtype=np.uint8)
    looped = np.concatenate([video] * (-(-t // len(video))))[:t] if t > len(video) else video

    def chunks():
        left = t
        while left > 0:
            yield chunk[: min(64, left)]
            left -= 64

    def bench() -> float:
        t0 = time.perf_counter()
        acc = ClusterAccumulator(1 << 62, 1 << 30, can_recompute=False)
        for feats in stream_with_halo(b.frame_features, chunks(), b.halo, min_frames=g):
            acc.add(feats)
        means, _ = acc.finish(g, cfg.method)
        b.clip_logits(means[None])
        return time.perf_counter() - t0

    def classifier() -> float:
        return clf.classify(looped).timings["model"]

    bench(), classifier()
    best = {"bench": float("inf"), "classifier": float("inf")}
    loads = []
    for _ in range(args.repeats):
        best["bench"] = min(best["bench"], bench())
        best["classifier"] = min(best["classifier"], classifier())
        loads.append(os.getloadavg()[0])
    out = {
        "frames": t,
        "crop": s,
        "backend": b.name,
        "choice": getattr(b, "choice", None),
        "threads": torch.get_num_threads(),
        "seconds": {k: round(v, 3) for k, v in best.items()},
        "bench_over_classifier": round(best["bench"] / best["classifier"], 3),
        "load": [round(min(loads), 2), round(max(loads), 2)],
    }
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        clf.classify(looped)
        prof.disable()
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(40)
        with open(args.profile, "w") as f:
            f.write(text.getvalue())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
