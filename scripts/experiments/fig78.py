"""Fig. 7 and Fig. 8 of the paper on Move4.

Fig. 7: for a few test videos, the frames, the ground truth of each frame (motion / black /
background / distractor digit, from the generator's ``*_frames.jsonl``) and the clusters that
cumulative, slope and uniform grouping make of the trained model's layer1 activations. Over the
whole test set it also measures each method's cluster purity: the share of a cluster's frames that
are of its most common kind, and the share of clusters that mix target-motion frames with others.

Fig. 8: the cumulative clusters of six videos after each epoch of a training run
(``cluster_ids.jsonl``, written by ``fvdeploy train``).

    python scripts/experiments/fig78.py --model fvdeploy/assets/default_model \\
        --data runs/data/m4_64_heldout --run runs/default --out docs
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from fvdeploy.bundle import load_model
from fvdeploy.io.transforms import preprocess
from fvdeploy.ops.clustering import METHODS, cluster_ids
from fvdeploy.training.datasets import open_source, read_frames
from fvdeploy.training.move4 import CLASSES, read_frame_kinds
from fvdeploy.training.plots import cluster_strip, labelled_rows, save_png

KIND_IDS = {"m": 0, "k": 1, "b": 2, "d": 3}
KIND_NAMES = "motion=blue, black=orange, background=green, distractor digit=red"


def thumbnails(frames: np.ndarray, width: int) -> np.ndarray:
    t = len(frames)
    side = width // t
    return np.concatenate([cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA) for f in frames], 1)


def purity(ids: list[int], kinds: str) -> tuple[float, int, int]:
    """(mean share of each cluster's dominant kind, clusters mixing motion with other kinds, clusters)."""
    shares, mixed = [], 0
    for k in sorted(set(ids)):
        ks = [kinds[i] for i, c in enumerate(ids) if c == k]
        counts = {x: ks.count(x) for x in set(ks)}
        shares.append(max(counts.values()) / len(ks))
        mixed += "m" in counts and len(counts) > 1
    return float(np.mean(shares)), mixed, len(shares)


def fig7(model, data: Path, out: Path, clusters: int, examples: int) -> dict:
    videos = open_source(data, role="val")
    kinds = read_frame_kinds(data, "test")
    width = 768
    rows, stats = [], {m: [0.0, 0, 0, 0] for m in METHODS}
    for i, record in enumerate(videos.records):
        raw = read_frames(record)
        with torch.no_grad():
            f = model.forward_frames(preprocess(torch.from_numpy(raw), model.config.input)[None])
        rel = record.path.relative_to(data.resolve() if record.path.is_absolute() else data).as_posix()
        truth = kinds[rel]["kinds"]
        ids = {m: cluster_ids(f, clusters, m)[0].tolist() for m in METHODS}
        for m in METHODS:
            share, mixed, n = purity(ids[m], truth)
            s = stats[m]
            s[0] += share
            s[1] += mixed
            s[2] += n
            s[3] += 1
        if i < examples:
            rows.append((f"{CLASSES[record.label]} #{i}", thumbnails(raw, width)))
            rows.append(("  ground truth", cluster_strip([KIND_IDS[k] for k in truth], width)))
            for m in METHODS:
                rows.append((f"  {m}", cluster_strip(ids[m], width)))
    save_png(
        labelled_rows(rows, f"Fig. 7: clusters (G={clusters}) of layer1 activations; truth: {KIND_NAMES}"),
        out / "fig7_clusters.png",
    )
    return {
        m: {"cluster_purity": s[0] / s[3], "mixed_motion_clusters": s[1] / s[2], "videos": s[3]}
        for m, s in stats.items()
    }


def fig8(run: Path, out: Path, videos: int = 6) -> dict:
    lines = [json.loads(x) for x in (run / "cluster_ids.jsonl").read_text().splitlines() if x.strip()]
    width, rows = 640, []
    for v in range(min(videos, len(lines[0]["ids"]))):
        rows.append(
            (
                Path(lines[0]["paths"][v]).parent.name + " " + Path(lines[0]["paths"][v]).stem,
                np.zeros((6, width, 3), np.uint8) + 255,
            )
        )
        for entry in lines:
            rows.append((f"  epoch {entry['epoch']}", cluster_strip(entry["ids"][v], width, 12)))
    save_png(
        labelled_rows(rows, "Fig. 8: cumulative clusters over training epochs (one colour per cluster)", 170),
        out / "fig8_clusters_over_epochs.png",
    )
    changed = [
        sum(a != b for a, b in zip(lines[i]["ids"][v], lines[i + 1]["ids"][v]))
        for i in range(len(lines) - 1)
        for v in range(len(lines[i]["ids"]))
    ]
    return {
        "epochs": len(lines),
        "videos": len(lines[0]["ids"]),
        "mean_frames_reassigned_per_epoch": float(np.mean(changed)) if changed else 0.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="a Move4 folder with test.txt and test_frames.jsonl")
    ap.add_argument("--run", type=Path, help="a training run folder with cluster_ids.jsonl (for Fig. 8)")
    ap.add_argument("--clusters", type=int, default=8)
    ap.add_argument("--examples", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("docs"))
    args = ap.parse_args()
    model = load_model(args.model)
    result = {"fig7": fig7(model, args.data, args.out, args.clusters, args.examples)}
    if args.run:
        result["fig8"] = fig8(args.run, args.out)
    (args.out / "fig78.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
