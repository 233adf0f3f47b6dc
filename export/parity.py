"""Same input through two implementations: how far apart are they, and is that within tolerance?

Tolerances are those of docs/design.md#equality. Logits: max abs difference <= 1e-3 and ``allclose(rtol=1e-3,
atol=1e-4)`` in fp32. Cluster ids: identical where both sides run the op on the same input; across
backends a sign test on a near-zero activation may flip with the summation order, so there the
rule is every cluster boundary within +-1 frame (the count of differing ids is reported). Reduced
precision (fp16/bf16): the same top-1 and boundaries within +-1 frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

MAX_ABS = 1e-3
RTOL = 1e-3
ATOL = 1e-4
BOUNDARY_SLACK = 1


@dataclass
class Check:
    name: str
    passed: bool
    detail: str
    figures: dict = field(default_factory=dict)


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if x.dtype.is_floating_point:
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def logit_figures(ref, got) -> dict:
    ref, got = _np(ref).astype(np.float64), _np(got).astype(np.float64)
    diff = np.abs(ref - got)
    return {
        "max_abs": float(diff.max()) if diff.size else 0.0,
        "mean_abs": float(diff.mean()) if diff.size else 0.0,
        "allclose": bool(np.allclose(got, ref, rtol=RTOL, atol=ATOL)),
        "top1_agree": float((ref.argmax(-1) == got.argmax(-1)).mean()) if ref.size else 1.0,
    }


def cluster_starts(ids_row: np.ndarray) -> list[int]:
    """First frame of each cluster in a row of ids (-1 = padding)."""
    starts: dict[int, int] = {}
    for i, c in enumerate(ids_row.tolist()):
        if c >= 0 and c not in starts:
            starts[c] = i
    return [starts[c] for c in sorted(starts)]


def boundary_shift(ref_ids, got_ids) -> int:
    """Largest distance between corresponding cluster starts over all videos (a large number when
    the clusterings do not even have the same number of clusters or padding)."""
    ref_ids, got_ids = _np(ref_ids), _np(got_ids)
    if ref_ids.shape != got_ids.shape:
        return 10**9
    worst = 0
    for a, b in zip(ref_ids.reshape(-1, ref_ids.shape[-1]), got_ids.reshape(-1, got_ids.shape[-1])):
        sa, sb = cluster_starts(a), cluster_starts(b)
        if len(sa) != len(sb) or not np.array_equal(a < 0, b < 0):
            return 10**9
        worst = max([worst] + [abs(x - y) for x, y in zip(sa, sb)])
    return worst


def compare_network(name: str, ref: tuple, got: tuple, precision: str = "fp32", exact_ids: bool = False) -> Check:
    """``ref``/``got``: (logits, cluster_logits, cluster_ids) of the whole network."""
    logits = logit_figures(ref[0], got[0])
    per_cluster = logit_figures(ref[1], got[1])
    ref_ids, got_ids = _np(ref[2]), _np(got[2])
    same_shape = ref_ids.shape == got_ids.shape
    differing = int((ref_ids != got_ids).sum()) if same_shape else -1
    shift = boundary_shift(ref_ids, got_ids)
    figures = {
        "logits_max_abs": logits["max_abs"],
        "cluster_logits_max_abs": per_cluster["max_abs"],
        "ids_differing": differing,
        "max_boundary_shift": shift,
        "top1_agree": logits["top1_agree"],
    }
    if precision == "fp32":
        ok_logits = logits["max_abs"] <= MAX_ABS and logits["allclose"]
        ok_ids = differing == 0 if exact_ids else shift <= BOUNDARY_SLACK
    else:
        ok_logits = logits["top1_agree"] == 1.0
        ok_ids = shift <= BOUNDARY_SLACK
    detail = (
        f"logits max|d| {logits['max_abs']:.2e}, ids {'identical' if differing == 0 else f'{differing} differ'}"
        f"{'' if differing == 0 else f' (boundaries within {shift})'}"
    )
    return Check(name, bool(ok_logits and ok_ids), detail, figures)


def compare_results(name: str, ref, got, precision: str = "fp32") -> Check:
    """Two VideoResults of the same video: same top-1, top-k scores close, boundaries within +-1."""
    same_top1 = ref.label == got.label
    ref_scores = dict(ref.topk)
    score_diff = max((abs(ref_scores[label] - s) for label, s in got.topk if label in ref_scores), default=0.0)
    ref_starts = [s.start_frame for s in ref.segments]
    got_starts = [s.start_frame for s in got.segments]
    if len(ref_starts) == len(got_starts):
        shift = max([0] + [abs(a - b) for a, b in zip(ref_starts, got_starts)])
    else:
        shift = 10**9
    tolerance = MAX_ABS if precision == "fp32" else 1.0
    passed = same_top1 and shift <= BOUNDARY_SLACK and score_diff <= tolerance
    figures = {
        "same_top1": same_top1,
        "max_score_diff": float(score_diff),
        "max_boundary_shift": shift,
        "segments": len(got_starts),
        "frames": got.num_frames,
    }
    detail = (
        f"top-1 {'same' if same_top1 else f'{ref.label} vs {got.label}'}, score max|d| {score_diff:.2e}, "
        f"boundaries within {shift} over {len(got_starts)} segments of {got.num_frames} frames"
    )
    return Check(name, bool(passed), detail, figures)


def torch_reference(model, frames, lengths) -> tuple:
    """The PyTorch model on the whole graph's input: uint8 frames ``[N, T, S, S, 3]`` (model colour
    order, already cropped) normalised exactly as ``io.transforms.normalize`` does."""
    import torch

    from fvdeploy.io.transforms import normalize

    param = next(model.parameters())
    n, t, s = frames.shape[0], frames.shape[1], frames.shape[2]
    x = frames.to(param.device).permute(0, 1, 4, 2, 3).to(torch.float32).reshape(n * t, 3, s, s)
    x = normalize(x, model.config.input).reshape(n, t, 3, s, s).to(param.dtype)
    config, fast = model.config, model.fast_inference
    if config.mode != "full":  # the whole graph is the full-video network whatever mode the config runs in
        model.config = config.replace(mode="full")
    model.fast_inference = False  # the model as trained (unfolded): the exported graphs are checked against it
    try:
        with torch.no_grad():
            out = model(x, lengths.to(device=param.device, dtype=torch.int64))
    finally:
        model.config, model.fast_inference = config, fast
    return out.logits.float(), out.cluster_logits.float(), out.cluster_ids


def uint8_crops(path, spec) -> "torch.Tensor":
    """A video file as the whole graph's input for one video: uint8 ``[T, S, S, 3]``, resized and
    centre-cropped as the runtime does, rounded back to uint8, in the model's colour order."""
    import torch

    from fvdeploy.io.sources import read_video
    from fvdeploy.io.transforms import center_crop, resize, resized_size, to_model_color

    frames = torch.from_numpy(read_video(path))
    x = to_model_color(frames, spec, "bgr").to(torch.float32)
    x = center_crop(resize(x, resized_size(x.shape[-2], x.shape[-1], spec.shorter_side), spec), spec.crop)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
