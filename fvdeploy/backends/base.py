"""What the runtime needs from an inference backend, and device/precision resolution.

The runtime drives every backend through two stages of the model (so any video length runs in
bounded memory, and the clustering itself stays in one place, ``fvdeploy.ops``):

    frame_features(frames [k, 3, S, S]) -> [k, C, h, w]   stem + layer1 over k consecutive frames,
                                                          zero shift padding at both ends
    clip_logits(maps [N, M, C, h, w])   -> [N, M, classes] layer2..4 + head over M maps per video
                                                          (G cluster means, or K sampled frames)

Inputs and outputs are torch tensors on ``backend.device`` (a backend that runs elsewhere copies).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from ..config import ModelConfig
from ..errors import BackendError
from .names import BACKENDS, PRECISION_NAMES

# int8: the dtype of a quantized graph's weights and activations (only the bundle backends run it)
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.int8}
PRECISIONS = {name: _DTYPES[name] for name in PRECISION_NAMES}

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "Backend",
    "native_bf16",
    "resolve_device",
    "resolve_precision",
]


class Backend(Protocol):
    name: str
    config: ModelConfig
    device: torch.device
    precision: str
    features_precision: str  # of stem + layer1 (the clustering reads their signs)
    provider: str  # what actually runs the math, e.g. "pytorch", "CPUExecutionProvider"
    halo: int  # frames of context per side that frame_features needs
    network_halo: int  # the same for frame_features followed by clip_logits (TSM-all streaming)
    feature_shape: tuple[int, int, int]  # (C, h, w) of one layer1 map
    choice: str  # why --backend auto opened this backend ("" when it was named)

    def frame_features(self, frames: Tensor) -> Tensor: ...

    def clip_logits(self, maps: Tensor) -> Tensor: ...


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> cuda:0 when CUDA works, else cpu. Asking for CUDA without it is an error."""
    device = (device or "auto").strip().lower()
    if device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise BackendError(f"--device {device}: CUDA is not available here (torch.cuda.is_available() is False)")
        index = 0 if device == "cuda" else device.split(":", 1)[1]
        if not str(index).isdigit() or int(index) >= torch.cuda.device_count():
            raise BackendError(f"--device {device}: no such CUDA device ({torch.cuda.device_count()} visible)")
        return torch.device(f"cuda:{int(index)}")
    raise BackendError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """Default fp16 on CUDA, fp32 on CPU; fp16 on CPU is refused (slow and unsupported by many
    kernels), int8 on CUDA too (the quantized graphs run on OpenVINO and ONNX Runtime's CPU)."""
    if precision is None:
        return "fp16" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise BackendError(f"unknown precision {precision!r}; choose {', '.join(PRECISION_NAMES)}")
    if precision == "fp16" and device.type == "cpu":
        raise BackendError("precision fp16 needs a CUDA device; use fp32, bf16 or int8 on the CPU")
    if precision == "int8" and device.type != "cpu":
        raise BackendError("precision int8 runs on the CPU (--device cpu); use fp16 on CUDA")
    return precision


def native_bf16() -> bool:
    """Whether this CPU computes bf16 dot products in hardware (AVX512-BF16 or AMX-BF16, from
    /proc/cpuinfo's flags): oneDNN and OpenVINO then run bf16 convolutions about twice as fast as
    fp32 (measured here, R18 stem + layer1 at 224 px). Elsewhere bf16 is emulated and no faster."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False
