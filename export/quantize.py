"""int8 post-training quantization of an export bundle's split pair with NNCF (OpenVINO's Neural
Network Compression Framework), calibrated on a folder of the user's videos.

``frontend.int8.onnx`` and ``backend.int8.onnx`` are NNCF's quantized ONNX graphs (QuantizeLinear /
DequantizeLinear around every convolution and the classifier: int8 weights per output channel,
int8 activations per tensor, NNCF's default "performance" preset and fast bias correction), made
from the same folded fp32 graphs as ``frontend.onnx``/``backend.onnx``. OpenVINO and ONNX Runtime
both run them with int8 kernels (``--precision int8``). The calibration inputs are what the runtime
feeds each graph: normalised frames in chunks for the frontend, and for the backend the G cluster
means of each calibration video as the fp32 model computes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fvdeploy.errors import ExportError
from fvdeploy.models.tsm_resnet import TSMResNet, pad_frames

from . import onnx as onnx_export

FRONTEND_INT8 = "frontend.int8.onnx"
BACKEND_INT8 = "backend.int8.onnx"
CHUNK = 16  # frames per frontend calibration input (the runtime's chunks are up to 64 + halo)


def require_nncf():
    import logging

    # nncf imports torch.utils.cpp_extension, which logs a CUDA_HOME warning on CPU-only machines
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        import nncf
    except ImportError:
        raise ExportError(
            "--int8 needs the nncf package: pip install nncf (fvdeploy's int8 extra); nothing was written"
        ) from None
    return nncf


@dataclass
class Calibration:
    """Inputs of the two graphs for NNCF's statistics, and where they came from."""

    frames: list[np.ndarray] = field(default_factory=list)  # frontend inputs [k, 3, S, S] float32
    maps: list[np.ndarray] = field(default_factory=list)  # backend inputs [1, G, C, h, w] float32
    videos: list[str] = field(default_factory=list)
    total_frames: int = 0


def calibration_data(folder: Path, model: TSMResNet, max_videos: int, frames_per_video: int) -> Calibration:
    """Read up to ``max_videos`` videos of ``folder`` (sorted, recursive), the first
    ``frames_per_video`` frames of each, resized and cropped as the runtime does."""
    from fvdeploy.io.transforms import normalize
    from fvdeploy.io.video import find_videos

    from .parity import uint8_crops

    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"--calibrate {folder}: not a folder of videos")
    paths = find_videos(folder)[:max_videos]
    if not paths:
        raise ExportError(f"--calibrate {folder}: no video files in it")
    cfg = model.config
    folded = onnx_export.inference_copy(model)
    folded.fast_inference = False  # the stages are called directly below
    out = Calibration()
    for path in paths:
        try:
            crops = uint8_crops(path, cfg.input)[:frames_per_video]
        except Exception as e:  # one bad file is named, not a traceback
            raise ExportError(f"--calibrate: cannot read {path}: {e}") from None
        x = normalize(crops.permute(0, 3, 1, 2).to(torch.float32), cfg.input)
        out.frames += [c.numpy() for c in x.split(CHUNK)]
        with torch.inference_mode():
            means, _ = folded.cluster(folded.forward_frames(pad_frames(x[None], cfg.num_clusters)))
        out.maps.append(means.numpy())
        out.videos.append(str(path))
        out.total_frames += int(x.shape[0])
    return out


def quantize_graph(source: Path, target: Path, items: list[np.ndarray], input_name: str) -> Path:
    """NNCF's post-training quantization of the ONNX file ``source`` -> ``target`` (weights inside)."""
    import onnx

    nncf = require_nncf()
    model = onnx.load(str(source))
    quantized = nncf.quantize(model, nncf.Dataset(items, lambda x: {input_name: x}), subset_size=len(items))
    onnx.save(quantized, str(target))
    return target


def export_int8(model: TSMResNet, export_dir: Path, workdir: Path, calibration: Calibration, opset: int) -> list[Path]:
    """Quantize the split pair of ``model`` into ``export_dir`` (plain fp32 graphs are exported to
    ``workdir`` for NNCF first: the bundle's own share their weights through Cast/Mul subgraphs,
    which NNCF would not see as weights)."""
    src = workdir / "int8-sources"
    src.mkdir(exist_ok=True)
    folded = onnx_export.inference_copy(model)
    frontend = onnx_export.export_frontend(folded, src / "frontend.onnx", opset)
    shape = tuple(int(v) for v in calibration.maps[0].shape[2:])
    backend = onnx_export.export_backend(folded, src / "backend.onnx", opset, shape)  # type: ignore[arg-type]
    return [
        quantize_graph(frontend, export_dir / FRONTEND_INT8, calibration.frames, "frames"),
        quantize_graph(backend, export_dir / BACKEND_INT8, calibration.maps, "maps"),
    ]
