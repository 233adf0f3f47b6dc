"""Peak RSS and model seconds of one Classifier.classify in a fresh process (issue 25's figures).

    python scripts/experiments/classify_memory.py MODEL VIDEO [--backend B] [--precision P] [--max-memory M]

Loads, warms up on a short array at the video's frame size, resets the peak (VmHWM), classifies
VIDEO, and prints one JSON line: frames, model/decode/total seconds, peak RSS and its growth over
the loaded, warmed-up model. FVDEPLOY_MALLOC_TUNING=0 in the environment leaves glibc's mmap
threshold alone (what the library does without the runtime's fixed threshold)."""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np


def rss(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("video")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--precision", default=None)
    ap.add_argument("--max-memory", type=int, default=None)
    ap.add_argument("--bound-heap", choices=("on", "off", "default"), default="default")
    args = ap.parse_args()
    import cv2

    from fvdeploy import malloc
    from fvdeploy.runtime import Classifier

    if args.bound_heap == "on":
        malloc.bound_heap_growth()
    kw = {"bound_heap": args.bound_heap == "on"} if args.bound_heap != "default" else {}
    try:
        clf = Classifier.load(
            args.model,
            device="cpu",
            backend=args.backend,
            precision=args.precision,
            max_memory_mib=args.max_memory,
            **kw,
        )
    except TypeError:  # a Classifier without the keyword (before the engine)
        clf = Classifier.load(
            args.model, device="cpu", backend=args.backend, precision=args.precision, max_memory_mib=args.max_memory
        )
    cap = cv2.VideoCapture(args.video)
    h, w = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    cap.release()
    clf.classify(np.zeros((80, h, w, 3), np.uint8))  # warm up: step buffers, oneDNN primitives
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = rss("VmRSS")
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    r = clf.classify(args.video)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    peak = rss("VmHWM")
    print(
        json.dumps(
            {
                "frames": r.num_frames,
                "run": r.run,
                "timings": r.timings,
                "wall_s": round(wall, 3),
                "peak_mib": round(peak / 2**20, 1),
                "growth_mib": round((peak - base) / 2**20, 1),
                "minor_faults": ru1.ru_minflt - ru0.ru_minflt,
                "sys_s": round(ru1.ru_stime - ru0.ru_stime, 2),
                "malloc_fixed": bool(malloc.fixed_threshold()),
                "load": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
