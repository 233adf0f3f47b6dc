"""Evidence clips (``watch --clips DIR``): each event as a video a browser plays, plus a JSON sidecar.

Per stream, a ``StreamClips`` is fed the decoded frames (with their stream positions, source frame
numbers and seconds) and follows the stream's ``EventTracker``: the tracker says which event
candidate a frame surely belongs to (``EventTracker.claim``), and when a candidate is final
(``on_final``: emitted, or dropped as too short).

Memory is bounded, whatever the length of an event: frames are kept, scaled down to at most
``CLIP_HEIGHT`` rows and stored as I420 (1.5 bytes a pixel), only while undecided: at most the
window plus the stride and one device step behind the newest frame (a run can start that far back:
windows are classified when they end), plus, while an event may still be joined by a later run of
its label, the frames since it ended (the merge gap, and the minimum duration, plus a window). A
frame that surely belongs to a candidate goes to its encoder at once, so an event of any length is
written incrementally. A candidate that is dropped has its temporary file deleted. A clip never
spans a gap: events end at the end of a segment (a drop), and so does every clip.

Files, in ``DIR``: ``<stream>_<NNNN>_<label>.mp4`` (H.264, index at the front) and beside it
``.json``: the event record (``records.Event``, its ``clip`` naming the file) plus ``source`` (the
stream) and ``frames`` (how many the clip holds); names already in ``DIR`` are never overwritten (a
``-N`` suffix is added).
"""

from __future__ import annotations

import logging
import os
import re
from collections import deque
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..io.encode import VideoEncoder, even_size
from ..records import Event, dumps
from .events import WAIT, EventTracker

log = logging.getLogger(__name__)

CLIP_HEIGHT = 360  # rows of a clip at most: evidence, not an archive (a 1080p stream's frame: 350 KB here)
CLIP_SUFFIX = ".mp4"


def _stem(stream: str) -> str:
    """A file-name stem for a stream: a path's stem, a URL without its scheme (passwords are
    already masked in stream names)."""
    name = Path(stream).stem if "://" not in stream else stream.split("://", 1)[1]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.")[:80] or "stream"


def frame_bytes(width: int, height: int) -> int:
    """Bytes one kept frame of a ``width`` x ``height`` source takes (scaled, I420)."""
    w, h = even_size(width, height, CLIP_HEIGHT)
    return w * h * 3 // 2


