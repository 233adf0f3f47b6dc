"""Temporal clustering of frame activations (paper §3.3), as pure tensor code.

Shapes: ``x`` is ``[N, T, C, H, W]`` (N videos, T frames), ``lengths`` is ``LongTensor[N]`` (valid
frames per video, default T). G (``num_clusters``) is a Python int: static, so every loop below runs
over G, never over T, and nothing has a data-dependent shape. That keeps the op traceable into ONNX
with T dynamic.

Per video, with ``L = max(length, G)`` the effective length:

- ``b_t = x_t > 0``; ``d_t = #(b_t != b_{t+1})`` for t = 0..L-2, int64 (never float: the
  comparisons below must be exact on every backend).
- cumulative: ``C_i = sum_{t<i} d_t``; ``r_i = #{k in 1..G-1 : k * C_total < G * C_i}``, which is
  the paper's ``max(1, ceil(G * C_i / C_total)) - 1`` in integers. ``C_total == 0`` falls back to
  uniform (a deviation from the authors' code, which divides by zero there).
- slope: boundaries after the G-1 largest ``d_t``; ties go to the earlier t, by ranking the int64
  key ``d_t * T + (T - 1 - t)``. A static video therefore splits after t = 0..G-2. (The authors'
  code takes G boundaries and drops the last cluster; we follow the paper's Fig. 3: G-1.)
- uniform: ``r_i = floor(i * G / L)``.
- empty clusters are repaired by moving cluster starts: ``s'_0 = 0``,
  ``s'_k = min(max(s_k, s'_{k-1} + 1), L - G + k)``.
- a video shorter than G (``length < G``) gets ids 0..G-1, one position each, and its positions
  ``[length, G)`` are read as copies of its last valid frame, whatever they hold.
- positions ``>= L`` get id -1 and never touch that video's ids or means.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from .names import METHODS

Method = Literal["cumulative", "slope", "uniform"]


def _check(x: Tensor, num_clusters: int, method: str | None = None) -> None:
    if x.dim() != 5:
        raise ValueError(f"x must be [N, T, C, H, W], got shape {tuple(x.shape)}")
    if not isinstance(num_clusters, int) or num_clusters < 1:
        raise ValueError(f"num_clusters must be a positive int, got {num_clusters!r}")
    if method is not None and method not in METHODS:
        raise ValueError(f"unknown clustering method {method!r}; choose one of {', '.join(METHODS)}")
    if x.shape[1] < num_clusters:
        raise ValueError(
            f"need at least num_clusters={num_clusters} frames, got T={x.shape[1]}; "
            "pad the time axis by repeating the last frame (the models do this)"
        )


def _lengths(lengths: Tensor | None, n: int, t: int, device: torch.device) -> Tensor:
    if lengths is None:
        return torch.full((n,), t, dtype=torch.long, device=device)
    return lengths.to(device=device, dtype=torch.long).reshape(n)


def effective_lengths(lengths: Tensor, num_clusters: int) -> Tensor:
    """``max(length, G)``: a video shorter than G behaves as if padded to G frames."""
    return lengths.clamp(min=num_clusters)


def memory_rows(x: Tensor) -> Tensor:
    """``[m, ...]`` -> ``[m, K]`` with each row's elements in memory order: a view, not a copy,
    for a contiguous or ``channels_last`` map (its ``[m, C, h, w]`` view would be strided)."""
    order = sorted(range(1, x.dim()), key=lambda d: (-x.stride(d), d))
    return x.permute(0, *order).reshape(x.shape[0], math.prod(x.shape[1:]))


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


def sign_changes(a: Tensor, b: Tensor) -> Tensor:
    """The Hamming distance of sign patterns, the one place fvdeploy computes it (paper §3.3):
    ``a, b: bool [m, ...]`` (``x > 0`` of two maps each, same shape and layout) -> ``LongTensor[m]``,
    ``#(a_i != b_i)``.

    Exact on every path. Traced (ONNX export) and on GPUs it is a sum of ``a != b``. On the CPU in
    eager mode torch reduces bool to int64 one byte at a time (50 ms for 64 resnet18 ``layer1``
    maps, as long as stem + ``layer1`` of 8 frames), so rows are read as int64 words, 8 flags
    (bytes 0 or 1) at a time: XOR marks the changes, three shift-adds sum a word's 8 bytes into its
    low byte (at most 8, so no carry crosses a byte), and the word sums add up: ~10x faster."""
    if _tracing() or a.device.type != "cpu":
        return (a != b).flatten(1).sum(1, dtype=torch.long)
    a, b = memory_rows(a), memory_rows(b)
    if a.shape[1] % 8 or not (a.is_contiguous() and b.is_contiguous()):
        return (a != b).sum(1, dtype=torch.long)
    x = a.view(torch.int64) ^ b.view(torch.int64)
    x += x >> 32
    x += x >> 16
    x += x >> 8
    return x.bitwise_and_(0xFF).sum(1)


def frame_distances(x: Tensor) -> Tensor:
    """Hamming distances between the sign patterns of neighbouring frames.

    ``x: [N, T, ...]`` -> ``LongTensor[N, T-1]``, ``d[:, t] = #((x_t > 0) != (x_{t+1} > 0))``
    (:func:`sign_changes` per video).
    """
    b = x > 0
    if _tracing() or x.shape[1] < 2:
        return (b[:, 1:] != b[:, :-1]).flatten(2).sum(-1, dtype=torch.long)
    return torch.stack([sign_changes(v[1:], v[:-1]) for v in b])


def uniform_ids(positions: Tensor, eff_len: Tensor, num_clusters: int) -> Tensor:
    """``floor(i * G / L)`` as a count of thresholds, ``#{k in 1..G-1 : k * L <= i * G}``."""
    k = torch.arange(1, num_clusters, device=positions.device, dtype=torch.long)
    lhs = k * eff_len[:, None, None]  # [N, 1, G-1]
    rhs = positions[None, :, None] * num_clusters  # [1, T, 1]
    return (lhs <= rhs).sum(-1)


