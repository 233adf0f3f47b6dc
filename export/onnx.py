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
from fvdeploy.models.inference import conv_bn_pairs, fold_batchnorm, has_batchnorm
from fvdeploy.models.tsm_resnet import TSMResNet

from .graphs import Backend, Frontend, WholeNetwork

DEFAULT_OPSET = 17
MIN_OPSET = 14  # ReduceSum with axes as an input (13) and Trilu-free graphs; 14 keeps Relu int-capable
MAX_OPSET = 20  # the legacy exporter's last opset in torch >= 2.9

ONNX_TYPE_NAMES = {
    1: "FP32",
    2: "UINT8",
    3: "INT8",
    6: "INT32",
    7: "INT64",
    9: "BOOL",
    10: "FP16",
    11: "DOUBLE",
    16: "BF16",
}


# Dimension names of the graphs' inputs and outputs. Dynamic ones are named (ONNX dim_param) so
# that tools show `frames` rather than a generated `Castcluster_logits_dim_1`; the static ones
# (crop, G, classes, the layer1 map) are written as numbers from the exported model.
DYNAMIC_DIMS = ("batch", "frames", "padded_frames", "frame_pairs", "clusters")
STATIC_DIMS = ("crop", "G", "classes", "C", "h", "w")


@dataclass(frozen=True)
class GraphIO:
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dims: dict[str, tuple]  # tensor name -> one entry per axis: a DYNAMIC_DIMS or STATIC_DIMS name, or an int

    @property
    def dynamic_axes(self) -> dict:
        return {name: {i: d for i, d in enumerate(dims) if d in DYNAMIC_DIMS} for name, dims in self.dims.items()}


WHOLE_IO = GraphIO(
    ("frames", "lengths"),
    ("logits", "cluster_logits", "cluster_ids"),
    {
        "frames": ("batch", "frames", "crop", "crop", 3),
        "lengths": ("batch",),
        "logits": ("batch", "classes"),
        "cluster_logits": ("batch", "G", "classes"),
        "cluster_ids": ("batch", "padded_frames"),
    },
)
FRONTEND_IO = GraphIO(
    ("frames",),
    ("features", "distances"),
    {"frames": ("frames", 3, "crop", "crop"), "features": ("frames", "C", "h", "w"), "distances": ("frame_pairs",)},
)
BACKEND_IO = GraphIO(
    ("maps",),
    ("logits",),
    {"maps": ("batch", "clusters", "C", "h", "w"), "logits": ("batch", "clusters", "classes")},
)


def static_dims(model: TSMResNet, feature_shape: tuple[int, int, int]) -> dict[str, int]:
    c, h, w = feature_shape
    cfg = model.config
    return {"crop": cfg.input.crop, "G": cfg.num_clusters, "classes": cfg.num_classes, "C": c, "h": h, "w": w}


def name_dimensions(path: Path, io: GraphIO, static: dict[str, int]) -> None:
    """Write ``io.dims`` into the inputs and outputs of the ONNX file at ``path`` (in place), and drop
    the exporter's intermediate shape annotations, whose dimensions carry generated names
    (runtimes infer those shapes themselves). The checks (:func:`check_file`) then verify by
    strict shape inference that the declared shapes are the graph's."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        spec = io.dims[value.name]
        if len(dims) != len(spec):
            raise ExportError(f"{path.name}: {value.name} has {len(dims)} dimensions, expected {len(spec)}")
        for dim, want in zip(dims, spec):
            if want in DYNAMIC_DIMS:
                dim.dim_param = want
            else:
                dim.dim_value = int(static.get(want, want))
    del model.graph.value_info[:]
    onnx.save(model, str(path))


def check_opset(opset: int) -> int:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(
            f"--opset {opset} is not supported; choose {MIN_OPSET}..{MAX_OPSET} "
            f"(the exporter's range; TensorRT 10/11 parse opsets 9..24)"
        )
    return opset


def _export(module: torch.nn.Module, args: tuple, path: Path, io: GraphIO, opset: int, static: dict[str, int]) -> Path:
    with warnings.catch_warnings():
        # Known and harmless: the legacy exporter announces its deprecation, and the core op's
        # argument check (T >= G) reads a shape that the padding inside the graph guarantees.
        warnings.filterwarnings(
            "ignore", message=r"You are using the legacy TorchScript-based ONNX export", category=DeprecationWarning
        )
        warnings.filterwarnings("ignore", message=r"The feature will be removed", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"fvdeploy\.ops\.clustering")
        try:
            with torch.inference_mode(False), torch.no_grad():
                torch.onnx.export(
                    module.eval(),
                    args,
                    str(path),
                    dynamo=False,
                    opset_version=opset,
                    do_constant_folding=True,
                    input_names=list(io.inputs),
                    output_names=list(io.outputs),
                    dynamic_axes=io.dynamic_axes,
                )
        except (RuntimeError, ValueError, TypeError) as e:
            raise ExportError(f"torch.onnx.export failed for {path.name}: {_first_line(e)}") from None
    name_dimensions(path, io, static)
    return path


def inference_copy(model: TSMResNet) -> TSMResNet:
    """What is exported: the model with its BatchNorms folded into the convolutions (a copy; a
    model already folded is used as it is). The exported graphs have no BatchNormalization."""
    return fold_batchnorm(model) if has_batchnorm(model) else model.eval()


def _feature_shape(model: TSMResNet) -> tuple[int, int, int]:
    param = next(model.parameters())
    s = model.config.input.crop
    with torch.no_grad():
        return tuple(
            int(v)
            for v in model.forward_frames(torch.zeros(1, 1, 3, s, s, device=param.device, dtype=param.dtype)).shape[2:]
        )


def example_frames(
    config, n: int = 2, t: int | None = None, seed: int = 0, device="cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 frames ``[n, t, S, S, 3]`` and lengths (the second video shorter than G)."""
    g = config.num_clusters
    t = t or 2 * g + 3
    s = config.input.crop
    gen = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (n, t, s, s, 3), dtype=torch.uint8, generator=gen)
    lengths = torch.tensor([t] + [max(1, min(t, g - 1))] * (n - 1))
    return frames.to(device), lengths.to(device)


