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


def temporal_shift(
    x: Tensor, num_frames: int, lengths: Tensor | None = None, fold_div: int = FOLD_DIV, out: Tensor | None = None
) -> Tensor:
    """Shift ``x: [N*T, C, H, W]`` (T = ``num_frames`` consecutive frames per video) along time.

    Returns a new ``[N*T, C, H, W]`` tensor in ``x``'s memory format, or writes into ``out`` (same
    shape, dtype and memory format as ``x``, not overlapping it) and returns that. With ``lengths``
    (``LongTensor[N]``) a video ends at its own length: position ``length - 1`` receives zeros from
    the future instead of the first padding frame, so a video inside a padded batch gives the same
    activations as the video alone.
    """
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return _shift_traceable(x, num_frames, lengths, fold_div)
    nt, c, h, w = x.shape
    fold = c // fold_div
    if out is None:
        out = torch.empty_like(x)  # keeps channels_last
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        # An NHWC map seen as [N, T, H, W, C]: each copy below runs over rows of channels in
        # memory order (seen as [N, T, C, H, W] it would step through 8 floats at a time).
        src = x.permute(0, 2, 3, 1).reshape(-1, num_frames, h, w, c)
        dst = out.permute(0, 2, 3, 1).view(-1, num_frames, h, w, c)
        cdim = 4
    else:
        src, dst = x.reshape(-1, num_frames, c, h, w), out.view(-1, num_frames, c, h, w)
        cdim = 2
    future_src, future_dst = src.narrow(cdim, 0, fold), dst.narrow(cdim, 0, fold)
    past_src, past_dst = src.narrow(cdim, fold, fold), dst.narrow(cdim, fold, fold)
    future_dst[:, :-1] = future_src[:, 1:]
    future_dst[:, -1:] = 0
    past_dst[:, 1:] = past_src[:, :-1]
    past_dst[:, :1] = 0
    dst.narrow(cdim, 2 * fold, c - 2 * fold).copy_(src.narrow(cdim, 2 * fold, c - 2 * fold))
    if lengths is not None:
        positions = torch.arange(num_frames, device=x.device)
        keep = (positions[None, :] + 1 < lengths.to(x.device)[:, None]).to(x.dtype)
        future_dst.mul_(keep[:, :, None, None, None])
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