def _ids_from_starts(starts: Tensor, positions: Tensor) -> Tensor:
    """Cluster starts ``[N, G]`` (``starts[:, 0] == 0``) -> ids ``[N, T]``."""
    return (starts[:, None, 1:] <= positions[None, :, None]).sum(-1)


def _repair_empty(raw: Tensor, positions: Tensor, eff_len: Tensor, num_clusters: int) -> Tensor:
    """Move cluster starts so that no cluster is empty (identity when none is)."""
    valid = positions[None, :] < eff_len[:, None]
    k = torch.arange(num_clusters, device=raw.device, dtype=torch.long)
    # raw ids are non-decreasing, so the first i with r_i >= k is the count of r_i < k.
    starts = ((raw[:, :, None] < k) & valid[:, :, None]).sum(1)  # [N, G]
    fixed = [torch.zeros_like(eff_len)]
    for c in range(1, num_clusters):
        s = torch.maximum(starts[:, c], fixed[-1] + 1)
        fixed.append(torch.minimum(s, eff_len - num_clusters + c))
    return _ids_from_starts(torch.stack(fixed, 1), positions)


def cluster_ids_from_distances(
    distances: Tensor, num_clusters: int, method: str = "cumulative", lengths: Tensor | None = None
) -> Tensor:
    """Cluster ids ``LongTensor[N, T]`` from neighbour distances ``LongTensor[N, T-1]``.

    This is the part of :func:`cluster_ids` after the distances, shared with the runtime (which
    computes distances chunk by chunk) and the exported split pair.
    """
    if method not in METHODS:
        raise ValueError(f"unknown clustering method {method!r}; choose one of {', '.join(METHODS)}")
    n, t = distances.shape[0], distances.shape[1] + 1
    g = num_clusters
    if t < g:
        raise ValueError(f"need at least num_clusters={g} frames, got T={t}")
    device = distances.device
    eff = effective_lengths(_lengths(lengths, n, t, device), g)
    positions = torch.arange(t, device=device, dtype=torch.long)
    # Distances at or beyond a video's last valid pair (t >= L-1) belong to padding.
    pair_valid = positions[None, :-1] < (eff - 1)[:, None]
    d = distances.to(torch.long) * pair_valid

    if method == "uniform" or g == 1:
        ids = uniform_ids(positions, eff, g)
    elif method == "cumulative":
        cum = torch.cat([torch.zeros_like(d[:, :1]), torch.cumsum(d, 1)], 1)  # C_i, [N, T]
        total = cum[:, -1:]  # masked beyond L-1, so the last entry is C_{L-1}
        k = torch.arange(1, g, device=device, dtype=torch.long)
        raw = (k * total[:, :, None] < g * cum[:, :, None]).sum(-1)
        raw = torch.where(total > 0, raw, uniform_ids(positions, eff, g))
        ids = _repair_empty(raw, positions, eff, g)
    else:  # slope
        key = d * t + (t - 1 - positions[:-1])
        key = torch.where(pair_valid, key, torch.full_like(key, -1))
        after = torch.topk(key, g - 1, dim=1).indices  # boundaries: a new cluster starts at t+1
        ids = (after[:, None, :] < positions[None, :, None]).sum(-1)
    return torch.where(positions[None, :] < eff[:, None], ids, torch.full_like(ids, -1))


