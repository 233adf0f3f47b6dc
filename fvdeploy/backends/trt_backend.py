"""TensorRT engines of an export bundle (``frontend.<precision>.engine``, ``backend.<precision>.engine``).

Written against the ``tensorrt`` Python API of 10.x and 11.x: tensors go by name
(``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``) with torch CUDA tensors as the
buffers, on torch's current stream, so no other CUDA binding is needed.

Before an engine is deserialized, the TensorRT version and GPU recorded in ``export.json`` are
compared with this machine's: an engine is only valid for the TensorRT build and GPU it was built
on, and deserializing a foreign one fails deep inside TensorRT or, worse, runs slowly.

The profiles bound the chunk sizes an engine takes; larger chunks are split here with the same halo
logic as the runtime (``ops.halo``), which is exact, so every length runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..config import ModelConfig
from ..errors import BackendError
from ..ops.halo import stream_with_halo

# No square brackets in messages: the CLI prints them with rich markup, which would eat '[trt]'.
TRT_INSTALL = "pip install tensorrt (10.x or 11.x; fvdeploy's trt extra) on a machine with an NVIDIA GPU"
REBUILD = "rebuild with `fvdeploy export --trt`"


def tensorrt_module():
    try:
        import tensorrt
    except ImportError:
        raise BackendError(f"backend tensorrt needs the tensorrt package: {TRT_INSTALL}") from None
    return tensorrt


@dataclass(frozen=True)
class TrtPlatform:
    """The TensorRT build and GPU an engine is for (recorded at export, compared at load)."""

    tensorrt_version: str
    gpu_name: str
    capability: str  # "9.0"

    def describe(self) -> str:
        return f"TensorRT {self.tensorrt_version} on {self.gpu_name} (compute capability {self.capability})"

    @classmethod
    def from_record(cls, tensorrt_record: dict) -> "TrtPlatform":
        gpu = tensorrt_record.get("gpu") or {}
        return cls(str(tensorrt_record.get("version")), str(gpu.get("name")), str(gpu.get("capability")))


def current_platform(version: str, device: torch.device) -> TrtPlatform:
    major, minor = torch.cuda.get_device_capability(device)
    return TrtPlatform(version, torch.cuda.get_device_name(device), f"{major}.{minor}")


def verify_platform(recorded: TrtPlatform, current: TrtPlatform, where: Path | str) -> None:
    """Refuse engines built for another TensorRT version or GPU (checked before deserializing)."""
    if recorded != current:
        raise BackendError(
            f"{where}: the engines were built for {recorded.describe()}, this machine has "
            f"{current.describe()}; {REBUILD}"
        )


def choose_precision(engines: dict, requested: str | None, where: Path) -> str:
    if not engines:
        raise BackendError(
            f"{where} has no TensorRT engines; build them with `fvdeploy export MODEL --trt` "
            "on the machine that will run them"
        )
    if requested is None:  # the runtime's CUDA default first, else what was built
        if "fp16" not in engines and len(engines) > 1:
            raise BackendError(f"{where} has TensorRT engines in {', '.join(sorted(engines))}; pass --precision")
        requested = "fp16" if "fp16" in engines else next(iter(engines))
    if requested not in engines:
        raise BackendError(
            f"{where} has no {requested} TensorRT engines (it has {', '.join(sorted(engines))}); "
            f"pass --precision {sorted(engines)[0]} or {REBUILD} --precision {requested}"
        )
    return requested


_LOGGER = None


def _logger(trt):
    """One logger per process: TensorRT warns when runtimes are handed different ones."""
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def _torch_dtype(trt, dtype) -> torch.dtype:
    table = {
        "FLOAT": torch.float32,
        "HALF": torch.float16,
        "BF16": torch.bfloat16,
        "INT32": torch.int32,
        "INT64": torch.int64,
        "UINT8": torch.uint8,
        "BOOL": torch.bool,
        "INT8": torch.int8,
    }
    for name, value in table.items():
        if hasattr(trt.DataType, name) and dtype == getattr(trt.DataType, name):
            return value
    raise BackendError(f"engine tensor type {dtype} is not supported by the fvdeploy runner")


class TrtEngine:
    """One deserialized engine with one optimisation profile; ``run`` takes and returns CUDA tensors."""

    def __init__(self, trt, path: Path, device: torch.device) -> None:
        self.path = path
        self.device = device
        with torch.cuda.device(device):
            runtime = trt.Runtime(_logger(trt))
            try:
                data = path.read_bytes()
            except OSError as e:
                raise BackendError(f"{path}: cannot read ({e.strerror or e})") from None
            self.engine = runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                raise BackendError(f"{path}: TensorRT could not deserialize the engine; {REBUILD}")
            self.context = self.engine.create_execution_context()
        self.runtime = runtime  # the runtime must outlive the engine
        self.inputs: dict[str, tuple[torch.dtype, tuple, tuple]] = {}  # name -> dtype, min shape, max shape
        self.outputs: dict[str, torch.dtype] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(name))
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
                self.inputs[name] = (dtype, tuple(lo), tuple(hi))
            else:
                self.outputs[name] = dtype

    def max_dim(self, name: str, axis: int) -> int:
        return self.inputs[name][2][axis]

    def run(self, **feeds: Tensor) -> dict[str, Tensor]:
        keep = []
        for name, (dtype, lo, hi) in self.inputs.items():
            x = feeds[name].to(device=self.device, dtype=dtype).contiguous()
            if any(d < a or d > b for d, a, b in zip(x.shape, lo, hi)):
                raise BackendError(
                    f"{self.path.name}: input {name} shape {tuple(x.shape)} is outside the engine's profile {lo}..{hi}"
                )
            if not self.context.set_input_shape(name, tuple(x.shape)):
                raise BackendError(f"{self.path.name}: TensorRT refused input {name} of shape {tuple(x.shape)}")
            self.context.set_tensor_address(name, x.data_ptr())
            keep.append(x)
        out = {}
        for name, dtype in self.outputs.items():
            shape = tuple(self.context.get_tensor_shape(name))
            buf = torch.empty(max(1, int(torch.Size(shape).numel())), dtype=dtype, device=self.device)
            self.context.set_tensor_address(name, buf.data_ptr())  # never a null address, even when empty
            out[name] = buf[: torch.Size(shape).numel()].view(shape)
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BackendError(f"{self.path.name}: TensorRT execution failed (see the TensorRT log above)")
        return out


class TrtBackend:
    name = "tensorrt"
    choice = ""  # set by create_backend("auto", ...): why auto opened it

    def __init__(
        self,
        bundle,
        config: ModelConfig,
        device: torch.device,
        precision: str | None = None,
        features_precision: str | None = None,
    ) -> None:
        """``features_precision`` (stem + layer1, whose signs the clustering reads) must be the one
        the engines were built with; the export records it per precision."""
        from ..export_record import check_config_matches

        trt = tensorrt_module()
        if device.type != "cuda":
            raise BackendError(f"backend tensorrt needs a CUDA device, got --device {device}")
        check_config_matches(bundle, config)
        engines = bundle.engines()
        self.precision = choose_precision(engines, precision, bundle.dir)
        verify_platform(
            TrtPlatform.from_record(bundle.record["tensorrt"]), current_platform(trt.__version__, device), bundle.dir
        )
        entry = engines[self.precision]
        self.features_precision = entry.get("features_precision", self.precision)
        if features_precision not in (None, self.precision, self.features_precision):
            raise BackendError(
                f"{bundle.dir}: the {self.precision} engines run stem + layer1 in {self.features_precision}, "
                f"not {features_precision}; {REBUILD}"
            )
        self.bundle, self.config, self.device = bundle, config, device
        self.provider = f"TensorRT {trt.__version__}"
        self.frontend = TrtEngine(trt, bundle.path(entry["frontend"]), device)
        self.backend = TrtEngine(trt, bundle.path(entry["backend"]), device)
        self.halo = bundle.halo
        self.network_halo = bundle.network_halo
        self.feature_shape = bundle.feature_shape
        self.front_max = self.frontend.max_dim("frames", 0)
        self.back_max = self.backend.max_dim("maps", 1)
        self.back_batch = self.backend.max_dim("maps", 0)
        self.back_halo = self.network_halo - self.halo  # shifted blocks in layer2..4

    @classmethod
    def open(
        cls,
        model_dir: str | Path,
        config: ModelConfig | None,
        device: torch.device,
        precision: str | None = None,
        features_precision: str | None = None,
    ) -> "TrtBackend":
        from ..export_record import open_bundle

        tensorrt_module()  # say what to install before anything else
        bundle = open_bundle(model_dir)
        return cls(bundle, config or bundle.config, device, precision, features_precision)

    def _features(self, frames: Tensor) -> Tensor:
        return self.frontend.run(frames=frames)["features"]

    def frame_features(self, frames: Tensor) -> Tensor:
        if frames.shape[0] <= self.front_max:
            return self._features(frames)
        step = self.front_max - 2 * self.halo
        return torch.cat(list(stream_with_halo(self._features, frames.split(step), self.halo)))

    def _logits(self, maps: Tensor) -> Tensor:
        return self.backend.run(maps=maps[None])["logits"][0].float()

    def clip_logits(self, maps: Tensor) -> Tensor:
        out = []
        for video in maps:  # the runtime sends one video at a time; more are run one by one
            if video.shape[0] <= self.back_max:
                out.append(self._logits(video))
            else:
                step = self.back_max - 2 * self.back_halo
                out.append(torch.cat(list(stream_with_halo(self._logits, video.split(step), self.back_halo))))
        return torch.stack(out)


class TrtWholeGraph:
    """``model.<precision>.engine``: uint8 frames ``[N, T, S, S, 3]`` + lengths -> the three outputs
    (cluster ids int32: the engine's clustering runs in int32 within its frame profile)."""

    def __init__(self, path: Path, device: torch.device) -> None:
        self.engine = TrtEngine(tensorrt_module(), path, device)
        self.max_frames = self.engine.max_dim("frames", 1)

    def __call__(self, frames: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.engine.run(frames=frames, lengths=lengths)
        return out["logits"].float(), out["cluster_logits"].float(), out["cluster_ids"]
