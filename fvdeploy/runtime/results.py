"""What classifying one video returns (fields fixed by ``../shared/DECISIONS.md``)."""

from __future__ import annotations

import dataclasses
import json
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


@dataclass
class VideoResult:
    path: str | None
    label: str | None = None
    score: float | None = None  # softmax probability of the clip's mean logits
    topk: list[tuple[str, float]] = field(default_factory=list)
    num_frames: int = 0
    fps: float | None = None
    duration_s: float | None = None
    segments: list[Segment] = field(default_factory=list)
    partial: bool = False  # decoding stopped early; the frames decoded were classified
    error: str | None = None
    run: dict[str, Any] = field(default_factory=dict)  # backend, provider, device, precision, decoder, mode
    timings: dict[str, float] = field(default_factory=dict)  # decode, model, total seconds

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["topk"] = [[label, score] for label, score in self.topk]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VideoResult":
        d = dict(d)
        d["topk"] = [(label, score) for label, score in d.get("topk", [])]
        d["segments"] = [Segment(**s) for s in d.get("segments", [])]
        return cls(**d)

    @classmethod
    def failed(cls, path: str | None, error: str) -> "VideoResult":
        return cls(path=path, error=error)
