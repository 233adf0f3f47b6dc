"""``--backend auto``: the backend (and where the user asked for none, the precision) that runs
fastest for a device and model folder, by a rule measured on this project's machines, never one that
changes results beyond the equality rule (docs/design.md#equality).

The rule (figures: issue 25's report and docs/runtime.md, R18 at 224 px on a 2-core AVX512-BF16 Zen
CPU, every backend in one process, best of 3):

- **CUDA**: ``torch`` (nothing measured on a GPU for this rule; TensorRT needs engines and stays
  an explicit ``--backend tensorrt``).
- **CPU, fp32** (the default precision; bf16 and int8 change logits beyond the fp32 tolerance, so
  auto never picks them unasked): ``torch``. With stem + ``layer1`` in cached-buffer steps it ran
  them in 2.52 s on 68 frames against OpenVINO's 3.16 s and ONNX Runtime's 3.16 s, and
  ``layer2..4`` on 8 cluster means in 0.46 s against 0.55 and 0.50 s. It needs no export bundle, so
  a model folder without one (the bundled model) runs the fastest backend as it is.
- **CPU, --precision bf16**: ``torch`` (1.24 s against OpenVINO bf16's 2.17 s for the same stem +
  ``layer1``; 0.22 against 0.27 s for ``layer2..4``).
- **CPU, --precision int8**: ``openvino`` where it is installed (1.94 s against ONNX Runtime's
  2.08 s; 0.29 against 0.33 s), else ``onnxruntime``; both need the bundle's int8 pair
  (``fvdeploy export --int8 --calibrate DIR``), else a one-line error saying how to make it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import BackendError


@dataclass(frozen=True)
class Choice:
    backend: str
    precision: str | None  # None: the backend's default for the device
    reason: str


def installed(backend: str) -> bool:
    module = {"onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt"}.get(backend)
    return module is None or importlib.util.find_spec(module) is not None


def choose_backend(device: torch.device, model_dir: str | Path | None = None, precision: str | None = None) -> Choice:
    """What ``--backend auto`` runs for ``device`` and ``precision`` (None: the default), by the
    rule in this module's docstring. ``model_dir`` is read only for int8 (which needs an export
    bundle with the int8 pair). Raises ``BackendError`` when nothing installed can run the request."""
    if device.type != "cpu":
        return Choice("torch", precision, f"{device.type}: torch (the only backend measured for auto there)")
    if precision in (None, "fp32", "bf16"):
        what = precision or "fp32"
        return Choice("torch", precision, f"cpu {what}: torch, the fastest measured (stepped stem + layer1)")
    if precision == "int8":
        for name in ("openvino", "onnxruntime"):
            if installed(name):
                if model_dir is not None:
                    _require_int8_bundle(Path(model_dir))
                return Choice(name, precision, f"cpu int8: {name}, the fastest installed that runs the int8 pair")
        raise BackendError(
            "--precision int8 runs on OpenVINO or ONNX Runtime and neither is installed: "
            "pip install openvino (fvdeploy's openvino extra)"
        )
    raise BackendError(f"--backend auto: no backend runs --precision {precision} on {device.type}")


def _require_int8_bundle(model_dir: Path) -> None:
    from ..export_record import open_bundle

    try:
        bundle = open_bundle(model_dir)
    except BackendError as e:
        if "no export bundle" not in str(e):
            raise
        raise BackendError(
            f"--precision int8 runs an export bundle's int8 graphs and {model_dir.name or model_dir} has no "
            "export bundle; make one with `fvdeploy export --int8 --calibrate VIDEO_DIR` (for the bundled "
            "model it writes ./fvdeploy-default-model: then pass --model ./fvdeploy-default-model)"
        ) from None
    if not bundle.int8():
        raise BackendError(
            f"{bundle.dir} has no int8 graphs; make them with "
            f"`fvdeploy export --model {model_dir} --int8 --calibrate VIDEO_DIR --force`"
        )