def export_whole(
    model: TSMResNet,
    path: Path,
    opset: int,
    int_dtype: torch.dtype = torch.int64,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Path:
    """``model.onnx``: uint8 frames + lengths (int_dtype) -> logits, cluster logits, cluster ids."""
    model = inference_copy(model)
    net = WholeNetwork(model, int_dtype=int_dtype, dtype=dtype).to(device)
    frames, lengths = example_frames(model.config, device=device)
    return _export(net, (frames, lengths.to(int_dtype)), path, WHOLE_IO, opset, static_dims(model, (0, 0, 0)))


def export_frontend(
    model: TSMResNet, path: Path, opset: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> Path:
    model = inference_copy(model).to(device)
    s = model.config.input.crop
    frames = torch.randn(12, 3, s, s, generator=torch.Generator().manual_seed(1)).to(device=device, dtype=dtype)
    return _export(Frontend(model), (frames,), path, FRONTEND_IO, opset, static_dims(model, _feature_shape(model)))


def export_backend(
    model: TSMResNet,
    path: Path,
    opset: int,
    feature_shape: tuple[int, int, int],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Path:
    model = inference_copy(model)
    g = max(2, model.config.num_clusters)
    maps = torch.randn(1, g, *feature_shape, generator=torch.Generator().manual_seed(2)).relu()
    return _export(
        Backend(model).to(device),
        (maps.to(device=device, dtype=dtype),),
        path,
        BACKEND_IO,
        opset,
        static_dims(model, feature_shape),
    )


# -- one copy of the weights ------------------------------------------------------------------------
WEIGHTS_FILE = "weights.bin"
MIN_EXTERNAL_BYTES = 1024  # smaller tensors (shapes, scalars, mean/std) stay inside their graph
ALIGN = 64  # every tensor starts on a cache line


def fp16_sources(model: TSMResNet) -> dict[bytes, tuple]:
    """Where the folded fp32 weights can be stored at half the size without losing a bit.

    A checkpoint saved in fp16 (the bundled model) holds weights ``w`` that fp32 represents
    exactly; folding multiplies them by the BatchNorm's per-channel ``s = gamma / sqrt(var + eps)``,
    and the product is no longer an fp16 number. Stored as ``w`` (fp16) and ``s`` (fp32) with
    ``Cast`` + ``Mul`` in the graph, the runtime's constant folding at load time rebuilds the folded
    tensor bit for bit: ``Cast`` to fp32 is exact and one IEEE fp32 multiply of the same operands
    gives the same result wherever it runs. Returns sha256(folded fp32 bytes) -> (``w`` fp16
    ndarray, ``s`` fp32 ndarray shaped to broadcast); only for weights where ``w`` is exactly fp16
    and the product reproduces :func:`fold_batchnorm`'s bytes (checked here)."""
    import hashlib

    folded = fold_batchnorm(model)
    out: dict[bytes, tuple] = {}
    for conv_name, bn_name in conv_bn_pairs(model):
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        w = conv.weight.detach().float().cpu()
        if not torch.equal(w.half().float(), w):
            continue
        scale = (bn.weight.detach().float() * torch.rsqrt(bn.running_var.float() + bn.eps)).cpu()
        scale = scale.reshape(-1, *[1] * (w.dim() - 1))
        target = folded.get_submodule(conv_name).weight.detach().float().cpu()
        if not torch.equal(w * scale, target):  # fusion done differently: keep the fp32 tensor
            continue
        out[hashlib.sha256(target.numpy().tobytes()).digest()] = (w.half().numpy(), scale.numpy())
    return out


def share_weights(paths: list[Path], data_name: str = WEIGHTS_FILE, fp16: dict[bytes, tuple] | None = None) -> Path:
    """Move the initializers of the ONNX files ``paths`` (one folder) into one external-data file
    ``data_name`` beside them, each distinct tensor stored once: the whole graph and the split pair
    hold the same folded weights, so the bundle carries them once instead of twice.

    Lossless half-size storage where the weights allow it: an fp32 tensor whose every value is an
    fp16 number is stored in fp16 behind a ``Cast``; a folded weight listed in ``fp16``
    (:func:`fp16_sources`) is stored as its fp16 source weights and fp32 scale behind ``Cast`` +
    ``Mul``. Each is checked to give back the original fp32 bytes before it is rewritten.

    Standard ONNX external data (``location``/``offset``/``length``): ONNX Runtime, OpenVINO,
    TensorRT's parser and ``onnx.load`` read it given the graph's path. Tensors are matched by
    content (dtype, shape, bytes), not by name, since each graph names its initializers itself."""
    import hashlib

    import numpy as np
    import onnx
    from onnx import helper, numpy_helper
    from onnx.external_data_helper import set_external_data

    fp16 = fp16 or {}
    folder = paths[0].parent
    data_path = folder / data_name
    offsets: dict[tuple, tuple[int, int]] = {}

    def externalize(tensor, data) -> None:
        raw = tensor.raw_data if tensor.HasField("raw_data") else numpy_helper.to_array(tensor).tobytes()
        if len(raw) < MIN_EXTERNAL_BYTES:
            return
        key = (tensor.data_type, tuple(tensor.dims), hashlib.sha256(raw).digest())
        if key not in offsets:
            offset = -(-data.tell() // ALIGN) * ALIGN
            data.seek(offset)
            data.write(raw)
            offsets[key] = offset, len(raw)
        offset, length = offsets[key]
        for field in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
            tensor.ClearField(field)
        tensor.raw_data = raw  # set_external_data insists on raw_data, then it goes
        set_external_data(tensor, location=data_name, offset=offset, length=length)
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL

    with open(data_path, "wb") as data:
        for path in paths:
            model = onnx.load(str(path))
            graph = model.graph
            kept, nodes = [], []
            for tensor in graph.initializer:
                a = numpy_helper.to_array(tensor)
                if a.dtype != np.float32 or a.nbytes < MIN_EXTERNAL_BYTES:
                    kept.append(tensor)
                    continue
                name = tensor.name
                half = fp16.get(hashlib.sha256(a.tobytes()).digest())
                if half is not None and (half[0].astype(np.float32) * half[1]).tobytes() == a.tobytes():
                    kept += [
                        numpy_helper.from_array(half[0], f"{name}.fp16"),
                        numpy_helper.from_array(half[1], f"{name}.scale"),
                    ]
                    nodes += [
                        helper.make_node(
                            "Cast", [f"{name}.fp16"], [f"{name}.fp32"], f"{name}.cast", to=onnx.TensorProto.FLOAT
                        ),
                        helper.make_node("Mul", [f"{name}.fp32", f"{name}.scale"], [name], f"{name}.fold"),
                    ]
                elif a.astype(np.float16).astype(np.float32).tobytes() == a.tobytes():
                    kept.append(numpy_helper.from_array(a.astype(np.float16), f"{name}.fp16"))
                    nodes.append(
                        helper.make_node("Cast", [f"{name}.fp16"], [name], f"{name}.cast", to=onnx.TensorProto.FLOAT)
                    )
                else:
                    kept.append(tensor)
            del graph.initializer[:]
            graph.initializer.extend(kept)
            for tensor in graph.initializer:
                externalize(tensor, data)
            for node in reversed(nodes):  # constants first: the graph stays topologically sorted
                graph.node.insert(0, node)
            onnx.save(model, str(path))
    return data_path


def inline_bytes(path: Path) -> int:
    """Bytes of tensor data stored inside the ONNX file itself (initializers and Constant nodes)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    total = sum(len(t.raw_data) for t in model.graph.initializer)
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                total += len(attr.t.raw_data)
    return total


# -- checks ---------------------------------------------------------------------------------------
def check_file(path: Path, io: GraphIO) -> dict:
    """``onnx.checker`` (full check) and strict shape inference; the declared inputs and outputs."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
        inferred = onnx.shape_inference.infer_shapes(
            onnx.load(str(path)), check_type=True, strict_mode=True, data_prop=True
        )
    except (
        onnx.checker.ValidationError,
        onnx.shape_inference.InferenceError,
        onnx.onnx_cpp2py_export.checker.ValidationError,
    ) as e:
        raise ExportError(f"{path.name} failed the ONNX check: {_first_line(e)}") from None
    except Exception as e:  # onnx raises plain RuntimeError/DecodeError for unreadable protobufs
        raise ExportError(f"{path.name} is not a readable ONNX model: {_first_line(e)}") from None
    names_in = tuple(i.name for i in inferred.graph.input)
    names_out = tuple(o.name for o in inferred.graph.output)
    if names_in != io.inputs or names_out != io.outputs:
        raise ExportError(
            f"{path.name}: expected inputs {io.inputs} and outputs {io.outputs}, got {names_in} and {names_out}"
        )
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
