"""What classifying one video returns (fields fixed by docs/design.md#records)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Segment:
    """A unit the model saw: a cluster (mode full) or a sampling segment (mode tsm).
    ``end_frame`` is exclusive; seconds are None when the source has no frame rate."""

    start_frame: int
    end_frame: int
    start_s: float | None
    end_s: float | None
    label: str
    score: float


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, Infinity) replaced by None: strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


@dataclass
class VideoResult:
    """What classifying one video returns.

    ``label``/``score``/``topk``: softmax probabilities of the video's mean logits. ``segments``:
    the units the model saw (clusters in mode full, sampling segments in mode tsm), frames
    ``[start_frame, end_frame)`` and their presentation times in seconds (None without times).
    ``fps`` is the declared rate; ``duration_s`` comes from the timestamps. ``partial``: frames were
    lost (``warnings`` says where and how many). ``error``: the input failed (every other field is
    then empty or None). ``num_frames``: frames decoded (not the container's count). ``topk``: up to
    ``topk`` (label, probability) pairs, best first. ``run``: what ran (backend, provider, device,
    precision, decoder, mode); ``timings``: decode, model and total wall-clock seconds; identity
    checks ignore both. ``to_dict()`` / ``to_json()`` are strict JSON (no NaN or Infinity);
    ``from_dict`` reads them back (a ``TypeError`` for a record without ``path``)."""

    path: str | None
    label: str | None = None
    score: float | None = None  # softmax probability of the clip's mean logits
    topk: list[tuple[str, float]] = field(default_factory=list)
    num_frames: int = 0
    fps: float | None = None
    duration_s: float | None = None
    segments: list[Segment] = field(default_factory=list)
    partial: bool = False  # frames were lost (damage, or a source that ended before it announced)
    warnings: list[str] = field(default_factory=list)  # one line each: where frames were lost, and how many
    error: str | None = None
    run: dict[str, Any] = field(default_factory=dict)  # backend, provider, device, precision, decoder, mode
    timings: dict[str, float] = field(default_factory=dict)  # decode, model, total seconds

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["topk"] = [[label, score] for label, score in self.topk]
        return strict_json(d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VideoResult":
        d = dict(d)
        d["topk"] = [(label, score) for label, score in d.get("topk", [])]
        d["segments"] = [Segment(**s) for s in d.get("segments") or []]
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def failed(cls, path: str | None, error: str) -> "VideoResult":
        return cls(path=path, error=error)
