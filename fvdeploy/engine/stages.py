"""The backend split one step finer than ``frame_features``: the stem on its own, then ``layer1``.

Windowed classification needs it. The temporal shift in ``layer1`` mixes each frame with its
neighbours, so a frame near a window's edge has a different ``layer1`` output in the window (zero
padding at the edge, as a clip would have) than in the stream (its real neighbours). The stem
is per frame: keeping the stem output of the few frames near each window edge lets the watcher
rerun just the ``layer1`` blocks for those frames with the window's padding, and the stem still
runs once per frame.

The eager PyTorch backend is split here through its model. Any other backend gets ``InputStages``:
the cached "stem output" is the preprocessed frame and the edge recompute runs ``frame_features`` (stem included) again on
those few frames, which is exact but runs the stem a second time for 4 x halo frames per window.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor

from ..backends.base import Backend


class FrameStages(Protocol):
    stem_once: bool  # True: the edge recompute reuses cached stem outputs

    def stem(self, frames: Tensor) -> Tensor:
        """``[k, 3, S, S]`` preprocessed frames -> ``[k, ...]`` per-frame maps."""
        ...

    def layer1(self, maps: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``[N, T, ...]`` stem maps of N sequences of consecutive frames (zero shift padding at both
        ends; ``lengths`` ends each sequence early) -> ``[N, T, C, h, w]`` layer1 maps."""
        ...


class TorchStages:
    stem_once = True

    def __init__(self, backend: Any) -> None:
        """``backend``: the torch backend (its ``frames_model`` runs stem + layer1)."""
        # stem + layer1 may run at their own precision (the clustering reads their signs)
        self.model = backend.frames_model
        self.dtype = getattr(backend, "features_dtype", getattr(backend, "dtype", torch.float32))

    @torch.inference_mode()
    def stem(self, frames: Tensor) -> Tensor:
        return self.model.forward_stem(frames.to(self.dtype))

    @torch.inference_mode()
    def layer1(self, maps: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.model.forward_layer1(maps, lengths)


class InputStages:
    stem_once = False

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def stem(self, frames: Tensor) -> Tensor:
        return frames

    def layer1(self, maps: Tensor, lengths: Tensor | None = None) -> Tensor:
        rows = []
        for i in range(maps.shape[0]):
            n = int(lengths[i]) if lengths is not None else maps.shape[1]
            out = self.backend.frame_features(maps[i, :n])
            if n < maps.shape[1]:
                out = torch.cat([out, out.new_zeros((maps.shape[1] - n, *out.shape[1:]))])
            rows.append(out)
        return torch.stack(rows)


def frame_stages(backend: Backend) -> FrameStages:
    """The split the backend allows: stem once per frame (torch), else the input as the cache."""
    from ..models.tsm_resnet import TSMResNet

    if isinstance(getattr(backend, "frames_model", getattr(backend, "model", None)), TSMResNet):
        return TorchStages(backend)
    return InputStages(backend)
