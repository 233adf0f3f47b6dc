"""Typed configuration saved beside the weights as ``config.json`` (see docs/design.md#model-folder).

A config is checked field by field before anything it sizes is allocated (issue 24): types,
ranges with upper bounds (``LIMITS``, each with its reason), finite ``mean`` and ``std > 0``,
``labels`` a list of ``num_classes`` strings. Every error is one line naming the field
(``input.mean[0]: must be a finite number, got nan``); ``bundle.read_config`` prefixes the file.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import ModelError
from .ops.names import METHODS

FORMAT_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MODES = ("full", "tsm")
COLORS = ("rgb", "bgr")
SCALES = (1, 255)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "area")

# Upper bounds: name -> (largest value, why). Beyond them a config is refused before any tensor it
# sizes exists (a config once asked for num_clusters = 10^9 and torch tried to allocate 49 TB).
LIMITS: dict[str, tuple[int, str]] = {
    "num_classes": (
        100_000,
        "the largest public label sets (ImageNet-21k: 21,841 classes) stay well below it; a ResNet-50 head "
        "of 100,000 classes is already 800 MB",
    ),
    "num_clusters": (
        1024,
        "32x the largest G the paper evaluates; every cluster runs through layer2..4 as one frame",
    ),
    "segments": (1024, "TSM samples 8 or 16 frames; 0 already means every frame"),
    "input.shorter_side": (4096, "4K video's shorter side is 2160; beyond 4096 frames are only upsampled"),
    "input.crop": (
        1024,
        "ImageNet backbones run at 224-320 px; one 1024x1024 frame's stem activations alone are 64 MiB in fp32",
    ),
    "labels[]": (1024, "a label is a class name printed in tables and records"),
}
MAX_CONFIG_DEPTH = 32  # JSON nesting: a config is 3 levels deep, its free-form ``trained`` a few more


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(name: str, value: Any, low: int, high: int | None = None) -> None:
    if not _is_int(value):
        raise ModelError(f"{name}: must be an integer, got {_show(value)}")
    top = LIMITS[name][0] if high is None and name in LIMITS else high
    if value < low:
        raise ModelError(f"{name}: must be at least {low}, got {value}")
    if top is not None and value > top:
        why = f" ({LIMITS[name][1]})" if name in LIMITS else ""
        raise ModelError(f"{name}: must be at most {top}, got {value}{why}")


def _choice(name: str, value: Any, choices: tuple) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ModelError(f"{name}: must be one of {', '.join(map(str, choices))}, got {_show(value)}")


def _triple(name: str, value: Any, low: float, high: float, low_open: bool) -> None:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise ModelError(f"{name}: must be a list of 3 numbers (one per colour channel), got {_show(value)}")
    for i, v in enumerate(value):
        if not _is_number(v) or not math.isfinite(v):
            raise ModelError(f"{name}[{i}]: must be a finite number, got {_show(v)}")
        if (v <= low if low_open else v < low) or v > high:
            bounds = f"{'>' if low_open else '>='} {low:g} and <= {high:g}"
            raise ModelError(f"{name}[{i}]: must be {bounds} (pixel values in 0..scale), got {v!r}")


def json_depth(value: Any) -> int:
    """Nesting depth of a JSON value (a scalar is 0), without recursion (a hostile file may be
    100,000 levels deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            items: Iterable[Any] = v.values()
        elif isinstance(v, list):
            items = v
        else:
            continue
        deepest = max(deepest, d)
        if deepest > MAX_CONFIG_DEPTH:
            return deepest
        stack.extend((x, d + 1) for x in items)
    return deepest


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

    def validate(self, where: str = "input") -> None:
        """Every field's type and range; ModelError naming the field (``input.crop: ...``)."""
        _choice(f"{where}.color", self.color, COLORS)
        if self.scale not in SCALES or isinstance(self.scale, bool):
            raise ModelError(f"{where}.scale: must be 1 or 255, got {_show(self.scale)}")
        _choice(f"{where}.interpolation", self.interpolation, INTERPOLATIONS)
        if not isinstance(self.antialias, bool):
            raise ModelError(f"{where}.antialias: must be true or false, got {_show(self.antialias)}")
        _int("input.shorter_side", self.shorter_side, 1)
        _int("input.crop", self.crop, 1)
        if self.crop > self.shorter_side:
            raise ModelError(f"{where}.crop ({self.crop}) must be at most shorter_side ({self.shorter_side})")
        _triple(f"{where}.mean", self.mean, 0.0, float(self.scale), low_open=False)
        _triple(f"{where}.std", self.std, 0.0, float(self.scale), low_open=True)


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
        # Only well-formed values are normalised here; anything else is left for validate() to name.
        if isinstance(self.input, dict):
            self.input = _build(InputSpec, self.input, "input")
        if isinstance(self.input, InputSpec):
            for name in ("mean", "std"):
                v = getattr(self.input, name)
                if isinstance(v, (list, tuple)) and len(v) == 3 and all(_is_number(x) for x in v):
                    setattr(self.input, name, tuple(float(x) for x in v))
        if (
            isinstance(self.labels, list)
            and not self.labels
            and _is_int(self.num_classes)
            and 1 <= self.num_classes <= LIMITS["num_classes"][0]
        ):
            self.labels = [f"class_{i}" for i in range(self.num_classes)]

    def validate(self) -> None:
        """Every field's type and range (upper bounds in ``LIMITS``); one-line ModelError naming the field."""
        if not _is_int(self.format_version) or self.format_version != FORMAT_VERSION:
            raise ModelError(
                f"format_version: unsupported {_show(self.format_version)} (this fvdeploy reads {FORMAT_VERSION})"
            )
        if not isinstance(self.arch, str) or not self.arch or len(self.arch) > 64:
            raise ModelError(f"arch: must be an architecture name, got {_show(self.arch)}")
        _int("num_classes", self.num_classes, 1)
        if not isinstance(self.labels, list):
            raise ModelError(f"labels: must be a list of {self.num_classes} strings, got {_show(self.labels)}")
        if len(self.labels) != self.num_classes:
            raise ModelError(f"labels: config has num_classes={self.num_classes} but {len(self.labels)} labels")
        top, why = LIMITS["labels[]"]
        for i, label in enumerate(self.labels):
            if not isinstance(label, str):
                raise ModelError(f"labels[{i}]: must be a string, got {_show(label)}")
            if len(label) > top:
                raise ModelError(f"labels[{i}]: at most {top} characters ({why}), got {len(label)}")
        _choice("method", self.method, METHODS)
        _choice("mode", self.mode, MODES)
        _int("num_clusters", self.num_clusters, 1)
        _int("segments", self.segments, 0)
        if not _is_number(self.dropout) or not 0 <= self.dropout < 1:
            raise ModelError(f"dropout: must be a number in [0, 1), got {_show(self.dropout)}")
        if not isinstance(self.trained, dict):
            raise ModelError(f"trained: must be a JSON object, got {_show(self.trained)}")
        if json_depth(self.trained) > MAX_CONFIG_DEPTH - 1:
            raise ModelError(f"trained: nested more than {MAX_CONFIG_DEPTH - 1} levels deep")
        if not isinstance(self.input, InputSpec):
            raise ModelError(f"input: must be a JSON object, got {_show(self.input)}")
        self.input.validate()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input"]["mean"] = list(self.input.mean)
        d["input"]["std"] = list(self.input.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "") -> "ModelConfig":
        """Build and validate; ``where`` prefixes field names in errors (``config.`` inside an export record)."""
        try:
            if not isinstance(d, dict):
                raise ModelError("must hold a JSON object" if not where else "must be a JSON object")
            if json_depth(d) > MAX_CONFIG_DEPTH:
                raise ModelError(f"nested more than {MAX_CONFIG_DEPTH} levels deep (a config is a few levels)")
            cfg = _build(cls, d, "")
            cfg.validate()
        except ModelError as e:
            if where:  # "input.crop: ..." -> "config.input.crop: ..."; "unknown field(s): ..." -> "config: ..."
                sep = "." if re.match(r"[A-Za-z_][\w.\[\]]*: ", str(e)) else ": "
                raise ModelError(f"{where}{sep}{e}") from None
            raise
        return cfg

    def replace(self, **changes: Any) -> "ModelConfig":
        cfg = dataclasses.replace(self, **changes)
        cfg.validate()
        return cfg


def _build(cls, d: dict[str, Any], where: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    prefix = f"{where}: " if where else ""
    if unknown:
        raise ModelError(f"{prefix}unknown field(s): {', '.join(_show(u) for u in unknown)}")
    missing = sorted(
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in d and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise ModelError(f"{prefix}missing field(s): {', '.join(missing)}")
    return cls(**d)
