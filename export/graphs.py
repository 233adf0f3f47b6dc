"""The three exported networks as torch modules, and the static-G clustering op they trace.

    WholeNetwork   uint8 frames [N, T, S, S, 3] + lengths [N] -> logits [N, classes],
                   cluster_logits [N, G, classes], cluster_ids [N, max(T, G)]
    Frontend       float frames [k, 3, S, S] (normalised) -> features [k, C, h, w] (stem + layer1),
                   distances [k-1] int32 (neighbour Hamming distances inside the chunk)
    Backend        float maps [N, M, C, h, w] -> logits [N, M, classes] (layer2..4 + head)

The clustering inside WholeNetwork is the arithmetic of ``fvdeploy.ops.clustering`` (the same
formulas, checked id for id by the parity tests) rewritten for export:

- G is a Python int, T only ever appears as a tensor shape: no data-dependent shapes, no NonZero,
  Unique or boolean indexing.
- the integer type is a parameter: int64 for ONNX Runtime (``model.onnx``); int32 for TensorRT,
  whose engine is then bounded by :func:`int32_max_frames` so nothing can overflow.
- TensorRT's CumSum takes floats only, so prefix sums are a log-step scan of Slice/Concat/Add.
- cumulative thresholds are ``floor(k * C_total / G)`` computed as ``k * (C_total // G) +
  (k * (C_total % G)) // G``: ``k * C_total < G * C_i`` iff ``floor(k * C_total / G) < C_i`` for
  integer ``C_i``, and no intermediate exceeds ``C_total`` (the paper's formula multiplies by G).
- Hamming distances use Xor on the sign masks (TensorRT's Equal has no BOOL).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fvdeploy.models.tsm_resnet import TSMResNet
from fvdeploy.ops.clustering import aggregate_clusters

INT32_LIMIT = 2**31 - 1
SCAN_STEPS = 31  # 2**31 frames: more than any int32- or memory-bounded whole graph can take


def int32_max_frames(feature_shape: tuple[int, int, int]) -> int:
    """Longest video whose clustering arithmetic fits int32 for layer1 maps ``(C, h, w)``.

    The largest intermediate is the slope key ``d * T + T - 1`` with ``d <= C*h*w``; the
    cumulative sums and thresholds stay below ``(T - 1) * C*h*w``.
    """
    c, h, w = feature_shape
    return INT32_LIMIT // (c * h * w + 1)


def prefix_sum(x: Tensor, steps: int = SCAN_STEPS) -> Tensor:
    """Inclusive prefix sum of integer ``x [N, L]`` along dim 1 (Hillis-Steele scan).

    Each step adds the tensor shifted by ``s``; ``zeros_like(x)[:, :s]`` has ``min(s, L)`` columns
    and ``x[:, :-s]`` ``max(L - s, 0)``, so every step keeps the width L for any L.
    """
    s = 1
    for _ in range(steps):
        x = x + torch.cat([torch.zeros_like(x)[:, :s], x[:, :-s]], 1)
        s *= 2
    return x


def hamming_distances(features: Tensor, int_dtype: torch.dtype) -> Tensor:
    """``[N, T, C, h, w]`` -> ``[N, T-1]``: changed signs between neighbouring frames."""
    b = features > 0
    return torch.logical_xor(b[:, 1:], b[:, :-1]).flatten(2).to(int_dtype).sum(-1, dtype=int_dtype)


def static_cluster_ids(
    distances: Tensor, eff_len: Tensor, num_clusters: int, method: str, int_dtype: torch.dtype = torch.int64
) -> Tensor:
    """Cluster ids ``[N, T]`` (int_dtype, -1 beyond ``eff_len``) from distances ``[N, T-1]``.

    ``eff_len`` is ``max(length, G)`` per video and the time axis already holds ``>= G`` frames.
    """
    g = num_clusters
    n_pairs = distances.shape[1]
    positions = torch.arange(n_pairs + 1, dtype=int_dtype, device=distances.device)
    t = n_pairs + 1
    eff = eff_len.to(int_dtype)
    pair_valid = positions[None, :-1] < (eff - 1)[:, None]
    d = distances.to(int_dtype) * pair_valid.to(int_dtype)

    k = torch.arange(1, g, dtype=int_dtype, device=distances.device)
    uniform = (
        (k[None, None, :] * eff[:, None, None] <= positions[None, :, None] * g).to(int_dtype).sum(-1, dtype=int_dtype)
    )
    if method == "uniform" or g == 1:
        ids = uniform
    elif method == "cumulative":
        cum = torch.cat([torch.zeros_like(d[:, :1]), prefix_sum(d)], 1)  # C_i
        total = cum[:, -1:]
        whole = torch.div(total, g, rounding_mode="trunc")
        rest = total - whole * g
        thresholds = k[None, :] * whole + torch.div(k[None, :] * rest, g, rounding_mode="trunc")  # [N, G-1]
        raw = (thresholds[:, None, :] < cum[:, :, None]).to(int_dtype).sum(-1, dtype=int_dtype)
        raw = torch.where(total > 0, raw, uniform)
        ids = _repair_empty(raw, positions, eff, g, int_dtype)
    elif method == "slope":
        key = d * t + (t - 1 - positions[:-1])  # distinct keys: ties go to the earlier t
        key = torch.where(pair_valid, key, torch.full_like(key, -1))
        after = torch.topk(key, g - 1, dim=1).indices.to(int_dtype)  # a new cluster starts at after+1
        ids = (after[:, None, :] < positions[None, :, None]).to(int_dtype).sum(-1, dtype=int_dtype)
    else:
        raise ValueError(f"unknown clustering method {method!r}")
    return torch.where(positions[None, :] < eff[:, None], ids, torch.full_like(ids, -1))


def _repair_empty(raw: Tensor, positions: Tensor, eff: Tensor, g: int, int_dtype: torch.dtype) -> Tensor:
    """Move cluster starts so that no cluster is empty (``ops.clustering._repair_empty``)."""
    valid = positions[None, :] < eff[:, None]
    kk = torch.arange(g, dtype=int_dtype, device=raw.device)
    starts = torch.logical_and(raw[:, :, None] < kk, valid[:, :, None]).to(int_dtype).sum(1, dtype=int_dtype)
    fixed = [torch.zeros_like(eff)]
    for c in range(1, g):
        s = torch.maximum(starts[:, c], fixed[-1] + 1)
        fixed.append(torch.minimum(s, eff - g + c))
    starts = torch.stack(fixed, 1)
    return (starts[:, None, 1:] <= positions[None, :, None]).to(int_dtype).sum(-1, dtype=int_dtype)


class WholeNetwork(nn.Module):
    """The full-video network in one graph: normalisation, padding to G, stem + layer1, clustering,
    cluster means, layer2..4, head. Inputs: uint8 frames ``[N, T, S, S, 3]`` already resized and
    centre-cropped, in the model's colour order, and ``lengths [N]`` (valid frames per video)."""

    def __init__(
        self, model: TSMResNet, int_dtype: torch.dtype = torch.int64, dtype: torch.dtype = torch.float32
    ) -> None:
        super().__init__()
        self.model = model
        self.g = model.config.num_clusters
        self.method = model.config.method
        self.int_dtype = int_dtype
        self.dtype = dtype
        spec = model.config.input
        self.divide_255 = spec.scale == 1
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).reshape(1, 1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).reshape(1, 1, 3, 1, 1))

    def forward(self, frames: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # Cast first: TensorRT takes UINT8 only as a network input, so no other op may read it.
        x = frames.to(torch.float32)
        n, t = x.shape[0], x.shape[1]
        g = self.g
        # The same float operations as io.transforms.normalize, so both sides see the same input bits.
        x = x.permute(0, 1, 4, 2, 3)
        if self.divide_255:
            x = x / 255.0
        x = ((x - self.mean) / self.std).to(self.dtype)
        lengths = lengths.to(torch.int64)
        # Positions 0..max(T, G)-1 without a data-dependent branch: arange(G)[T:] is empty when T >= G.
        positions = torch.cat([torch.arange(t, device=frames.device), torch.arange(g, device=frames.device)[t:]])
        src = torch.minimum(positions[None, :], (lengths - 1)[:, None])  # repeat each video's last valid frame
        flat = (src + torch.arange(n, device=frames.device)[:, None] * t).reshape(-1)
        x = x.reshape(-1, *x.shape[2:])[flat].reshape(n, -1, *x.shape[2:])
        eff = torch.maximum(lengths, torch.full_like(lengths, g))  # Max, not Clip: TensorRT's Clip has no ints
        feats = self.model.forward_frames(x, eff)
        ids = static_cluster_ids(hamming_distances(feats, self.int_dtype), eff, g, self.method, self.int_dtype)
        # Means in fp32 whatever the network's precision: sums over many frames.
        means = aggregate_clusters(feats.to(torch.float32), ids.to(torch.int64), g, eff).to(self.dtype)
        cluster_logits = self.model.forward_head(self.model.forward_clips(means)).to(torch.float32)
        return cluster_logits.mean(1), cluster_logits, ids


class Frontend(nn.Module):
    """Stem + layer1 over one chunk of consecutive frames (shift zero-padded at the chunk's ends)."""

    def __init__(self, model: TSMResNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        feats = self.model.forward_frames(frames[None])
        return feats[0], hamming_distances(feats, torch.int32)[0]


class Backend(nn.Module):
    """layer2..4 + head over M maps per video (G cluster means, or K sampled frames)."""

    def __init__(self, model: TSMResNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, maps: Tensor) -> Tensor:
        return self.model.forward_head(self.model.forward_clips(maps))
