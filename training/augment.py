"""Training augmentation as TSM does it (``GroupMultiScaleCrop`` + ``GroupRandomHorizontalFlip``):
one crop box and one flip decision per video, applied to every frame, so motion stays intact.

Steps, on uint8 ``[T, H, W, 3]`` frames: the model's colour order; shorter side to
``InputSpec.shorter_side`` (as evaluation does); a crop whose sides are each one of
``scales x shorter side`` (the two sides at most ``max_distort`` scale steps apart, a side within
3 px of ``crop`` snapped to it), placed at one of TSM's 13 fixed positions; resized to
``crop x crop``; flipped left-right with probability 1/2 where the class allows; normalised.

A horizontal flip turns ``move_left`` into ``move_right`` (and clockwise into counter-clockwise),
so classes whose names mention a direction that a mirror changes are never flipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor

from fvdeploy.config import InputSpec
from fvdeploy.io.transforms import normalize, resize, resized_size, to_model_color

MIRROR_WORDS = {
    "left",
    "right",
    "clockwise",
    "counterclockwise",
    "anticlockwise",
    "leftward",
    "rightward",
    "leftwards",
    "rightwards",
}
FLIP_POLICIES = ("auto", "none")


@dataclass
class AugmentSpec:
    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
    max_distort: int = 1
    flip: str = "auto"  # auto: flip every class whose name a mirror does not change; none: never


def mirror_sensitive(name: str) -> bool:
    """Whether a left-right flip changes what the class name says (``move_left``, ``turning clockwise``)."""
    words = re.split(r"[^a-z]+", name.lower())
    return any(w in MIRROR_WORDS for w in words)


def flip_allowed(classes: list[str], policy: str = "auto") -> list[bool]:
    if policy not in FLIP_POLICIES:
        raise ValueError(f"flip policy must be one of {FLIP_POLICIES}, got {policy!r}")
    return [policy == "auto" and not mirror_sensitive(c) for c in classes]


def _crop_sides(base: int, crop: int, spec: AugmentSpec) -> list[tuple[int, int]]:
    sides = [int(base * s) for s in spec.scales]
    sides = [crop if abs(s - crop) < 3 else max(1, s) for s in sides]
    return [(h, w) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= spec.max_distort]


def _offsets(height: int, width: int, ch: int, cw: int) -> list[tuple[int, int]]:
    """TSM's 13 fixed crop positions (``more_fix_crop``): corners, centre, edge centres, quarters."""
    hs, ws = (height - ch) // 4, (width - cw) // 4
    grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2), (2, 0), (2, 4), (4, 2), (0, 2), (1, 1), (1, 3), (3, 1), (3, 3)]
    return [(r * hs, c * ws) for r, c in grid]


def crop_box(height: int, width: int, crop: int, gen: torch.Generator, spec: AugmentSpec) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of one multi-scale crop."""
    sizes = _crop_sides(min(height, width), crop, spec)
    ch, cw = sizes[int(torch.randint(len(sizes), (1,), generator=gen))]
    ch, cw = min(ch, height), min(cw, width)
    offsets = _offsets(height, width, ch, cw)
    top, left = offsets[int(torch.randint(len(offsets), (1,), generator=gen))]
    return top, left, ch, cw


def augment_frames(
    frames: Tensor, spec: InputSpec, gen: torch.Generator, aug: AugmentSpec, *, flip: bool, color: str = "bgr"
) -> Tensor:
    """uint8 ``[T, H, W, 3]`` -> float ``[T, 3, crop, crop]``, one random crop/flip for all frames."""
    x = to_model_color(frames, spec, color).float()
    x = resize(x, resized_size(x.shape[-2], x.shape[-1], spec.shorter_side), spec)
    top, left, ch, cw = crop_box(x.shape[-2], x.shape[-1], spec.crop, gen, aug)
    x = resize(x[..., top : top + ch, left : left + cw], (spec.crop, spec.crop), spec)
    do_flip = bool(torch.rand((), generator=gen) < 0.5)  # drawn always: the stream does not depend on the class
    if flip and do_flip:
        x = x.flip(-1)
    return normalize(x, spec)
