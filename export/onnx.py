"""torch -> ONNX for the three graphs of an export bundle, and the checks every file passes.

The legacy TorchScript exporter (``dynamo=False``) is used: it runs on torch >= 2.11 without
onnxscript (absent on the lent GPU machines), and it traces the static-G op with T dynamic (the
parity tests run the graphs at T = 1 .. 2000 after tracing at one T).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from fvdeploy.errors import ExportError
from fvdeploy.models.tsm_resnet import TSMResNet

from .graphs import Backend, Frontend, WholeNetwork

DEFAULT_OPSET = 17
MIN_OPSET = 14  # ReduceSum with axes as an input (13) and Trilu-free graphs; 14 keeps Relu int-capable
MAX_OPSET = 20  # the legacy exporter's last opset in torch >= 2.9

ONNX_TYPE_NAMES = {1: "FP32", 2: "UINT8", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 10: "FP16", 11: "DOUBLE", 16: "BF16"}


@dataclass(frozen=True)
class GraphIO:
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic_axes: dict


WHOLE_IO = GraphIO(
    ("frames", "lengths"), ("logits", "cluster_logits", "cluster_ids"),
    {"frames": {0: "N", 1: "T"}, "lengths": {0: "N"}, "logits": {0: "N"}, "cluster_logits": {0: "N"},
     "cluster_ids": {0: "N", 1: "T_padded"}},
)
FRONTEND_IO = GraphIO(
    ("frames",), ("features", "distances"),
    {"frames": {0: "K"}, "features": {0: "K"}, "distances": {0: "K_minus_1"}},
)
BACKEND_IO = GraphIO(("maps",), ("logits",), {"maps": {0: "N", 1: "M"}, "logits": {0: "N", 1: "M"}})


def check_opset(opset: int) -> int:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"--opset {opset} is not supported; choose {MIN_OPSET}..{MAX_OPSET} "
                          f"(the exporter's range; TensorRT 10/11 parse opsets 9..24)")
    return opset


def _export(module: torch.nn.Module, args: tuple, path: Path, io: GraphIO, opset: int) -> Path:
    with warnings.catch_warnings():
        # Known and harmless: the legacy exporter announces its deprecation, and the core op's
        # argument check (T >= G) reads a shape that the padding inside the graph guarantees.
        warnings.filterwarnings("ignore", message=r"You are using the legacy TorchScript-based ONNX export", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"The feature will be removed", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"fvdeploy\.ops\.clustering")
        try:
            with torch.inference_mode(False), torch.no_grad():
                torch.onnx.export(
                    module.eval(), args, str(path), dynamo=False, opset_version=opset, do_constant_folding=True,
                    input_names=list(io.inputs), output_names=list(io.outputs), dynamic_axes=io.dynamic_axes,
                )
        except (RuntimeError, ValueError, TypeError) as e:
            raise ExportError(f"torch.onnx.export failed for {path.name}: {_first_line(e)}") from None
    return path


def example_frames(config, n: int = 2, t: int | None = None, seed: int = 0, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 frames ``[n, t, S, S, 3]`` and lengths (the second video shorter than G)."""
    g = config.num_clusters
    t = t or 2 * g + 3
    s = config.input.crop
    gen = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (n, t, s, s, 3), dtype=torch.uint8, generator=gen)
    lengths = torch.tensor([t] + [max(1, min(t, g - 1))] * (n - 1))
    return frames.to(device), lengths.to(device)


def export_whole(model: TSMResNet, path: Path, opset: int, int_dtype: torch.dtype = torch.int64,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> Path:
    """``model.onnx``: uint8 frames + lengths (int_dtype) -> logits, cluster logits, cluster ids."""
    net = WholeNetwork(model, int_dtype=int_dtype, dtype=dtype).to(device)
    frames, lengths = example_frames(model.config, device=device)
    return _export(net, (frames, lengths.to(int_dtype)), path, WHOLE_IO, opset)


def export_frontend(model: TSMResNet, path: Path, opset: int, dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu") -> Path:
    s = model.config.input.crop
    frames = torch.randn(12, 3, s, s, generator=torch.Generator().manual_seed(1)).to(device=device, dtype=dtype)
    return _export(Frontend(model).to(device), (frames,), path, FRONTEND_IO, opset)


def export_backend(model: TSMResNet, path: Path, opset: int, feature_shape: tuple[int, int, int],
                   dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> Path:
    g = max(2, model.config.num_clusters)
    maps = torch.randn(1, g, *feature_shape, generator=torch.Generator().manual_seed(2)).relu()
    return _export(Backend(model).to(device), (maps.to(device=device, dtype=dtype),), path, BACKEND_IO, opset)


# -- checks ---------------------------------------------------------------------------------------
def check_file(path: Path, io: GraphIO) -> dict:
    """``onnx.checker`` (full check) and strict shape inference; the declared inputs and outputs."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
        inferred = onnx.shape_inference.infer_shapes(onnx.load(str(path)), check_type=True, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, onnx.onnx_cpp2py_export.checker.ValidationError) as e:
        raise ExportError(f"{path.name} failed the ONNX check: {_first_line(e)}") from None
    except Exception as e:  # onnx raises plain RuntimeError/DecodeError for unreadable protobufs
        raise ExportError(f"{path.name} is not a readable ONNX model: {_first_line(e)}") from None
    names_in = tuple(i.name for i in inferred.graph.input)
    names_out = tuple(o.name for o in inferred.graph.output)
    if names_in != io.inputs or names_out != io.outputs:
        raise ExportError(f"{path.name}: expected inputs {io.inputs} and outputs {io.outputs}, got {names_in} and {names_out}")
    return {
        "opset": max(op.version for op in inferred.opset_import if op.domain in ("", "ai.onnx")),
        "nodes": len(inferred.graph.node),
        "ops": sorted({n.op_type for n in inferred.graph.node}),
        "inputs": {i.name: _describe(i) for i in inferred.graph.input},
        "outputs": {o.name: _describe(o) for o in inferred.graph.output},
    }


def _describe(value) -> dict:
    t = value.type.tensor_type
    dims = [d.dim_param or d.dim_value for d in t.shape.dim]
    return {"dtype": ONNX_TYPE_NAMES.get(t.elem_type, str(t.elem_type)), "shape": dims}


def op_signatures(path_or_model) -> Iterator[tuple[str, str, str, object]]:
    """Every node as ``(op_type, node name, data type of its main input, node)``, types from strict
    shape inference. The main input is input 0, except Where (input 1); Constant and
    ConstantOfShape report their output type."""
    import onnx

    model = onnx.load(str(path_or_model)) if isinstance(path_or_model, (str, Path)) else path_or_model
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    types: dict[str, int] = {}
    for v in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        types[v.name] = v.type.tensor_type.elem_type
    for init in model.graph.initializer:
        types[init.name] = init.data_type
    for node in model.graph.node:
        if node.op_type in ("Constant", "ConstantOfShape"):
            name = node.output[0]
        elif node.op_type == "Where":
            name = node.input[1]
        else:
            name = node.input[0] if node.input else node.output[0]
        yield node.op_type, node.name, ONNX_TYPE_NAMES.get(types.get(name, 0), "UNKNOWN"), node


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = re.sub(r"\s+", " ", line)
    return (line[:300] + "...") if len(line) > 300 else (line or type(e).__name__)
