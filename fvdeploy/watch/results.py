"""What a watch yields, in order per stream: ``WindowResult``s, ``Event``s when they close, ``Gap``s
when a live stream came back after a drop, and one ``StreamEnd`` per stream. Each has
``to_dict()`` with a ``type`` field (one JSON line each in ``fvdeploy watch``).

Frames are the source's frame numbers (``end_frame`` exclusive); seconds follow the stream's
``time_basis`` (see ``fvdeploy.io.sources``) and are None where the source has none.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


class _Item:
    type = ""

    def to_dict(self) -> dict[str, Any]:
        d = {"type": self.type}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]  # every subclass is a dataclass
            if f.repr:
                d[f.name] = getattr(self, f.name)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


@dataclass
class WindowResult(_Item):
    """One window classified by the full-video method over all its frames (G clusters)."""

    type = "window"
    stream: str
    index: int  # windows of this stream so far, 0-based
    start_frame: int
    end_frame: int
    start_s: float | None
    end_s: float | None
    label: str
    score: float  # softmax probability of the window's mean cluster logits
    topk: list[tuple[str, float]]
    partial: bool  # the last window of a segment, shorter than the window length
    clusters: list[
        tuple[int, int, str, float]
    ]  # each of the G clusters: start_frame, end_frame, its own label and score
    time_basis: str | None
    latency_s: float  # arrival of the window's last frame -> this result
    logits: Tensor | None = field(default=None, repr=False)  # [classes] mean cluster logits (not serialised)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["topk"] = [[label, score] for label, score in self.topk]
        d["clusters"] = [list(c) for c in self.clusters]
        return d


@dataclass
class Event(_Item):
    """An action: a run of windows that kept one label (fvdeploy.watch.events); emitted when final."""

    type = "event"
    stream: str
    label: str
    score: float  # mean score of its windows
    start_s: float | None
    end_s: float | None
    start_frame: int
    end_frame: int
    windows: int
    time_basis: str | None
    clip: str | None = None  # with --clips: the file name of its clip in the clips folder


@dataclass
class Gap(_Item):
    """A live stream dropped and came back: no window or event spans the gap."""

    type = "gap"
    stream: str
    start_s: float | None  # end of the last frame before the drop
    end_s: float | None  # when the stream came back (watch clock)
    after_frame: int  # frames delivered before the drop
    attempts: int
    reason: str


@dataclass
class StreamEnd(_Item):
    """A stream finished (its file ended, it was stopped, or it failed: ``error``)."""

    type = "end"
    stream: str
    frames: int  # read from the source (frame numbers run 0 .. frames - 1)
    windows: int
    events: int
    dropped_frames: int  # of those, live frames dropped before the model because the device fell behind
    reconnects: int
    fps: float | None
    window_frames: int | None
    stride_frames: int | None
    time_basis: str | None
    partial: bool = False  # frames were lost (decode errors); warnings say where
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


WatchItem = WindowResult | Event | Gap | StreamEnd
