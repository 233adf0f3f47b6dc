"""What ``classify`` takes, as one typed, validated object: the CLI, the Python API and the service
all build a :class:`ClassifyOptions` and call :meth:`ClassifyOptions.validate`, so a value is
checked once, in one place, with one message. Field names are the CLI's flags in snake_case
(``--top-k`` -> ``top_k``): the service accepts them as JSON fields and query parameters.

Torch-free: the command line and the service validate before anything heavy loads.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..backends.names import BACKENDS, PRECISION_NAMES
from ..config import LIMITS, MODES
from ..errors import FvdeployError
from ..io.names import DECODERS
from ..ops.names import METHODS

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


class OptionsError(FvdeployError):
    """An option with a value it cannot take (a usage error: exit 2 in the CLI, 400 in the service)."""


@dataclass
class ClassifyOptions:
    """How to load the model and classify (``fvdeploy classify --help`` tells each flag).

    Model and device (fixed once a model is loaded): ``model`` (a model folder; None: the bundled
    one), ``device`` (auto | cpu | cuda | cuda:N), ``backend``, ``precision`` and
    ``features_precision`` (of stem + ``layer1``, whose signs the clustering reads), ``decoder``,
    ``decode_workers``, ``max_memory`` (MiB beyond the model, decoded frames included),
    ``chunk_size`` (frames per stem + ``layer1`` call).

    Per request (:data:`REQUEST_FIELDS`; a loaded model serves any of them): ``mode`` (full |
    tsm), ``segments`` (tsm only; 0: every frame), ``clusters`` (G), ``method`` and ``top_k``.
    None means "as the model was trained" (or the device's default)."""

    model: str | None = None
    device: str = "auto"
    backend: str = "auto"  # backends.choice: the measured rule (docs/design.md#backend-default)
    precision: str | None = None
    features_precision: str | None = None
    mode: str | None = None
    segments: int | None = None
    clusters: int | None = None
    method: str | None = None
    top_k: int = 5
    max_memory: int | None = None
    chunk_size: int | None = None
    decoder: str | None = None
    decode_workers: int | None = None

    def validate(self) -> ClassifyOptions:
        """Check every field; returns ``self``. Raises :class:`OptionsError` (one line naming
        the option) for a wrong type or a value out of range."""
        _choice("backend", self.backend, BACKENDS)
        _choice("precision", self.precision, PRECISION_NAMES, optional=True)
        _choice("features_precision", self.features_precision, PRECISION_NAMES, optional=True)
        _choice("mode", self.mode, MODES, optional=True)
        _choice("method", self.method, METHODS, optional=True)
        _choice("decoder", self.decoder, DECODERS, optional=True)
        if not isinstance(self.device, str) or not DEVICE_PATTERN.match(self.device.strip().lower()):
            raise OptionsError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.model is not None and not isinstance(self.model, str):
            raise OptionsError(f"model must be a folder path, got {type(self.model).__name__}")
        _int("top_k", self.top_k, 1)
        for name, low in (("segments", 0), ("clusters", 1), ("max_memory", 16), ("chunk_size", 1)):
            _int(name, getattr(self, name), low, optional=True)
        # the model folder's own bounds (config.LIMITS), checked here so that a too-large request is
        # the option's usage error (exit 2, 400), not a broken model folder
        for name, limit in (("clusters", "num_clusters"), ("segments", "segments")):
            value, (top, why) = getattr(self, name), LIMITS[limit]
            if value is not None and value > top:
                raise OptionsError(f"{name} must be at most {top}, got {value} ({why})")
        _int("decode_workers", self.decode_workers, 1, optional=True)
        if self.segments is not None and self.mode != "tsm":
            raise OptionsError("segments applies to mode tsm (full mode uses clusters)")
        return self

    def replace(self, **changes: Any) -> ClassifyOptions:
        return dataclasses.replace(self, **changes)

    def request_options(self) -> dict[str, Any]:
        """The per-request fields that are set (not None)."""
        return {k: getattr(self, k) for k in REQUEST_FIELDS if getattr(self, k) is not None}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, allowed: tuple[str, ...] | None = None) -> ClassifyOptions:
        """Options from JSON fields or query parameters (strings are converted to the field's
        type: ``"3"`` -> 3). ``allowed``: the fields a caller may set (others: OptionsError).
        Validated."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        allowed = tuple(fields) if allowed is None else allowed
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in fields:
                raise OptionsError(f"unknown option {key!r}; options: {', '.join(allowed)}")
            if key not in allowed:
                raise OptionsError(
                    f"option {key!r} is fixed when the model is loaded; per request: {', '.join(allowed)}"
                )
            values[key] = _convert(key, value, INT_FIELDS)
        return cls(**values).validate()


REQUEST_FIELDS: tuple[str, ...] = ("mode", "segments", "clusters", "method", "top_k")
INT_FIELDS = frozenset({"segments", "clusters", "top_k", "max_memory", "chunk_size", "decode_workers"})


def _choice(name: str, value: Any, choices: tuple[str, ...], optional: bool = False) -> None:
    if value is None and optional:
        return
    if value not in choices:
        raise OptionsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _int(name: str, value: Any, low: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionsError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise OptionsError(f"{name} must be >= {low}, got {value}")


def _convert(name: str, value: Any, ints: frozenset[str]) -> Any:
    """Query parameters arrive as strings: ``"5"`` for an int field becomes 5 (``"5.0"``, ``"x"``
    stay strings and fail validation with the field's message)."""
    if isinstance(value, str) and name in ints and re.fullmatch(r"[+-]?\d{1,9}", value.strip()):
        return int(value)
    return value
