"""The closed sets of values that several commands accept (typer shows them in --help and rejects
anything else with a one-line usage error)."""

from __future__ import annotations

from enum import Enum


class BackendName(str, Enum):
    torch = "torch"
    onnxruntime = "onnxruntime"
    tensorrt = "tensorrt"


class Mode(str, Enum):
    full = "full"
    tsm = "tsm"


class Method(str, Enum):
    cumulative = "cumulative"
    slope = "slope"
    uniform = "uniform"


class Decoder(str, Enum):
    opencv = "opencv"
    nvdec = "nvdec"
    auto = "auto"


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"
