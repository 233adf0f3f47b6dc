"""Scores and segments from logits: the one place a result's numbers are made.

Scores are softmax probabilities of the mean logits over the units the model saw (G cluster means
in mode full and in every window of a watch, the K sampled frames in mode tsm), computed in
float64 and rounded to 6 decimals; each reported unit becomes a :class:`~fvdeploy.records.Segment`
with its own top label and probability, its frames and their seconds (docs/design.md, Records).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..records import Segment

# (position, end) -> (source frame number, seconds or None): the start of frame ``position``, or
# with ``end`` the end of frame ``position - 1`` (the next frame's time, or the last one's end).
Locate = Callable[[int, bool], tuple[int, float | None]]


@dataclass
class Scored:
    """``label``/``score``: the top class and its probability; ``topk``: up to k (label,
    probability) pairs, best first; ``segments``: the reported units; ``probs``: float64
    ``[classes]`` (events read them)."""

    label: str
    score: float
    topk: list[tuple[str, float]]
    segments: list[Segment]
    probs: Tensor


def score(
    video_logits: Tensor,
    unit_logits: Tensor,
    spans: Sequence[tuple[int, int]],
    labels: Sequence[str],
    top_k: int,
    locate: Locate,
) -> Scored:
    """``video_logits``: ``[classes]`` the mean over all units (padding units included, as the
    model computes it); ``unit_logits``: ``[U, classes]`` of the reported units, whose positions
    are ``spans`` ``[(start, stop)]``; ``locate`` turns positions into frame numbers and seconds."""
    probs = torch.softmax(video_logits.double(), 0)
    top = probs.topk(min(top_k, len(labels)))
    topk = [(labels[int(i)], round(float(v), 6)) for v, i in zip(top.values, top.indices)]
    unit_probs = torch.softmax(unit_logits.double(), 1)
    segments = []
    for (s, e), p in zip(spans, unit_probs):
        j = int(p.argmax())
        start_frame, start_s = locate(int(s), False)
        end_frame, end_s = locate(int(e), True)
        segments.append(Segment(start_frame, end_frame, start_s, end_s, labels[j], round(float(p[j]), 6)))
    return Scored(topk[0][0], topk[0][1], topk, segments, probs)
