"""Frame sampling for TSM mode (TSM-k): K segments, the centre frame of each at test time, a random
frame inside each while training."""

from __future__ import annotations

import torch
from torch import Tensor


def segment_bounds(num_frames: int, segments: int) -> list[tuple[int, int]]:
    """``[start, end)`` of K equal segments over ``num_frames`` (empty when T < K)."""
    return [(k * num_frames // segments, (k + 1) * num_frames // segments) for k in range(segments)]


def tsm_indices(
    num_frames: int, segments: int, *, random: bool = False, generator: torch.Generator | None = None
) -> Tensor:
    """Indices of the K frames TSM reads: ``int(tick/2 + tick*k)`` with ``tick = T/K`` at test
    (the official TSM test sampling), a uniform draw inside each segment when ``random``."""
    if num_frames < 1 or segments < 1:
        raise ValueError(f"need num_frames >= 1 and segments >= 1, got {num_frames}, {segments}")
    if not random:
        tick = num_frames / segments
        return torch.tensor([int(tick / 2.0 + tick * k) for k in range(segments)], dtype=torch.long)
    idx = []
    for start, end in segment_bounds(num_frames, segments):
        if end <= start:  # T < K: segments are empty, repeat frames
            idx.append(min(start, num_frames - 1))
        else:
            idx.append(int(torch.randint(start, end, (1,), generator=generator)))
    return torch.tensor(idx, dtype=torch.long)
