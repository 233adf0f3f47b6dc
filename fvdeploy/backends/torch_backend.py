"""Eager PyTorch on CPU or CUDA, on an inference copy of the model that does the least work.

The copy (:func:`fvdeploy.models.inference.fold_batchnorm`) has every BatchNorm folded into its
convolution and lives in ``channels_last`` on CPU and CUDA alike (oneDNN and cuDNN both run their
fastest convolutions on NHWC, and the temporal shift keeps that layout). The model handed in is
left as it was (train/eval mode, device, dtype, memory format): training never sees the copy.

On CPU, stem + ``layer1`` run a few frames at a time (:func:`fvdeploy.models.inference.frames_blocked`)
so that their big maps stay in cache; ``layer2..4`` do not gain from it (measured) and run whole.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ..malloc import fixed_threshold
from ..models.inference import fold_batchnorm, frames_blocked
from ..models.tsm_resnet import TSMResNet
from .base import PRECISIONS


class TorchBackend:
    name = "torch"
    provider = "pytorch"

    def __init__(
        self,
        model: TSMResNet,
        device: torch.device,
        precision: str = "fp32",
        features_precision: str | None = None,
        optimize: bool = True,
        block_frames: int | None = None,
    ) -> None:
        """``features_precision``: stem + layer1 (whose signs the clustering reads) may run at a
        higher precision than the rest; a separate copy of just those layers is kept then.
        ``optimize=False`` runs an unfolded copy in the default memory format instead: the
        reference that parity tests and benchmarks compare the inference graph with.
        ``block_frames``: frames per stem + ``layer1`` step (0: the whole chunk at once); default
        :func:`default_block_frames`."""
        self.dtype = PRECISIONS[precision]
        self.features_precision = features_precision or precision
        self.features_dtype = PRECISIONS[self.features_precision]
        memory_format = torch.channels_last if optimize else torch.contiguous_format
        # Fold in the weights' own (fp32) precision, then cast: folding fp16 weights would round twice.
        prepare = fold_batchnorm if optimize else (lambda m: copy.deepcopy(m).eval())
        folded = prepare(model)
        if self.features_dtype != self.dtype:
            stem = prepare(model)
            stem.layer2 = stem.layer3 = stem.layer4 = stem.fc = nn.Identity()  # only stem + layer1 needed
            self.frames_model = stem.to(device=device, dtype=self.features_dtype, memory_format=memory_format)  # type: ignore[call-overload]
        self.model = folded.to(device=device, dtype=self.dtype, memory_format=memory_format)  # type: ignore[call-overload]
        if self.features_dtype == self.dtype:
            self.frames_model = self.model
        self.config = model.config
        self.device = device
        self.precision = precision
        self.optimized = optimize
        self.halo = model.frame_halo
        # every shifted block of the network, for streaming TSM-all through all of it
        self.network_halo = sum(len(layer) for layer in (model.layer1, model.layer2, model.layer3, model.layer4))
        if block_frames is None:
            crop, width = self.config.input.crop, model.conv1.out_channels
            block_frames = default_block_frames(device, crop, self.features_dtype, width) if optimize else 0
        self.block_frames = block_frames
        self.feature_shape = self._feature_shape()

    def _feature_shape(self) -> tuple[int, int, int]:
        crop = self.config.input.crop
        with torch.inference_mode():
            probe = torch.zeros(1, 1, 3, crop, crop, device=self.device, dtype=self.features_dtype)
            return tuple(self.frames_model.forward_frames(probe).shape[2:])

    @torch.inference_mode()
    def frame_features(self, frames: Tensor) -> Tensor:
        frames = frames.to(self.features_dtype)
        # The steps pay only when glibc hands their buffers back from its heap, step after step.
        # Under the runtime's fixed 256 KiB mmap threshold (fvdeploy/malloc.py, which keeps RSS
        # flat) each one is a fresh mapping, and they ran slower than whole chunks (224 px, 1
        # thread: stem + layer1 on 128 frames 1.65 s against 1.45 s; 0.96 s with glibc's own
        # threshold): whole chunks there.
        if self.block_frames and frames.shape[0] > self.block_frames and not fixed_threshold():
            return frames_blocked(self.frames_model, frames, self.block_frames)
        return self.frames_model.forward_frames(frames[None])[0]

    @torch.inference_mode()
    def clip_logits(self, maps: Tensor) -> Tensor:
        return self.model.forward_head(self.model.forward_clips(maps.to(self.dtype))).float()


# Bytes of stem output per stem + layer1 step on CPU, so that a step's maps stay in L2/L3 instead of
# RAM: 7 frames at 224 px in fp32. Measured (bench model's stem + layer1 on 128 frames, resnet18, a
# 2-core Zen 5 with 1 MiB L2 per core and 32 MiB L3): at 224 px, 1 thread, 4/7/10/16 frames per
# step took 0.89/0.83/0.83/0.90 s against 1.36 s whole; 2 threads, 7 frames 0.45 s, 16 frames 0.59 s,
# whole 0.81 s; at 112 px 8..32 frames are alike (0.19-0.20 s against 0.28 s whole).
BLOCK_BYTES = 24 << 20


def default_block_frames(device: torch.device, crop: int, dtype: torch.dtype, stem_channels: int = 64) -> int:
    """Frames per stem + layer1 step: 0 (whole chunks) on GPUs, which want big batches; on CPU as
    many frames as keep one step's stem output (``stem_channels`` at half the crop) within
    :data:`BLOCK_BYTES`."""
    if device.type != "cpu":
        return 0
    stem_bytes = stem_channels * ((crop + 1) // 2) ** 2 * torch.finfo(dtype).bits // 8
    return max(1, BLOCK_BYTES // stem_bytes)
