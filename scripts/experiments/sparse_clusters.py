"""Where do a trained full-video model's clusters put the action run of sparse Move4?

For each model folder (a ``table1.py`` run's ``last/``) and the test videos of a sparse Move4 set:
how many clusters the K run frames are spread over, what share of those clusters' frames are run
frames (the rest are distractors averaged in with them: Eq. 1's mean dilutes the motion), and the
top-1 split by whether the run fell into one cluster or several. The model's own clustering method.

    python scripts/experiments/sparse_clusters.py --data runs/data/m4_32_sparse4_s3 --test 240 \\
        runs/table1_sparse/Ours-*-8_seed0/last
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from fvdeploy.bundle import load_model
from fvdeploy.io.transforms import preprocess
from fvdeploy.training.datasets import open_source, read_frames
from fvdeploy.training.move4 import KINDS, read_frame_kinds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--test", type=int, default=240)
    args = ap.parse_args()
    truth = read_frame_kinds(args.data, "test")
    videos = open_source(args.data, role="val")
    records = videos.records[: args.test]
    out = {}
    for path in args.models:
        model = load_model(path)
        spread, purity, correct = [], [], {"one": [], "several": []}
        with torch.no_grad():
            for r in records:
                kinds = truth[r.path.resolve().relative_to(args.data.resolve()).as_posix()]["kinds"]
                run = [i for i, k in enumerate(kinds) if k == KINDS["motion"]]
                frames = preprocess(torch.from_numpy(read_frames(r)), model.config.input)
                result = model(frames[None])
                ids = result.cluster_ids[0]
                hit = sorted({int(ids[i]) for i in run})
                members = sum(int((ids == k).sum()) for k in hit)
                spread.append(len(hit))
                purity.append(len(run) / members)
                correct["one" if len(hit) == 1 else "several"].append(int(result.logits.argmax(1)) == r.label)
        n = len(records)
        out[str(path)] = {
            "method": model.config.method,
            "clusters": model.config.num_clusters,
            "videos": n,
            "mean_clusters_holding_the_run": round(sum(spread) / n, 3),
            "mean_run_share_of_those_clusters": round(sum(purity) / n, 3),
            "run_in_one_cluster": round(len(correct["one"]) / n, 3),
            "top1": round(sum(correct["one"] + correct["several"]) / n, 4),
            "top1_run_in_one_cluster": round(sum(correct["one"]) / max(1, len(correct["one"])), 4),
            "top1_run_split": round(sum(correct["several"]) / max(1, len(correct["several"])), 4),
        }
        print(json.dumps({str(path): out[str(path)]}), flush=True)


if __name__ == "__main__":
    main()
