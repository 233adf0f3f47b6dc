"""The closed sets of this room, torch-free so the command line can offer them without loading
torch: backend names (``--backend``) and precision names (``--precision``). ``base.PRECISIONS``
maps these names to dtypes.

``auto`` is not a backend of its own: :func:`fvdeploy.backends.choose_backend` resolves it to one of
the others by the measured rule in ``choice.py``. ``int8`` runs an export bundle's quantized graphs
(``fvdeploy export --int8 --calibrate DIR``) on OpenVINO or ONNX Runtime, on the CPU."""

from __future__ import annotations

BACKENDS: tuple[str, ...] = ("auto", "torch", "onnxruntime", "openvino", "tensorrt")
PRECISION_NAMES: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")
