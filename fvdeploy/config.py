"""Typed configuration saved beside the weights as ``config.json`` (see docs/design.md#model-folder)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import ModelError
from .ops.names import METHODS

FORMAT_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MODES = ("full", "tsm")


@dataclass
class InputSpec:
    """How frames become model input. ``scale`` is the pixel range that ``mean``/``std`` are given
    in: 1 means pixels are divided by 255 first (torchvision, official TSM), 255 means they stay in
    0..255 (mmaction2)."""

    shorter_side: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    color: str = "rgb"
    scale: int = 1
    interpolation: str = "bilinear"
    antialias: bool = True

    def validate(self) -> None:
        if self.color not in ("rgb", "bgr"):
            raise ModelError(f"input.color must be 'rgb' or 'bgr', got {self.color!r}")
        if self.scale not in (1, 255):
            raise ModelError(f"input.scale must be 1 or 255, got {self.scale!r}")
        if self.interpolation not in ("bilinear", "bicubic", "nearest", "area"):
            raise ModelError(f"input.interpolation {self.interpolation!r} is not supported")
        if not (0 < self.crop <= self.shorter_side):
            raise ModelError(f"input.crop ({self.crop}) must be in 1..shorter_side ({self.shorter_side})")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ModelError("input.mean and input.std need 3 values each, std > 0")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model and feed it: the ``config.json`` of a model folder."""

    arch: str
    num_classes: int
    labels: list[str] = field(default_factory=list)
    num_clusters: int = 8
    method: str = "cumulative"
    mode: str = "full"
    segments: int = 8  # TSM mode: frames sampled per video; 0 = every frame (TSM-all)
    input: InputSpec = field(default_factory=InputSpec)
    dropout: float = 0.5
    trained: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if isinstance(self.input, dict):
            self.input = _build(InputSpec, self.input, "input")
        m, s = self.input.mean, self.input.std
        self.input.mean = (float(m[0]), float(m[1]), float(m[2])) if len(m) == 3 else tuple(float(v) for v in m)  # type: ignore[assignment]
        self.input.std = (float(s[0]), float(s[1]), float(s[2])) if len(s) == 3 else tuple(float(v) for v in s)  # type: ignore[assignment]
        if not self.labels:
            self.labels = [f"class_{i}" for i in range(self.num_classes)]

    def validate(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise ModelError(f"unsupported format_version {self.format_version} (this fvdeploy reads {FORMAT_VERSION})")
        if self.num_classes < 1 or len(self.labels) != self.num_classes:
            raise ModelError(f"config has num_classes={self.num_classes} but {len(self.labels)} labels")
        if self.method not in METHODS:
            raise ModelError(f"unknown clustering method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.mode not in MODES:
            raise ModelError(f"unknown mode {self.mode!r}; choose 'full' or 'tsm'")
        if self.num_clusters < 1 or self.segments < 0:
            raise ModelError("num_clusters must be >= 1 and segments >= 0")
        self.input.validate()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input"]["mean"] = list(self.input.mean)
        d["input"]["std"] = list(self.input.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        if not isinstance(d, dict):
            raise ModelError("config.json must hold a JSON object")
        cfg = _build(cls, d, "config")
        cfg.validate()
        return cfg

    def replace(self, **changes: Any) -> "ModelConfig":
        cfg = dataclasses.replace(self, **changes)
        cfg.validate()
        return cfg


def _build(cls, d: dict[str, Any], where: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ModelError(f"{where} has unknown field(s): {', '.join(unknown)}")
    try:
        return cls(**d)
    except TypeError as e:  # a required field is missing
        raise ModelError(f"{where}: {e}") from None
