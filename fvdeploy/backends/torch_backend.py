"""Eager PyTorch on CPU or CUDA, on an inference copy of the model that does the least work.

The copy (:func:`fvdeploy.models.inference.fold_batchnorm`) has every BatchNorm folded into its
convolution and lives in ``channels_last`` on CPU and CUDA alike (oneDNN and cuDNN both run their
fastest convolutions on NHWC, and the temporal shift keeps that layout). The model handed in is
left as it was (train/eval mode, device, dtype, memory format): training never sees the copy.

On CPU, stem + ``layer1`` run a few frames at a time (:class:`fvdeploy.models.inference.StepBuffers`)
so that their big maps stay in cache, in buffers reused from step to step (so the steps pay under a
fixed mmap threshold too); ``layer2..4`` do not gain from it (measured) and run whole.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ..errors import BackendError
from ..models.inference import BLOCK_BYTES, StepBuffers, default_block_frames, fold_batchnorm, frames_blocked, steppable
from ..models.tsm_resnet import TSMResNet
from .base import PRECISIONS


class TorchBackend:
    name = "torch"
    choice = ""  # set by create_backend("auto", ...): why auto opened it
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
        if "int8" in (precision, features_precision):
            raise BackendError(
                "precision int8 runs an export bundle's quantized graphs: --backend openvino or onnxruntime "
                "(make them with `fvdeploy export MODEL --int8 --calibrate DIR`)"
            )
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
        self.stepper = (
            StepBuffers(self.frames_model, block_frames)
            if block_frames and device.type == "cpu" and steppable(self.frames_model)
            else None
        )
        self.feature_shape = self._feature_shape()

    def _feature_shape(self) -> tuple[int, int, int]:
        crop = self.config.input.crop
        with torch.inference_mode():
            probe = torch.zeros(1, 1, 3, crop, crop, device=self.device, dtype=self.features_dtype)
            return tuple(self.frames_model.forward_frames(probe).shape[2:])

    @torch.inference_mode()
    def frame_features(self, frames: Tensor) -> Tensor:
        frames = frames.to(self.features_dtype)
        if self.block_frames and frames.shape[0] > self.block_frames:
            # StepBuffers reuses every step buffer, so the steps pay under a fixed mmap threshold
            # too (fvdeploy/malloc.py), where frames_blocked's fresh buffers lost to whole chunks
            # (224 px, R18, 128 frames, 1 thread, load ~5: 3.9 s against 4.7 s; page faults
            # 50 k against 446 k).
            if self.stepper is not None:
                return self.stepper(frames)
            return frames_blocked(self.frames_model, frames, self.block_frames)
        return self.frames_model.forward_frames(frames[None])[0]

    @torch.inference_mode()
    def clip_logits(self, maps: Tensor) -> Tensor:
        return self.model.forward_head(self.model.forward_clips(maps.to(self.dtype))).float()


__all__ = ["BLOCK_BYTES", "TorchBackend", "default_block_frames"]
