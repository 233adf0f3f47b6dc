"""Fig. 6 of the paper: how far the clustered gradient is from the true all-frame gradient, per
cluster, for cumulative, slope and uniform grouping, on trained weights.

For one video with layer1 features ``f_t`` (t = 1..T), on the same weights:

- true: layers 2-4 on every frame (the G = T network, logits a weighted mean over frames); ``g_t`` is
  the gradient of the loss with respect to frame t's output of layer3 (ResNet-18's 3rd block);
- approximation: the G cluster means of ``f`` through layers 2-4 (logits averaged over clusters);
  ``ĝ_k`` is the gradient with respect to cluster k's layer3 output;
- distance of cluster k: ``|| ĝ_k - sum_{t in k} g_t ||_2`` (Eq. 1: one gradient for the cluster
  against the sum of its frames' gradients), averaged over videos; the relative figure divides by
  ``|| sum_{t in k} g_t ||_2``.

The clustered network averages its G cluster logits, so a cluster weighs 1/G whatever its size,
while in the all-frame network a frame weighs 1/T. For the comparison of Eq. 1 the reference
network therefore weighs frame t of cluster k by ``1 / (G |k|)`` (Fig. 6); the distance to the
plain all-frame gradient (every frame 1/T), which also contains that re-weighting and therefore
favours equal-sized clusters, is reported beside it (``*_plain.png``).

The model runs in eval mode (BatchNorm from its running statistics, no dropout), so both passes
see the same normalisation.

    python scripts/experiments/fig6.py --model fvdeploy/assets/default_model \\
        --data runs/data/m4_64_heldout/test.txt --videos 40 --clusters 16 --out docs/fig6_gradients.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from fvdeploy.bundle import load_model
from fvdeploy.io.transforms import preprocess
from fvdeploy.models.tsm_resnet import shifted_block
from fvdeploy.ops.clustering import METHODS, aggregate_clusters, cluster_ids
from fvdeploy.training.datasets import open_source, read_frames
from fvdeploy.training.plots import grouped_bars_png


def layer3_grads(model, x: torch.Tensor, label: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Gradient of the loss w.r.t. layer3's output for ``x: [1, S, C, h, w]`` layer1 maps -> ``[S, ...]``;
    the logits are the ``weights``-weighted sum over the S maps (default: their mean).

    Layers 2-4 are run here block by block (as ``forward_clips`` does) to keep layer3's output."""
    n, s = x.shape[:2]
    h = x.reshape(n * s, *x.shape[2:])
    for layer in (model.layer2, model.layer3):
        for block in layer:
            h = shifted_block(block, h, s)
    layer3_out = h
    layer3_out.retain_grad()
    for block in model.layer4:
        h = shifted_block(block, h, s)
    per_map = model.forward_head(h.mean((2, 3)).reshape(n, s, -1))
    logits = per_map.mean(1) if weights is None else (per_map * weights[None, :, None]).sum(1)
    F.cross_entropy(logits, label).backward()
    model.zero_grad(set_to_none=True)
    return layer3_out.grad.detach()


def video_distances(model, frames: torch.Tensor, label: int, clusters: int) -> dict[str, dict[str, list[float]]]:
    """Per method and cluster: distance to the cluster-matched reference, its relative size, and the
    distance to the plain all-frame gradient (each frame weighing 1/T)."""
    y = torch.tensor([label])
    with torch.no_grad():
        f = model.forward_frames(frames[None])
    plain = layer3_grads(model, f, y)  # [T, ...], logits averaged over frames
    out = {}
    for method in METHODS:
        ids = cluster_ids(f, clusters, method)[0]
        sizes = torch.bincount(ids, minlength=clusters).float()
        # Frame t of cluster k weighs 1/(G |k|): a cluster's frames together weigh what the cluster
        # does in the clustered network, so only the averaging of activations (Eq. 1) differs.
        matched = layer3_grads(model, f, y, 1.0 / (clusters * sizes[ids]))
        approx = layer3_grads(model, aggregate_clusters(f, ids[None], clusters), y)  # [G, ...]
        rows = {"distance": [], "relative": [], "distance_plain": []}
        for k in range(clusters):
            members = ids == k
            target = matched[members].sum(0)
            d = (approx[k] - target).norm().item()
            rows["distance"].append(d)
            rows["relative"].append(d / max(target.norm().item(), 1e-12))
            rows["distance_plain"].append((approx[k] - plain[members].sum(0)).norm().item())
        out[method] = rows
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--videos", type=int, default=40)
    ap.add_argument("--clusters", type=int, default=16)
    ap.add_argument("--out", type=Path, default=Path("docs/fig6_gradients.png"))
    args = ap.parse_args()
    model = load_model(args.model)
    videos = open_source(args.data, role="val")
    keys = ("distance", "relative", "distance_plain")
    sums = {m: {k: [0.0] * args.clusters for k in keys} for m in METHODS}
    n = min(args.videos, len(videos))
    for record in videos.records[:n]:
        frames = preprocess(torch.from_numpy(read_frames(record)), model.config.input)
        for m, rows in video_distances(model, frames, record.label, args.clusters).items():
            for key in keys:
                for k in range(args.clusters):
                    sums[m][key][k] += rows[key][k] / n
    grouped_bars_png(
        {m: sums[m]["distance"] for m in METHODS},
        args.out,
        xlabel="cluster",
        ylabel="|| g_cluster - sum of its frames' g ||",
        title=f"Fig. 6: gradient distance per cluster (layer3, G={args.clusters}, mean of {n} videos)",
    )
    grouped_bars_png(
        {m: sums[m]["distance_plain"] for m in METHODS},
        args.out.with_name(args.out.stem + "_plain.png"),
        xlabel="cluster",
        ylabel="|| g_cluster - sum of its frames' g (1/T) ||",
        title=f"gradient distance to the plain all-frame gradient (frames weigh 1/T), G={args.clusters}",
    )
    summary = {
        m: {
            "mean_distance": sum(sums[m]["distance"]) / args.clusters,
            "mean_relative": sum(sums[m]["relative"]) / args.clusters,
            "mean_distance_plain": sum(sums[m]["distance_plain"]) / args.clusters,
            "per_cluster": [round(v, 6) for v in sums[m]["distance"]],
        }
        for m in METHODS
    }
    summary["_setup"] = {"model": str(args.model), "data": str(args.data), "videos": n, "clusters": args.clusters}
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({m: {k: v for k, v in s.items() if k != "per_cluster"} for m, s in summary.items()}, indent=2))


if __name__ == "__main__":
    main()
