"""Preprocessing shared by every backend, the runtime, watch and training's evaluation.

Two steps, so that the first can run where frames are decoded:

- ``shrink``: uint8 ``[k, H, W, 3]`` -> uint8 ``[k, crop, crop, 3]``: shorter side to
  ``spec.shorter_side`` with the model's interpolation and antialiasing, then the centre crop. The
  result is uint8 on every device, as when training pipelines resize uint8 images (PIL, OpenCV,
  torchvision on uint8 tensors): on the CPU with torch's vectorised uint8 kernel (0.33 ms for a
  720p frame on one core here, vs 6.9 ms in float), on CUDA in float rounded to the nearest level
  (the uint8 kernel is CPU-only). The two agree to one grey level (fixed-point vs float rounding).
- ``to_input``: uint8 crops -> normalised float ``[k, 3, crop, crop]`` in the model's colour order.

``preprocess`` is both. The runtime calls ``shrink`` in its decode thread on the CPU, so the model
thread receives small frames (docs/runtime.md)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import InputSpec


def resized_size(height: int, width: int, shorter_side: int) -> tuple[int, int]:
    """(h, w) after scaling the shorter side to ``shorter_side``, keeping the aspect ratio."""
    if height <= width:
        return shorter_side, max(1, int(round(width * shorter_side / height)))
    return max(1, int(round(height * shorter_side / width))), shorter_side


def resize(x: Tensor, size: tuple[int, int], spec: InputSpec) -> Tensor:
    """Resize ``[k, 3, H, W]`` with the interpolation and antialiasing the model was trained with."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    mode = spec.interpolation
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    if mode == "area":
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=spec.antialias)


def center_crop(x: Tensor, crop: int) -> Tensor:
    h, w = x.shape[-2:]
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    return x[..., top : top + crop, left : left + crop]


def _uint8_kernel(spec: InputSpec, device: torch.device) -> bool:
    """Whether torch resizes uint8 directly for this spec and device: its CPU kernel, for nearest
    and bilinear. Bicubic's uint8 results are up to 2 levels (antialiased) or 23 (plain) from the
    rounded float resize here, and area has no uint8 kernel: those resize in float and round."""
    return device.type == "cpu" and spec.interpolation in ("nearest", "bilinear")


def shrink(frames: Any, spec: InputSpec) -> Any:
    """uint8 ``[k, H, W, 3]`` (numpy, or a tensor on any device) -> uint8 ``[k, crop, crop, 3]``
    of the same kind: shorter side to ``spec.shorter_side``, then the centre crop. Frames already
    ``crop x crop`` with ``crop == shorter_side`` come back as they are.

    Raises ``ValueError`` for anything but uint8 ``[k, H, W, 3]``."""
    is_numpy = isinstance(frames, np.ndarray)
    t = torch.from_numpy(frames) if is_numpy else frames
    if t.dtype != torch.uint8 or t.dim() != 4 or t.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [k, H, W, 3], got {t.dtype} {tuple(t.shape)}")
    x = t.permute(0, 3, 1, 2)  # a channels-last view: no copy, and the kernels' fast layout
    size = resized_size(x.shape[-2], x.shape[-1], spec.shorter_side)
    if tuple(x.shape[-2:]) != size:
        if _uint8_kernel(spec, x.device):
            x = resize(x, size, spec)
        else:
            x = resize(x.float(), size, spec).round_().clamp_(0, 255).to(torch.uint8)
    x = center_crop(x, spec.crop).permute(0, 2, 3, 1)
    if x.data_ptr() == t.data_ptr() and x.shape == t.shape:
        return frames
    x = x.contiguous()
    return x.numpy() if is_numpy else x


def shrink_in_reader(frames: Any, spec: InputSpec) -> Any:
    """``shrink`` for a decode (reader) thread: with one intra-op thread there. torch's thread
    count is per thread (OpenMP), so this leaves the model thread's alone; a second OpenMP team
    would spin against the model's and FFmpeg's threads for the same cores."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    return shrink(frames, spec)


def normalize(x: Tensor, spec: InputSpec) -> Tensor:
    """Float ``[k, 3, h, w]`` in 0..255 -> model input (mean/std in the spec's pixel scale)."""
    if spec.scale == 1:
        x = x / 255.0
    mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device)[:, None, None]
    std = torch.tensor(spec.std, dtype=x.dtype, device=x.device)[:, None, None]
    return (x - mean) / std


def to_model_color(frames: Tensor, spec: InputSpec, color: str) -> Tensor:
    """uint8 ``[k, H, W, 3]`` in ``color`` order -> ``[k, 3, H, W]`` in the model's colour order."""
    x = frames.permute(0, 3, 1, 2)
    return x if color == spec.color else x.flip(1)


def to_input(frames: Tensor, spec: InputSpec, color: str = "bgr", dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 ``[k, crop, crop, 3]`` (what ``shrink`` returns, ``color`` order) -> normalised
    ``[k, 3, crop, crop]`` of ``dtype`` in the model's colour order (channels-last memory)."""
    x = to_model_color(frames, spec, color).to(dtype)  # a fresh tensor: normalised in place
    scale = torch.tensor(spec.std, dtype=dtype, device=x.device)[:, None, None].reciprocal()
    shift = torch.tensor(spec.mean, dtype=dtype, device=x.device)[:, None, None] * -scale
    if spec.scale == 1:
        scale = scale / 255.0
    # (x / 255 - mean) / std in two in-place passes instead of three allocating ones (0.64 ms a
    # 224-px frame of the model thread's time went to normalise)
    return x.mul_(scale).add_(shift)


def preprocess(frames: Tensor, spec: InputSpec, color: str = "bgr", dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 ``[k, H, W, 3]`` (``color`` order, as decoded) -> ``[k, 3, crop, crop]`` model input:
    ``shrink`` then ``to_input``. Raises ``ValueError`` for anything but uint8 ``[k, H, W, 3]``."""
    return to_input(shrink(frames, spec), spec, color, dtype)
