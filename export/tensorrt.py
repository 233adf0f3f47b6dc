"""ONNX -> TensorRT engine with the official ``tensorrt`` Python API (10.x and 11.x).

The steps of NVIDIA's ``onnx_resnet50.py`` sample in one function: logger, builder, a strongly
typed network (TensorRT 11 has no other kind and dropped the FP16/BF16 builder flags; on 10.x the
same graphs build the same way), ONNX parser (every error reported, then fatal), builder config
(workspace, TF32 off for fp32 engines, one optimisation profile, a timing cache), serialize.
Precision therefore lives in the ONNX: fp16/bf16 engines are built from graphs traced in that
precision (``export.onnx``), whose clustering and cluster means still read fp32.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from fvdeploy.errors import ExportError

SUPPORTED_MAJORS = (10, 11)
# No square brackets in messages: the CLI prints them with rich markup, which would eat '[trt]'.
TRT_INSTALL = "pip install tensorrt (10.x or 11.x; fvdeploy's trt extra) on a machine with an NVIDIA GPU"

log = logging.getLogger(__name__)


def require_tensorrt():
    """The tensorrt module and a CUDA device, or a one-line ExportError saying what to install."""
    try:
        import tensorrt
    except ImportError:
        raise ExportError(f"--trt needs TensorRT, which is not installed: {TRT_INSTALL}; nothing was written") from None
    major = int(str(tensorrt.__version__).split(".", 1)[0])
    if major not in SUPPORTED_MAJORS:
        raise ExportError(f"--trt supports TensorRT 10.x and 11.x, this is {tensorrt.__version__}; nothing was written")
    if not torch.cuda.is_available():
        raise ExportError(
            "--trt needs an NVIDIA GPU with CUDA (torch.cuda.is_available() is False); "
            "build engines on the machine that will run them; nothing was written"
        )
    return tensorrt


def platform_record(trt, device: torch.device) -> dict:
    major, minor = torch.cuda.get_device_capability(device)
    return {
        "version": trt.__version__,
        "gpu": {"name": torch.cuda.get_device_name(device), "capability": f"{major}.{minor}"},
    }


def build_engine(
    trt,
    onnx_path: Path,
    engine_path: Path,
    profile: dict[str, tuple[tuple, tuple, tuple]],
    precision: str,
    timing_cache: bytes | None = None,
    workspace_bytes: int = 4 << 30,
) -> bytes:
    """Build and write one engine; returns the updated timing cache."""
    from fvdeploy.backends.trt_backend import _logger

    logger = _logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None:
        flags |= 1 << int(strongly_typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ExportError(
            f"TensorRT could not parse {onnx_path.name}: {errors[0] if errors else 'unknown error'}{more}"
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 engines are compared with fp32 references
    opt = builder.create_optimization_profile()
    for name, (lo, mid, hi) in profile.items():
        opt.set_shape(name, lo, mid, hi)
    config.add_optimization_profile(opt)
    cache = config.create_timing_cache(timing_cache or b"")
    config.set_timing_cache(cache, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT could not build an engine from {onnx_path.name} (see the TensorRT log above)")
    engine_path.write_bytes(memoryview(serialized))
    return bytes(memoryview(config.get_timing_cache().serialize()))


def engine_profiles(
    feature_shape: tuple[int, int, int],
    crop: int,
    clusters: int,
    segments: int,
    halo: int,
    network_halo: int,
    frames: tuple[int, int, int],
    max_batch: int,
) -> dict[str, dict]:
    """Optimisation profiles of the three engines. The whole graph's T range is the user's
    ``--min/--opt/--max-frames``; the split pair's ranges cover the runtime's chunks (at most 64
    frames plus halos), and the TensorRT backend splits anything larger with halos."""
    lo, mid, hi = frames
    s, (c, h, w) = crop, feature_shape
    front_max = max(128, 64 + 2 * halo + 1)
    back_max = max(128, clusters, segments, 64 + 2 * network_halo + 1)
    return {
        "model": {
            "frames": ((1, lo, s, s, 3), (1, mid, s, s, 3), (max_batch, hi, s, s, 3)),
            "lengths": ((1,), (1,), (max_batch,)),
        },
        "frontend": {"frames": ((1, 3, s, s), (64, 3, s, s), (front_max, 3, s, s))},
        "backend": {"maps": ((1, 1, c, h, w), (1, max(1, clusters), c, h, w), (1, back_max, c, h, w))},
    }


def _parser_error(error) -> str:
    """One line from an IParserError: node name and operator where this TensorRT version gives them."""
    desc = error.desc() if hasattr(error, "desc") else str(error)
    where = []
    for attr in ("node_name", "node_operator"):
        value = getattr(error, attr, None)
        value = value() if callable(value) else value
        if value:
            where.append(str(value))
    text = (f"node {' '.join(where)}: " if where else "") + str(desc)
    return " ".join(text.split())
