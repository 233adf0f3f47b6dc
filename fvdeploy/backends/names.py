"""The closed sets of this room, torch-free so the command line can offer them without loading
torch: backend names (``--backend``) and precision names (``--precision``). ``base.PRECISIONS``
maps these names to dtypes."""

from __future__ import annotations

BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "openvino", "tensorrt")
PRECISION_NAMES: tuple[str, ...] = ("fp32", "fp16", "bf16")
