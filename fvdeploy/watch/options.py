"""What to watch and how: :class:`WatchOptions` (validated once, used by the CLI, the Python API
and the service: field names are the CLI's flags in snake_case) and :class:`StreamSpec`, a source
as the user named it (:func:`resolve_sources` expands directories)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import LIMITS
from ..errors import FvdeployError, VideoError
from ..io.urls import is_url, redact
from ..io.video import describe_skipped, scan_folder
from .rules import EventRules

log = logging.getLogger(__name__)

# Windows in seconds on a VFR stream hold a varying number of frames; the ring that holds a window is
# sized for this many times the declared rate (a stream that runs faster closes a window at that count).
# The ring is sized for 4x where the memory budget allows, else 1.25x.
TIME_WINDOW_RATE = 4.0
MAX_CLUSTERS = LIMITS["num_clusters"][0]
TIME_WINDOW_RATE_MIN = 1.25


@dataclass
class StreamSpec:
    """One source to watch: what the user named, shown as ``name``."""

    name: str
    target: Any
    error: str | None = None  # known before opening (e.g. an empty directory)
    loops: int = 1  # files: play this many times back to back (benchmarks)

    @property
    def is_file(self) -> bool:
        return isinstance(self.target, (str, Path)) and not is_url(str(self.target))


def resolve_sources(sources: Iterable[Any]) -> list[StreamSpec]:
    """Expand what the user named into streams: a directory becomes its video files (sorted; what it
    skips is logged as a warning), anything else one stream each (opened by ``io.sources.open_source``)."""
    specs: list[StreamSpec] = []
    for src in sources:
        if isinstance(src, StreamSpec):
            specs.append(src)
        elif isinstance(src, np.ndarray):
            specs.append(StreamSpec("<array>", src))
        elif isinstance(src, bool):
            raise FvdeployError(f"cannot watch {src!r}: pass a path, URL, camera index, array or iterator of frames")
        elif isinstance(src, int):
            specs.append(StreamSpec(f"camera:{src}", src))
        elif isinstance(src, (str, Path)):
            text = str(src)
            if Path(text).is_dir():
                scan = scan_folder(text)
                if scan.skipped:
                    log.warning("%s", describe_skipped(text, scan.skipped))
                if not scan.videos:
                    specs.append(StreamSpec(text, text, error=f"{text}: directory contains no video files"))
                specs.extend(StreamSpec(str(v), str(v)) for v in scan.videos)
            elif text.isdigit() and not Path(text).exists():
                specs.append(StreamSpec(f"camera:{int(text)}", int(text)))
            else:
                specs.append(StreamSpec(redact(text) if is_url(text) else text, text))
        elif isinstance(src, Iterable):
            specs.append(StreamSpec("<iterator>", src))
        else:
            raise FvdeployError(
                f"cannot watch a {type(src).__name__}: pass a path, URL, camera index, array or iterator of frames"
            )
    return specs


@dataclass
class WatchOptions:
    """How to window, when to report, and how to read the sources (see ``fvdeploy.watch.watch``)."""

    window_s: float = 8.0
    stride_s: float = 2.0
    window_frames: int | None = None  # given both, frames win over seconds
    stride_frames: int | None = None
    # events (fvdeploy.watch.rules.EventRules: hysteresis, merge gap, minimum duration)
    enter: float = EventRules.enter  # a label's probability that starts an event
    exit: float | None = EventRules.exit  # ... and that keeps it going (None: 0.7, or enter if lower)
    merge_gap_s: float = EventRules.merge_gap_s  # runs of a label this close join into one event
    min_duration_s: float = EventRules.min_duration_s  # shorter events are dropped
    threshold: float | None = None  # the former name of ``enter`` (given, it sets ``enter``)
    events_only: bool = False
    realtime: bool = False  # pace files (and arrays, iterators) at their frame rate, like a camera
    live: bool | None = None  # None: by kind (rtsp/rtmp/udp/srt URLs and cameras are live); True: any source
    fps: float | None = None  # overrides the frame rate the source announces
    color: str = "bgr"  # arrays and iterators
    retries: int = 5
    retry_delay_s: float = 1.0
    open_timeout_s: float = 10.0
    max_open_files: int = 8  # files (e.g. a directory's) watched at once; live sources always start
    step_frames: int | None = None  # frames per stream per device step; default from the memory budget
    live_step_s: float = 0.25  # live sources only: at most one device step per this many seconds
    clips: str | Path | None = None  # a folder: each event also as a browser-playable clip (watch.clips)
    # clusters G per window; None: as many as keep the frames per cluster the model was trained with
    # (its config's trained.clip_frames / num_clusters), at least the model's G (see clusters_for)
    clusters: int | None = None

    def validate(self) -> None:
        if (self.window_frames is None) != (self.stride_frames is None):
            raise FvdeployError(
                "give the window and the stride both in frames (window_frames and stride_frames) or both in seconds"
            )
        if self.window_frames is not None and self.stride_frames is not None:
            if self.window_frames < 1 or self.stride_frames < 1:
                raise FvdeployError(
                    f"window and stride must be at least 1 frame, got {self.window_frames} and {self.stride_frames}"
                )
        elif not (self.window_s > 0 and self.stride_s > 0):
            raise FvdeployError(f"window and stride must be positive, got {self.window_s} s and {self.stride_s} s")
        if self.clusters is not None and (isinstance(self.clusters, bool) or not 1 <= self.clusters <= MAX_CLUSTERS):
            raise FvdeployError(f"clusters must be an integer in [1, {MAX_CLUSTERS}], got {self.clusters!r}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise FvdeployError(f"threshold (now called enter) must be in [0, 1], got {self.threshold}")
        self.rules().validate()
        if self.fps is not None and not self.fps > 0:
            raise FvdeployError(f"fps must be positive, got {self.fps}")
        if self.color not in ("bgr", "rgb"):
            raise FvdeployError(f"color must be 'bgr' or 'rgb', got {self.color!r}")
        if self.retries < 0 or self.retry_delay_s < 0:
            raise FvdeployError("retries and retry_delay must be >= 0")
        if self.live_step_s < 0:
            raise FvdeployError(f"live_step_s must be >= 0, got {self.live_step_s}")
        if self.step_frames is not None and self.step_frames < 1:
            raise FvdeployError(f"step_frames must be >= 1, got {self.step_frames}")

    def rules(self) -> EventRules:
        """The event rules these options give (``threshold``, when given, is ``enter``)."""
        enter = self.enter if self.threshold is None else self.threshold
        return EventRules(enter, self.exit, self.merge_gap_s, self.min_duration_s)

    def geometry(self, fps: float | None, name: str) -> tuple[int, int]:
        """Window and stride in frames for a source with this frame rate. Windows in seconds are
        placed by the frames' presentation times (see ``_Stream``); the frame counts returned then
        bound them: a window holds at most ``TIME_WINDOW_RATE`` x the declared rate's frames."""
        if self.window_frames is not None and self.stride_frames is not None:
            return self.window_frames, self.stride_frames
        if not fps:
            raise VideoError(
                f"{name}: the source has no frame rate, so windows in seconds cannot be placed; "
                "give --fps or the window and stride in frames"
            )
        return max(1, math.ceil(self.window_s * fps * TIME_WINDOW_RATE)), max(1, round(self.stride_s * fps))


def clusters_for(window_frames: int, num_clusters: int, clip_frames: int | None, given: int | None = None) -> int:
    """Clusters G for a window of ``window_frames`` frames (its length at the declared rate).

    ``given`` (``--clusters``) wins. Else a model that says how long its training clips were
    (``trained.clip_frames`` in its config, e.g. 32 frames with G = 8: 4 frames a cluster) gets as
    many clusters as keep that many frames in each: ``round(window_frames * G / clip_frames)``, at
    least its G and at most the window's frames. A cluster is a mean of frames, so a model that
    learned 4-frame means misreads 25-frame ones: the bundled model's 8-s windows at 25 fps with G
    = 8 labelled a window of pure move_down move_right at 0.96, and gave 2 events on a recording of
    4 actions; with G = 50, one event per action (docs/watch.md, Events). Without ``clip_frames``:
    the model's G."""
    if given is not None:
        return given
    if not clip_frames or clip_frames < 1:
        return num_clusters
    g = round(window_frames * num_clusters / clip_frames)
    return max(num_clusters, min(g, window_frames, MAX_CLUSTERS))
