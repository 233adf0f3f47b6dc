"""The TSM temporal shift (Lin et al., ICCV 2019), as the official code and mmaction2 do it.

``fold = C // 8``: channels ``[0, fold)`` take frame t+1, channels ``[fold, 2*fold)`` take frame
t-1, the rest stay; zeros shift in at both ends.

Two writings of the same function:

- eager (PyTorch runs it): one output tensor in the input's memory format (``channels_last``
  stays ``channels_last``), each element written once, by three slice copies and two zero fills.
  Nothing else is allocated; the input cannot be shifted in place, since the block's identity
  path still reads it.
- traced (``torch.onnx.export``, ``torch.jit.trace``): ``cat`` of slices, which exports to plain
  ONNX Slice/Concat (in-place slice assignment would export as ScatterND).
"""

from __future__ import annotations

import torch
from torch import Tensor

FOLD_DIV = 8


def temporal_shift(x: Tensor, num_frames: int, lengths: Tensor | None = None, fold_div: int = FOLD_DIV) -> Tensor:
    """Shift ``x: [N*T, C, H, W]`` (T = ``num_frames`` consecutive frames per video) along time.

    Returns a new ``[N*T, C, H, W]`` tensor in ``x``'s memory format. With ``lengths``
    (``LongTensor[N]``) a video ends at its own length: position ``length - 1`` receives zeros from
    the future instead of the first padding frame, so a video inside a padded batch gives the same
    activations as the video alone.
    """
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return _shift_traceable(x, num_frames, lengths, fold_div)
    nt, c, h, w = x.shape
    fold = c // fold_div
    out = torch.empty_like(x)  # keeps channels_last
    # Splitting N*T into (N, T) is a view in both memory formats (dim 0 is outermost in each).
    src, dst = x.view(-1, num_frames, c, h, w), out.view(-1, num_frames, c, h, w)
    dst[:, :-1, :fold] = src[:, 1:, :fold]
    dst[:, -1, :fold] = 0
    dst[:, 1:, fold : 2 * fold] = src[:, :-1, fold : 2 * fold]
    dst[:, 0, fold : 2 * fold] = 0
    dst[:, :, 2 * fold :] = src[:, :, 2 * fold :]
    if lengths is not None:
        positions = torch.arange(num_frames, device=x.device)
        keep = (positions[None, :] + 1 < lengths.to(x.device)[:, None]).to(x.dtype)
        dst[:, :, :fold] *= keep[:, :, None, None, None]
    return out


def _shift_traceable(x: Tensor, num_frames: int, lengths: Tensor | None, fold_div: int) -> Tensor:
    nt, c, h, w = x.shape
    x = x.reshape(-1, num_frames, c, h, w)
    fold = c // fold_div
    future = x[:, 1:, :fold]
    future = torch.cat([future, torch.zeros_like(x[:, :1, :fold])], 1)
    if lengths is not None:
        positions = torch.arange(num_frames, device=x.device)
        keep = (positions[None, :] + 1 < lengths.to(x.device)[:, None]).to(x.dtype)
        future = future * keep[:, :, None, None, None]
    past = torch.cat([torch.zeros_like(x[:, :1, fold : 2 * fold]), x[:, :-1, fold : 2 * fold]], 1)
    return torch.cat([future, past, x[:, :, 2 * fold :]], 2).reshape(nt, c, h, w)


class TemporalShift(torch.nn.Module):
    """Thin module around :func:`temporal_shift`; the caller sets the time layout per call."""

    def __init__(self, fold_div: int = FOLD_DIV) -> None:
        super().__init__()
        self.fold_div = fold_div

    def forward(self, x: Tensor, num_frames: int, lengths: Tensor | None = None) -> Tensor:
        return temporal_shift(x, num_frames, lengths, self.fold_div)

    def extra_repr(self) -> str:
        return f"fold_div={self.fold_div}"
