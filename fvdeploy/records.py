"""Every record fvdeploy publishes, and the one serializer that turns them into JSON.

Records: :class:`VideoResult` (``classify``), and what ``watch`` yields in order per stream:
:class:`WindowResult`, :class:`Event` when it closes, :class:`Gap` when a live stream came back
after a drop, and one :class:`StreamEnd`. The service (``fvdeploy serve``) sends the same records.

:func:`to_record` is the serializer: a dict with ``type`` and ``schema_version`` first, then every
public field; tuples become lists, :class:`Segment` s become dicts, and every non-finite float
becomes ``null`` (strict JSON: no NaN or Infinity). :func:`dumps` writes one record as one line.
Adding a field keeps :data:`SCHEMA_VERSION`; renaming or removing one bumps it
(docs/design.md, Records). ``docs/schemas/`` holds a JSON Schema for each record type.

Frames are the source's frame numbers (``end_frame`` exclusive). Seconds are presentation
timestamps on the source's timeline (``time_basis``, see ``fvdeploy.io.sources``), null where the
source has none. This module imports neither torch nor numpy.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

SCHEMA_VERSION = 1
RECORD_TYPES = ("video", "window", "event", "gap", "end")


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, Infinity) replaced by None, tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def to_record(item: Any) -> dict[str, Any]:
    """The JSON object of a record: ``type``, ``schema_version``, then its fields in declaration
    order (fields declared with ``repr=False`` are in-process only and left out)."""
    out: dict[str, Any] = {"type": item.type, "schema_version": SCHEMA_VERSION}
    for f in dataclasses.fields(item):
        if f.repr:
            value = getattr(item, f.name)
            if isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
                value = [dataclasses.asdict(v) for v in value]
            out[f.name] = value
    return strict_json(out)


def dumps(record: dict[str, Any]) -> str:
    """One record as one line of strict JSON (``ValueError`` on a NaN that slipped through)."""
    return json.dumps(record, allow_nan=False)


class Record:
    """What every record shares: ``to_dict()`` (the serializer) and ``to_json()`` (one line)."""

    type: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return to_record(self)

    def to_json(self) -> str:
        return dumps(self.to_dict())


@dataclass
class Segment:
    """A unit the model saw: a cluster (mode full, and every window of a watch) or a sampling
    segment (mode tsm). Frames ``[start_frame, end_frame)``; ``start_s`` is the presentation time
    of ``start_frame``, ``end_s`` that of ``end_frame`` (the last frame: its time plus its
    duration); None without times. ``label``/``score``: the unit's own top class and softmax
    probability."""

    start_frame: int
    end_frame: int
    start_s: float | None
    end_s: float | None
    label: str
    score: float


@dataclass
class VideoResult(Record):
    """What classifying one video returns (``fvdeploy classify --json``, ``POST /v1/classify``).

    ``label``/``score``/``topk``: softmax probabilities of the video's mean logits, best first.
    ``segments``: the units the model saw. ``fps`` is the declared rate; ``duration_s`` comes from
    the timestamps. ``partial``: frames were lost (``warnings`` says where and how many).
    ``error``: the input failed (every other field is then empty or null). ``num_frames``: frames
    decoded (not the container's count). ``run``: what ran (backend, provider, device, precision,
    decoder, mode); ``timings``: decode, model and total wall-clock seconds; identity checks ignore
    both. ``from_dict`` reads a record back (a ``TypeError`` for one without ``path``)."""

    type: ClassVar[str] = "video"
    path: str | None
    label: str | None = None
    score: float | None = None
    topk: list[tuple[str, float]] = field(default_factory=list)
    num_frames: int = 0
    fps: float | None = None
    duration_s: float | None = None
    segments: list[Segment] = field(default_factory=list)
    partial: bool = False
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    run: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VideoResult:
        d = dict(d)
        d["topk"] = [(label, score) for label, score in d.get("topk", [])]
        d["segments"] = [Segment(**s) for s in d.get("segments") or []]
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def failed(cls, path: str | None, error: str) -> VideoResult:
        return cls(path=path, error=error)


@dataclass
class WindowResult(Record):
    """One window classified by the full-video method over all its frames (G clusters):
    ``segments`` are its clusters (padding clusters of a window shorter than G are not reported).
    ``partial``: the last window of a segment, shorter than the window length. ``latency_s``:
    arrival of the window's last frame -> this result."""

    type: ClassVar[str] = "window"
    stream: str
    index: int  # windows of this stream so far, 0-based
    start_frame: int
    end_frame: int
    start_s: float | None
    end_s: float | None
    label: str
    score: float
    topk: list[tuple[str, float]]
    partial: bool
    segments: list[Segment]
    time_basis: str | None
    latency_s: float
    logits: Any = field(default=None, repr=False)  # torch [classes] mean cluster logits (in-process only)


@dataclass
class Event(Record):
    """An action: a run of windows that kept one label (``watch.events``: hysteresis, merge gap,
    minimum duration); emitted when final. ``score``: the mean probability of its label over its
    windows; ``clip``: its evidence clip's file name (``watch --clips``), else None."""

    type: ClassVar[str] = "event"
    stream: str
    label: str
    score: float
    start_s: float | None
    end_s: float | None
    start_frame: int
    end_frame: int
    windows: int
    time_basis: str | None
    clip: str | None = None  # with watch --clips: the file name of its clip in the clips folder


@dataclass
class Gap(Record):
    """A live stream stopped delivering and came back: no window or event spans the gap.
    ``start_s``: the end of the last frame before it; ``end_s``: when the stream came back."""

    type: ClassVar[str] = "gap"
    stream: str
    start_s: float | None
    end_s: float | None
    after_frame: int  # frames delivered before the gap
    attempts: int
    reason: str


@dataclass
class StreamEnd(Record):
    """A stream finished: its file ended, it was stopped, or it failed (``error``).
    ``frames``: read from the source (numbers 0 .. frames - 1); ``dropped_frames``: of those, live
    frames dropped before the model because the device fell behind."""

    type: ClassVar[str] = "end"
    stream: str
    frames: int
    windows: int
    events: int
    dropped_frames: int
    reconnects: int
    fps: float | None
    window_frames: int | None
    stride_frames: int | None
    time_basis: str | None
    partial: bool = False
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


WatchItem = WindowResult | Event | Gap | StreamEnd

__all__ = [
    "RECORD_TYPES",
    "SCHEMA_VERSION",
    "Event",
    "Gap",
    "Record",
    "Segment",
    "StreamEnd",
    "VideoResult",
    "WatchItem",
    "WindowResult",
    "dumps",
    "strict_json",
    "to_record",
]
