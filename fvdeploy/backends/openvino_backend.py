"""OpenVINO on an export bundle: the split pair (``frontend.onnx``, ``backend.onnx``) for the
runtime, any length, and ``model.onnx`` (the whole graph) for parity checks and benchmarks.

OpenVINO reads the bundle's ONNX files as they are (external weights included) and compiles them
for its CPU plugin, the engine of Intel-CPU video-analytics stacks. Devices are named, never
guessed: ``--device cpu`` (and ``auto``) is OpenVINO's ``CPU``; anything else is a one-line error
naming the devices this OpenVINO has. Precision is always asked for, never left to the plugin (whose
default on CPUs with bf16 units is bf16): ``INFERENCE_PRECISION_HINT`` ``f32`` for fp32 (the bundle's
parity tolerances are fp32's) and for the int8 pair (``fvdeploy export --int8``: int8 where NNCF
quantized, fp32 elsewhere); ``bf16`` for ``--precision bf16``, on CPUs whose plugin lists BF16.
Stem + layer1 (whose signs the clustering reads) run at ``features_precision``.

Tensors cross as host numpy arrays; the backend's device is the CPU.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..config import ModelConfig
from ..errors import BackendError
from ..sigstack import kept_signal_stack

# No square brackets in messages: the CLI prints them with rich markup.
OPENVINO_INSTALL = "pip install openvino (fvdeploy's openvino extra)"


def openvino_module():
    try:
        import openvino
    except ImportError:
        raise BackendError(f"backend openvino needs the openvino package: {OPENVINO_INSTALL}") from None
    return openvino


def openvino_device(device: str, available: list[str]) -> str:
    """The OpenVINO device for a ``--device`` request: ``cpu``/``auto`` -> ``CPU``, checked against
    ``available`` (``Core().available_devices``)."""
    device = (device or "auto").strip().lower()
    have = ", ".join(available) or "no devices"
    if device in ("auto", "cpu"):
        if "CPU" not in available:
            raise BackendError(f"--device {device}: this OpenVINO has no CPU device (it has {have})")
        return "CPU"
    if device == "cuda" or device.startswith("cuda:"):
        raise BackendError(
            f"--device {device}: OpenVINO has no CUDA devices (this OpenVINO has {have}); "
            "use --device cpu, or --backend onnxruntime/tensorrt for CUDA"
        )
    raise BackendError(f"unknown device {device!r} for OpenVINO; this OpenVINO has {have}: use --device cpu")


HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def compile_graph(path: Path, device: str = "auto", threads: int | None = None, precision: str = "fp32"):
    """An OpenVINO CompiledModel of the ONNX file ``path`` on the requested device, computing in
    ``precision`` (fp32, bf16; int8 for a quantized graph)."""
    with kept_signal_stack():  # OpenVINO's CPU plugin swaps it and unmaps its own later (sigstack.py)
        return _compile_graph(path, device, threads, precision)


def _compile_graph(path: Path, device: str, threads: int | None, precision: str):
    ov = openvino_module()
    core = ov.Core()
    target = openvino_device(device, list(core.available_devices))
    if precision == "bf16" and "BF16" not in core.get_property(target, "OPTIMIZATION_CAPABILITIES"):
        raise BackendError(f"--precision bf16: OpenVINO's {target} device has no bf16 support on this machine")
    config: dict[str, str | int] = {"INFERENCE_PRECISION_HINT": HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    try:
        return core.compile_model(core.read_model(str(path)), target, config), target
    except Exception as e:  # OpenVINO raises RuntimeError with a multi-line C++ trace
        first = next(
            (ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.startswith("Exception from")),
            type(e).__name__,
        )
        raise BackendError(
            f"{path}: OpenVINO cannot load it ({first[:300]}); re-export with `fvdeploy export MODEL --force`"
        ) from None


class _Graph:
    """One compiled graph; one infer request per thread (a request is not thread-safe)."""

    def __init__(self, path: Path, device: str, threads: int | None, precision: str = "fp32") -> None:
        self.compiled, self.device = compile_graph(path, device, threads, precision)
        # a tensor may carry several names (an ONNX input also named by the node reading it)
        self.inputs = {name: i.get_element_type().to_dtype() for i in self.compiled.inputs for name in i.get_names()}
        self._local = threading.local()

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        feeds = {k: np.ascontiguousarray(v, dtype=self.inputs[k]) for k, v in feeds.items()}
        out = request.infer(feeds)  # outputs are copied out of the request's buffers
        return {name: value for key, value in out.items() for name in key.get_names()}


class OpenVinoBackend:
    name = "openvino"
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
        """``precision``: fp32 (default), bf16, or int8 (the bundle's int8 pair). ``features_precision``:
        of stem + layer1 (default ``precision``; fp32 keeps the clustering's signs in fp32)."""
        from ..export_record import check_config_matches
        from .ort_backend import bundle_graphs

        ov = openvino_module()
        precision = precision or "fp32"
        if precision not in HINTS:
            raise BackendError(f"backend openvino runs fp32, bf16 or int8; not --precision {precision}")
        features_precision = features_precision or precision
        if features_precision not in HINTS:
            raise BackendError(f"backend openvino runs stem + layer1 in fp32, bf16 or int8; not {features_precision}")
        check_config_matches(bundle, config)
        self.bundle = bundle
        self.config = config
        frontend, backend = bundle_graphs(bundle, precision, features_precision)
        if precision == "int8" and frontend == "frontend.onnx":
            features_precision = "fp32"
        self.precision, self.features_precision = precision, features_precision
        self.frontend = _Graph(bundle.path(frontend), device, threads, features_precision)
        self.backend = _Graph(bundle.path(backend), device, threads, precision)
        self.provider = f"OpenVINO {ov.__version__.split('-')[0]} {self.frontend.device}"
        self.device = torch.device("cpu")
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
        threads: int | None = None,
        features_precision: str | None = None,
    ) -> "OpenVinoBackend":
        from ..export_record import open_bundle

        openvino_module()  # say what to install before any path is looked at
        bundle = open_bundle(model_dir)
        return cls(bundle, config or bundle.config, device, precision, threads, features_precision)

    def frame_features(self, frames: Tensor) -> Tensor:
        out = self.frontend({"frames": frames.detach().to("cpu", torch.float32).numpy()})
        return torch.from_numpy(out["features"])

    def clip_logits(self, maps: Tensor) -> Tensor:
        out = self.backend({"maps": maps.detach().to("cpu", torch.float32).numpy()})
        return torch.from_numpy(out["logits"])


class OpenVinoWholeGraph:
    """``model.onnx`` on OpenVINO: uint8 frames ``[N, T, S, S, 3]`` + lengths -> the three outputs."""

    def __init__(self, path: Path, device: str = "auto", threads: int | None = None) -> None:
        self.graph = _Graph(path, device, threads)
        self.provider = f"OpenVINO {self.graph.device}"

    def __call__(self, frames, lengths) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        frames = frames.detach().cpu().numpy() if isinstance(frames, Tensor) else np.asarray(frames)
        lengths = lengths.detach().cpu().numpy() if isinstance(lengths, Tensor) else np.asarray(lengths)
        if frames.dtype != np.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
            raise BackendError(f"model.onnx takes uint8 frames [N, T, S, S, 3], got {frames.dtype} {frames.shape}")
        out = self.graph({"frames": frames, "lengths": lengths})
        return out["logits"], out["cluster_logits"], out["cluster_ids"]
