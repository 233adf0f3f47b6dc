"""The closed sets of this room, torch-free so the command line can offer them without loading
torch: backend names (``--backend``) and precision names (``--precision``). ``base.PRECISIONS``
maps these names to dtypes.

``auto`` is not a backend of its own: :func:`fvdeploy.backends.choose_backend` resolves it to one of
the others by the measured rule in ``choice.py``. ``int8`` runs an export bundle's quantized graphs
(``fvdeploy export --int8 --calibrate DIR``) on OpenVINO or ONNX Runtime, on the CPU."""

from __future__ import annotations

BACKENDS: tuple[str, ...] = ("auto", "torch", "onnxruntime", "openvino", "tensorrt")
PRECISION_NAMES: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")

# Reduced precision -> precision of stem + layer1 (whose signs the clustering reads) where the
# reduced one broke the reduced-precision rule (same top-1 and every boundary within one frame on
# >= 99% of videos). Measured with `fvdeploy bench precision` on held-out Move4 videos (seed 99):
# bf16 kept it (bundled model: 100% top-1, 99.5% within one frame; random R18 at 224 px: 100%,
# 100%); int8 (NNCF, OpenVINO) kept top-1 but not the boundaries (42.5% and 14% within one frame),
# so with int8 the clustering reads fp32 maps (then 100% and 100%). fp16 is measured on a GPU.
FEATURES_PRECISION_RULE: dict[str, str] = {"int8": "fp32"}


def default_features_precision(precision: str) -> str:
    """The precision stem + layer1 run at for ``precision`` (see :data:`FEATURES_PRECISION_RULE`)."""
    return FEATURES_PRECISION_RULE.get(precision, precision)