class StreamClips:
    """The clips of one stream. ``feed`` after each batch of frames, ``update`` after the tracker
    was given windows (and after ``tracker.close()``), ``segment_end`` after the tracker closed a
    segment, ``close`` at the end of the stream (an unfinished candidate's file is deleted).

    ``folder``: where clips go (created). ``fps``: the nominal rate (frames without seconds).
    ``color``: the order of the fed frames' channels (``bgr`` or ``rgb``)."""

    def __init__(
        self,
        folder: str | Path,
        stream: str,
        tracker: EventTracker,
        fps: float | None,
        color: str = "bgr",
        time_basis: str | None = None,
        max_kept: int | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.stream, self.tracker, self.color, self.time_basis = stream, tracker, color, time_basis
        self.fps = fps if fps and fps > 0 else 25.0
        self.kept: deque[tuple[int, int, float, np.ndarray]] = deque()  # pos, source frame, seconds, I420
        self.size: tuple[int, int] | None = None
        self.key: int | None = None  # the candidate being written
        self.writer: VideoEncoder | None = None
        self.first: tuple[int, float] | None = None  # the clip's first source frame and its seconds
        self.written = 0
        self.count = 0
        self.peak_kept = 0  # most frames held at once (reported by the tests)
        self.max_kept = max_kept  # the bound the watcher reserved memory for (None: none)
        self.missed = 0  # frames forgotten undecided at that bound (see update)
        tracker.on_final = self._final

    # -- frames in --------------------------------------------------------------------------------------
    def feed(self, first_pos: int, frames: Any, index: np.ndarray, seconds: np.ndarray) -> None:
        """Frames ``uint8 [k, H, W, 3]`` (numpy, or a tensor on any device) at positions
        ``first_pos..``, their source frame numbers and seconds (nan: none)."""
        if not isinstance(frames, np.ndarray):
            frames = frames.cpu().numpy()  # NVDEC frames: a copy to the host, for the encoder
        h, w = frames.shape[1:3]
        if self.size is None:
            self.size = even_size(w, h, CLIP_HEIGHT)
        tw, th = self.size
        to_i420 = cv2.COLOR_BGR2YUV_I420 if self.color == "bgr" else cv2.COLOR_RGB2YUV_I420
        for j, frame in enumerate(frames):
            if (w, h) != (tw, th):
                frame = cv2.resize(frame, (tw, th), interpolation=cv2.INTER_AREA)
            self.kept.append((first_pos + j, int(index[j]), float(seconds[j]), cv2.cvtColor(frame, to_i420)))
        self.peak_kept = max(self.peak_kept, len(self.kept))
        self.update()

    # -- decisions ------------------------------------------------------------------------------------
    def update(self) -> None:
        """Write or forget the kept frames the tracker has decided."""
        while self.kept:
            pos = self.kept[0][0]
            owner = self.tracker.claim(pos)
            if owner == WAIT:
                if self.max_kept is not None and len(self.kept) > self.max_kept:
                    # only with exit < 0.5, where a run may last on windows that have another label on
                    # top: its end is then unknown for longer than the bound; its clip loses the frame
                    self.kept.popleft()
                    self.missed += 1
                    if self.missed == 1:
                        log.warning("%s: a clip misses frames (kept frames reached %d)", self.stream, self.max_kept)
                    continue
                return
            item = self.kept.popleft()
            if owner is not None:
                self._write(owner, item)

    def _write(self, key: int, item: tuple[int, int, float, np.ndarray]) -> None:
        if self.key != key:
            self._abort()
            self.key = key
            self.count += 1
            tmp_name = self.folder / f".{_stem(self.stream)}_{self.count:04d}{CLIP_SUFFIX}"
            assert self.size is not None  # set by the first feed
            self.writer = VideoEncoder(tmp_name, *self.size, self.fps)
            self.first, self.written = (item[1], item[2]), 0
        assert self.writer is not None and self.first is not None
        _, frame_no, seconds, image = item
        t0 = self.first[1]
        t = seconds - t0 if np.isfinite(seconds) and np.isfinite(t0) else (frame_no - self.first[0]) / self.fps
        self.writer.write(image, t, fmt="yuv420p")
        self.written += 1

    def _final(self, key: int, start: int, stop: int, event: Event | None) -> None:
        """The tracker's ``on_final``: write the candidate's remaining kept frames, then finish its
        clip (an event) or delete it (dropped)."""
        if event is None:
            if self.key == key:
                self._abort()
            return
        while self.kept and self.kept[0][0] < stop:
            item = self.kept.popleft()
            if item[0] >= start:
                self._write(key, item)
        if self.key != key or self.writer is None:
            return  # no frame of it was seen (frames fed after the windows, or none kept): no clip
        writer, self.writer, self.key = self.writer, None, None
        path = self._free_name(event)
        writer.close(path)
        event.clip = path.name
        # the event record itself (the one serializer), and what the clip holds
        sidecar = {**event.to_dict(), "source": self.stream, "frames": self.written}
        _write_json(path.with_suffix(".json"), sidecar)

    def _free_name(self, event: Event) -> Path:
        label = re.sub(r"[^A-Za-z0-9._-]+", "_", event.label)
        base = f"{_stem(self.stream)}_{self.count:04d}_{label}"
        path, n = self.folder / f"{base}{CLIP_SUFFIX}", 1
        while path.exists() or path.with_suffix(".json").exists():
            path, n = self.folder / f"{base}-{n}{CLIP_SUFFIX}", n + 1
        return path

    def segment_end(self) -> None:
        """The segment ended (after ``tracker.close()``): nothing kept belongs to a later event."""
        self.kept.clear()
        self._abort()

    def close(self) -> None:
        self.segment_end()

    def _abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
        self.writer, self.key = None, None


def _write_json(path: Path, record: dict) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(dumps(record) + "\n")
    os.replace(tmp, path)