def cluster_ids(x: Tensor, num_clusters: int, method: str = "cumulative", lengths: Tensor | None = None) -> Tensor:
    """Contiguous temporal cluster ids ``LongTensor[N, T]`` for activations ``x: [N, T, C, H, W]``.

    Ids are non-decreasing, cover 0..G-1 on each video's first ``max(length, G)`` positions, and
    are -1 beyond. See the module docstring for the exact formulas.
    """
    _check(x, num_clusters, method)
    return cluster_ids_from_distances(frame_distances(x), num_clusters, method, lengths)


def cluster_weights(ids: Tensor, num_clusters: int, lengths: Tensor | None = None, dtype=torch.float32) -> Tensor:
    """Averaging weights ``[N, T, G]``: ``w[n, t, k] = 1/|cluster k|`` for frames in cluster k.

    With ``lengths``, positions ``[length, G)`` of a short video are read as its last valid frame,
    so their weight moves onto frame ``length - 1``.
    """
    n, t = ids.shape
    k = torch.arange(num_clusters, device=ids.device, dtype=ids.dtype)
    onehot = (ids[:, :, None] == k).to(dtype)  # [N, T, G]; id -1 matches nothing
    if lengths is not None:
        length = _lengths(lengths, n, t, ids.device)[:, None]
        positions = torch.arange(t, device=ids.device, dtype=torch.long)[None, :]
        tail = (positions >= length - 1).to(dtype)[:, :, None]
        folded = (onehot * tail).sum(1, keepdim=True)  # [N, 1, G]: all of the tail, at length-1
        onehot = (
            onehot * (positions < length - 1).to(dtype)[:, :, None]
            + (positions == length - 1).to(dtype)[:, :, None] * folded
        )
    return onehot / onehot.sum(1, keepdim=True)


def aggregate_clusters(x: Tensor, ids: Tensor, num_clusters: int, lengths: Tensor | None = None) -> Tensor:
    """Mean of ``x: [N, T, C, H, W]`` over each cluster's frames -> ``[N, G, C, H, W]``.

    Differentiable in ``x`` (ids are constants): frame t of cluster k receives
    ``1/|cluster k|`` of the gradient of mean k. A batched matmul, so it exports as ONNX MatMul.
    """
    _check(x, num_clusters)
    n, t = x.shape[:2]
    weights = cluster_weights(ids, num_clusters, lengths, dtype=x.dtype)  # [N, T, G]
    means = torch.matmul(weights.transpose(1, 2), x.reshape(n, t, -1))
    return means.reshape(n, num_clusters, *x.shape[2:])


def cluster_segments(ids: Tensor) -> list[list[tuple[int, int]]]:
    """Per video, ``(start_frame, end_frame)`` of each cluster, end exclusive, from ids ``[N, T]``."""
    out = []
    for row in ids.detach().cpu().tolist():
        segs: list[tuple[int, int]] = []
        for i, c in enumerate(row):
            if c < 0:
                continue
            if c == len(segs):
                segs.append((i, i + 1))
            else:
                segs[c] = (segs[c][0], i + 1)
        out.append(segs)
    return out


class TemporalClustering(torch.nn.Module):
    """``cluster_ids`` + ``aggregate_clusters`` as a module: ``x, lengths -> (means, ids)``."""

    def __init__(self, num_clusters: int, method: str = "cumulative") -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"unknown clustering method {method!r}; choose one of {', '.join(METHODS)}")
        self.num_clusters = num_clusters
        self.method = method

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            ids = cluster_ids(x.detach(), self.num_clusters, self.method, lengths)
        return aggregate_clusters(x, ids, self.num_clusters, lengths), ids

    def extra_repr(self) -> str:
        return f"num_clusters={self.num_clusters}, method={self.method!r}"
