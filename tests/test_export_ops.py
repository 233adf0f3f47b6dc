"""Every node of the graphs TensorRT builds from is in TensorRT's supported ONNX operator list, with
a supported input type and within the listed restrictions.

TensorRT cannot be installed here, so this is the check that runs everywhere. The list is a pinned
copy of onnx/onnx-tensorrt docs/operators.md for TensorRT 10.15 (tests/assets, source named in its
header); the TensorRT tests (test_export_trt.py) build the engines where TensorRT exists.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from fvdeploy.export.onnx import export_backend, export_frontend, export_whole, op_signatures
from fvdeploy.models import create_model

onnx = pytest.importorskip("onnx")

TABLE = Path(__file__).parent / "assets" / "trt_onnx_operators_10.15.md"
DATA_DEPENDENT = {"NonZero", "Unique", "Compress", "Loop", "If", "Scan"}
CONSTANT_INPUT = {  # op -> index of the input the list says must be a build-time constant
    "TopK": 1,
    "ReduceSum": 1,
    "ReduceMean": 1,
    "ReduceMax": 1,
    "ReduceMin": 1,
    "ReduceProd": 1,
    "Slice": 3,
    "Squeeze": 1,
    "Unsqueeze": 1,
    "CumSum": 1,
}


def trt_table() -> tuple[str, dict[str, tuple[bool, set[str], str]]]:
    text = TABLE.read_text()
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^\|\s*([A-Za-z]+)\s*\|\s*([YN])\s*\|([^|]*)\|?(.*)$", line)
        if m and m.group(1) != "Operator":
            rows[m.group(1)] = (m.group(2) == "Y", {t.strip() for t in m.group(3).split(",") if t.strip()}, m.group(4))
    return text, rows


def test_pinned_list_names_its_source_and_parses():
    text, rows = trt_table()
    assert "onnx/onnx-tensorrt" in text and "docs/operators.md" in text and "TensorRT 10.15" in text
    assert len(rows) > 150
    assert rows["Conv"][0] and "FP32" in rows["Conv"][1]
    assert not rows["Unique"][0]
    assert rows["CumSum"][1] == {"FP32", "FP16", "BF16"}  # why the graphs scan instead of CumSum on ints


def violations(path: Path) -> list[str]:
    _, rows = trt_table()
    model = onnx.load(str(path))
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    bad = [] if 9 <= opset <= 24 else [f"opset {opset} outside TensorRT's 9..24"]
    for op, name, dtype, node in op_signatures(model):
        supported, types, _ = rows.get(op, (False, set(), ""))
        if not supported:
            bad.append(f"{op} ({name}) is not supported")
        elif dtype not in types:
            bad.append(f"{op} ({name}) on {dtype}; supported: {sorted(types)}")
        if op in DATA_DEPENDENT:
            bad.append(f"{op} ({name}) has a data-dependent output shape")
        index = CONSTANT_INPUT.get(op)
        if index is not None and len(node.input) > index and node.input[index] and node.input[index] not in constants:
            bad.append(f"{op} ({name}): input {index} must be a build-time constant")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if op == "TopK":
            k = next(
                onnx.numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node if n.output[0] == node.input[1]
            )
            if int(k.reshape(-1)[0]) >= 3840 or attrs.get("sorted", 1) != 1:
                bad.append(f"TopK ({name}): K must be < 3840 and sorted=1")
        if op == "MaxPool" and len(node.output) > 1:
            bad.append(f"MaxPool ({name}): Indices output")
    return bad


GRAPHS = {
    # what TensorRT builds from (int32 whole graph, engine precision), and the ONNX Runtime graph
    "model.onnx (int64, fp32)": lambda m, p: export_whole(m, p, 17, torch.int64),
    "TensorRT whole graph (int32, fp32)": lambda m, p: export_whole(m, p, 17, torch.int32),
    "TensorRT whole graph (int32, fp16)": lambda m, p: export_whole(m.half(), p, 17, torch.int32, torch.float16),
    "frontend.onnx (fp32)": lambda m, p: export_frontend(m, p, 17),
    "frontend (fp16)": lambda m, p: export_frontend(m.half(), p, 17, torch.float16),
    "backend.onnx (fp32)": lambda m, p: export_backend(m, p, 17, (16, 8, 8)),
    "backend (bf16)": lambda m, p: export_backend(m.bfloat16(), p, 17, (16, 8, 8), torch.bfloat16),
}


@pytest.mark.parametrize("method", ["cumulative", "slope", "uniform"])
def test_every_op_is_in_the_tensorrt_list(tmp_path, method):
    model = create_model(tiny_config(num_clusters=8, method=method)).eval()
    seen_ops = set()
    for i, (name, export) in enumerate(GRAPHS.items()):
        path = export(model.float(), tmp_path / f"g{i}.onnx")
        assert violations(path) == [], name
        seen_ops |= {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Conv", "MatMul", "Xor"} <= seen_ops  # the graphs checked are the real ones
    assert ("TopK" in seen_ops) == (method == "slope")
    assert "CumSum" not in seen_ops and "Clip" not in seen_ops


def test_the_check_catches_what_tensorrt_refuses(tmp_path):
    """The check fails where TensorRT would: an integer CumSum, a Transpose of the uint8 input."""

    class Bad(torch.nn.Module):
        def forward(self, x, d):
            return x.permute(0, 2, 1).float(), torch.cumsum(d, 1)

    path = tmp_path / "bad.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter announcing its deprecation
        torch.onnx.export(
            Bad(),
            (torch.zeros(1, 2, 3, dtype=torch.uint8), torch.zeros(1, 4, dtype=torch.int64)),
            str(path),
            dynamo=False,
            opset_version=17,
        )
    found = violations(path)
    assert any(v.startswith("Transpose") and "UINT8" in v for v in found), found
    assert any(v.startswith("CumSum") and "INT64" in v for v in found), found
