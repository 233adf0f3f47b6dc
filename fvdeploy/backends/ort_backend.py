"""ONNX Runtime on an export bundle's split pair (``frontend.onnx``, ``backend.onnx``).

Providers: ``--device auto`` tries TensorRT, CUDA, CPU in that order (whichever this onnxruntime
build has) and records the one that took the session; ``--device cpu`` is the CPU provider;
``--device cuda[:N]`` is the CUDA provider or a one-line error, never a quiet CPU run (ONNX Runtime
itself only warns when a provider fails to load, so the session's providers are checked after it
is created).

Tensors cross to ONNX Runtime as host numpy arrays; with a GPU provider the backend's ``device``
is that GPU (the runtime preprocesses there) and ONNX Runtime copies in and out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..config import ModelConfig
from ..errors import BackendError

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
GPU_PROVIDERS = {"TensorrtExecutionProvider", "CUDAExecutionProvider"}
# No square brackets in messages: the CLI prints them with rich markup.
ORT_INSTALL = "pip install onnxruntime (CPU; fvdeploy's onnx extra) or onnxruntime-gpu (CUDA; the ort-gpu extra)"


def onnxruntime_module():
    try:
        import onnxruntime
    except ImportError:
        raise BackendError(f"backend onnxruntime needs the onnxruntime package: {ORT_INSTALL}") from None
    return onnxruntime


def _device_index(device: str) -> int:
    return int(device.split(":", 1)[1]) if ":" in device else 0


def provider_plan(device: str, available: list[str]) -> list[tuple[str, dict]]:
    """The providers to ask for, in order, for a ``--device`` request."""
    device = (device or "auto").strip().lower()
    if device == "auto":
        return [(p, {}) for p in PROVIDER_ORDER if p in available]
    if device == "cpu":
        return [("CPUExecutionProvider", {})]
    if device == "cuda" or device.startswith("cuda:"):
        if "CUDAExecutionProvider" not in available:
            raise BackendError(
                f"--device {device}: this onnxruntime has no CUDAExecutionProvider (it has "
                f"{', '.join(available)}); pip install onnxruntime-gpu (fvdeploy's ort-gpu extra) or use --device cpu"
            )
        return [("CUDAExecutionProvider", {"device_id": _device_index(device)})]
    raise BackendError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")


def open_session(path: Path, device: str = "auto", threads: int | None = None):
    """An InferenceSession on ``path`` and the provider that runs it (checked, not assumed)."""
    ort = onnxruntime_module()
    plan = provider_plan(device, ort.get_available_providers())
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: provider fallbacks are checked below, not logged
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=[p for p, _ in plan], provider_options=[o for _, o in plan]
        )
    except Exception as e:  # onnxruntime raises its own pybind classes (InvalidProtobuf, Fail, ...)
        first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise BackendError(
            f"{path}: ONNX Runtime cannot load it ({first.strip()[:300]}); "
            "re-export with `fvdeploy export MODEL --force`"
        ) from None
    used = session.get_providers()[0]
    if device != "auto" and used != plan[0][0]:
        raise BackendError(
            f"--device {device}: ONNX Runtime could not start {plan[0][0]} for {path.name} "
            f"(it fell back to {used}); check the CUDA/cuDNN install or use --device cpu"
        )
    return session, used


def bundle_graphs(bundle, precision: str | None, features_precision: str | None) -> tuple[str, str]:
    """The (frontend, backend) files of ``bundle`` for a precision: the fp32 pair, or the int8 pair
    (with the fp32 frontend where ``features_precision`` keeps stem + layer1 in fp32)."""
    if precision != "int8":
        return "frontend.onnx", "backend.onnx"
    files = bundle.int8()
    if not files:
        raise BackendError(
            f"{bundle.dir} has no int8 graphs; make them with "
            f"`fvdeploy export --model {bundle.model_dir} --int8 --calibrate VIDEO_DIR --force`"
        )
    frontend = "frontend.onnx" if features_precision == "fp32" else files["frontend"]
    return frontend, files["backend"]


class OrtBackend:
    name = "onnxruntime"
    choice = ""  # set by create_backend("auto", ...): why auto opened it

    def __init__(
        self,
        bundle,
        config: ModelConfig,
        device: str = "auto",
        precision: str | None = None,
        threads: int | None = None,
        features_precision: str | None = None,
    ) -> None:
        """``precision`` int8: the bundle's int8 pair (``fvdeploy export --int8``); stem + layer1
        then run its int8 frontend unless ``features_precision`` is fp32 (the fp32 frontend)."""
        from ..export_record import check_config_matches

        if precision not in (None, "fp32", "int8"):
            raise BackendError(
                f"backend onnxruntime runs the bundle's fp32 or int8 ONNX files; use --precision fp32 or int8 "
                f"(or --backend openvino/torch for bf16, --backend tensorrt with engines from "
                f"`fvdeploy export --trt --precision {precision}`)"
            )
        check_config_matches(bundle, config)
        self.bundle = bundle
        self.config = config
        frontend, backend = bundle_graphs(bundle, precision, features_precision)
        self.precision = precision or "fp32"
        self.features_precision = "int8" if frontend != "frontend.onnx" else "fp32"
        self.frontend, self.provider = open_session(bundle.path(frontend), device, threads)
        self.backend, _ = open_session(bundle.path(backend), device, threads)
        gpu = self.provider in GPU_PROVIDERS and torch.cuda.is_available()
        index = _device_index(device) if device.startswith("cuda") else 0
        self.device = torch.device(f"cuda:{index}") if gpu else torch.device("cpu")
        self.halo = bundle.halo
        self.network_halo = bundle.network_halo
        self.feature_shape = bundle.feature_shape

    @classmethod
    def open(
        cls,
        model_dir: str | Path,
        config: ModelConfig | None = None,
        device: str = "auto",
        precision: str | None = None,
        features_precision: str | None = None,
    ) -> "OrtBackend":
        from ..export_record import open_bundle

        bundle = open_bundle(model_dir)
        return cls(bundle, config or bundle.config, device, precision, features_precision=features_precision)

    def frame_features(self, frames: Tensor) -> Tensor:
        x = np.ascontiguousarray(frames.detach().to("cpu", torch.float32).numpy())
        (features,) = self.frontend.run(["features"], {"frames": x})
        return torch.from_numpy(features).to(self.device)

    def clip_logits(self, maps: Tensor) -> Tensor:
        x = np.ascontiguousarray(maps.detach().to("cpu", torch.float32).numpy())
        (logits,) = self.backend.run(["logits"], {"maps": x})
        return torch.from_numpy(logits).to(self.device)


class OrtWholeGraph:
    """``model.onnx`` on ONNX Runtime: uint8 frames ``[N, T, S, S, 3]`` + lengths -> the three outputs."""

    def __init__(self, path: Path, device: str = "auto", threads: int | None = None) -> None:
        self.session, self.provider = open_session(path, device, threads)
        lengths = next(i for i in self.session.get_inputs() if i.name == "lengths")
        self.lengths_dtype = np.int32 if "int32" in lengths.type else np.int64

    def __call__(self, frames, lengths) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        frames = frames.detach().cpu().numpy() if isinstance(frames, Tensor) else np.asarray(frames)
        lengths = lengths.detach().cpu().numpy() if isinstance(lengths, Tensor) else np.asarray(lengths)
        if frames.dtype != np.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
            raise BackendError(f"model.onnx takes uint8 frames [N, T, S, S, 3], got {frames.dtype} {frames.shape}")
        out = self.session.run(
            None, {"frames": np.ascontiguousarray(frames), "lengths": lengths.astype(self.lengths_dtype)}
        )
        return tuple(out)
