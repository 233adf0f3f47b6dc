"""Eager PyTorch on CPU or CUDA."""

from __future__ import annotations

import torch
from torch import Tensor

from ..models.tsm_resnet import TSMResNet
from .base import PRECISIONS


class TorchBackend:
    name = "torch"
    provider = "pytorch"

    def __init__(self, model: TSMResNet, device: torch.device, precision: str = "fp32") -> None:
        self.dtype = PRECISIONS[precision]
        self.model = model.eval().to(device=device, dtype=self.dtype)
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.config = model.config
        self.device = device
        self.precision = precision
        self.halo = model.frame_halo
        # every shifted block of the network, for streaming TSM-all through all of it
        self.network_halo = sum(len(layer) for layer in (model.layer1, model.layer2, model.layer3, model.layer4))
        self.feature_shape = self._feature_shape()

    def _feature_shape(self) -> tuple[int, int, int]:
        crop = self.config.input.crop
        with torch.inference_mode():
            probe = torch.zeros(1, 1, 3, crop, crop, device=self.device, dtype=self.dtype)
            return tuple(self.model.forward_frames(probe).shape[2:])

    @torch.inference_mode()
    def frame_features(self, frames: Tensor) -> Tensor:
        return self.model.forward_frames(frames.to(self.dtype)[None])[0]

    @torch.inference_mode()
    def clip_logits(self, maps: Tensor) -> Tensor:
        return self.model.forward_head(self.model.forward_clips(maps.to(self.dtype))).float()
