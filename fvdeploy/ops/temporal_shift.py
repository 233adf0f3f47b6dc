"""The TSM temporal shift (Lin et al., ICCV 2019), as the official code and mmaction2 do it.

``fold = C // 8``: channels ``[0, fold)`` take frame t+1, channels ``[fold, 2*fold)`` take frame
t-1, the rest stay; zeros shift in at both ends. Written with ``cat`` instead of in-place slice
assignment so it exports to plain ONNX Slice/Concat.
"""

from __future__ import annotations

import torch
from torch import Tensor

FOLD_DIV = 8


def temporal_shift(x: Tensor, num_frames: int, lengths: Tensor | None = None, fold_div: int = FOLD_DIV) -> Tensor:
    """Shift ``x: [N*T, C, H, W]`` (T = ``num_frames`` consecutive frames per video) along time.

    With ``lengths`` (``LongTensor[N]``) a video ends at its own length: position ``length - 1``
    receives zeros from the future instead of the first padding frame, so a video inside a padded
    batch gives the same activations as the video alone.
    """
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
