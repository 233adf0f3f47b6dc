"""Where a watch gets its frames: files, directories, cameras, network streams, arrays, iterators.

Each source runs in its own reader thread (OpenCV releases the GIL while it decodes, so several
streams decode in parallel) and hands ``FrameBatch``es to the watcher through a small bounded
queue. What happens when the queue is full depends on the source:

- a file read as fast as it decodes waits (every frame is classified);
- a live source (camera, network, a file paced with ``realtime``) never waits: a frame that finds
  the queue full is dropped before the model and counted, so a slow device shows up as
  ``dropped_frames`` instead of an ever-growing delay or memory.

A network stream that drops is reopened with bounded retries (``Dropped`` then ``Resumed``
markers, logged); when the retries are spent it ends with an error, never an exception in the
watcher. Every frame carries a timestamp whose basis the results name (see ``TIME_BASES``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FvdeployError, VideoError
from ..io.video import VideoDecodeReport, VideoInfo, find_videos, open_capture

import cv2  # noqa: E402  (after io.video, which quietens FFmpeg before cv2 is first imported)

log = logging.getLogger(__name__)

# Where a frame's seconds come from, named in every result:
#   stream: the container's or stream's presentation timestamps (a file: seconds from its start;
#           a live source: offsets from its first frame, placed on the watch clock)
#   fps:    frame index / frame rate (the source has no usable timestamps)
#   clock:  arrival time on the watch clock, seconds since the watch started
#   None:   no frame rate and no timestamps (an array without fps): seconds are null
TIME_BASES = ("stream", "fps", "clock")
URL_PATTERN = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
FILE_BATCH = 8  # frames per queue item for files read as fast as they decode
_END = object()


def redact(url: str) -> str:
    """A URL without its password (``rtsp://user:secret@host`` -> ``rtsp://user:***@host``)."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^/@:]*):[^/@]*@", r"\1:***@", url)


def _fourcc(cap: cv2.VideoCapture) -> str:
    v = int(cap.get(cv2.CAP_PROP_FOURCC))
    return "".join(chr((v >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ")


# -- what the user named ---------------------------------------------------------------------------
@dataclass
class StreamSpec:
    """One source to watch. ``kind``: file | camera | network | array | iterator."""

    name: str
    kind: str
    target: Any
    error: str | None = None  # known before opening (e.g. an empty directory)
    loops: int = 1  # files: play this many times back to back (benchmarks)

    @property
    def live(self) -> bool:
        return self.kind in ("camera", "network")


def resolve_sources(sources: Iterable[Any]) -> list[StreamSpec]:
    """Expand what the user named into streams: a directory becomes its video files (sorted), a
    URL a network stream, a bare integer (that is not an existing file) a camera index."""
    specs: list[StreamSpec] = []
    for src in sources:
        if isinstance(src, StreamSpec):
            specs.append(src)
        elif isinstance(src, np.ndarray):
            specs.append(StreamSpec("<array>", "array", src))
        elif isinstance(src, bool):
            raise FvdeployError(f"cannot watch {src!r}: pass a path, URL, camera index, array or iterator of frames")
        elif isinstance(src, int):
            specs.append(StreamSpec(f"camera:{src}", "camera", src))
        elif isinstance(src, (str, Path)):
            text = str(src)
            path = Path(text)
            if URL_PATTERN.match(text) and not path.exists():
                specs.append(StreamSpec(redact(text), "network", text))
            elif text.isdigit() and not path.exists():
                specs.append(StreamSpec(f"camera:{int(text)}", "camera", int(text)))
            elif path.is_dir():
                videos = find_videos(path)
                if not videos:
                    specs.append(StreamSpec(text, "file", text, error=f"{text}: directory contains no video files"))
                specs.extend(StreamSpec(str(v), "file", str(v)) for v in videos)
            else:
                specs.append(StreamSpec(text, "file", text))
        elif isinstance(src, Iterable):
            specs.append(StreamSpec("<iterator>", "iterator", src))
        else:
            raise FvdeployError(f"cannot watch a {type(src).__name__}: pass a path, URL, camera index, array "
                                "or iterator of frames")
    return specs


# -- what readers hand over ------------------------------------------------------------------------
@dataclass
class FrameBatch:
    frames: np.ndarray  # uint8 [k, H, W, 3] in the stream's colour order
    source_index: np.ndarray  # int64 [k]: the frame's number in the source (counts across reconnects)
    seconds: np.ndarray  # float64 [k]: timestamps in the stream's time basis (nan: none)
    arrival: np.ndarray  # float64 [k]: time.perf_counter() when the frame was read

    def part(self, start: int, stop: int) -> "FrameBatch":
        return FrameBatch(self.frames[start:stop], self.source_index[start:stop], self.seconds[start:stop],
                          self.arrival[start:stop])


@dataclass
class Dropped:
    """A live stream stopped delivering; the reader is reconnecting."""

    reason: str
    at: float  # perf_counter


@dataclass
class Resumed:
    """The stream is back; frames after this marker start a new segment."""

    at: float
    attempts: int


@dataclass
class Finished:
    error: str | None = None
    partial: str | None = None  # a file that ended early (truncated or corrupt)


Marker = Dropped | Resumed | Finished


@dataclass
class ReaderOptions:
    realtime: bool = False  # pace files at their frame rate, like a camera (and drop when behind)
    fps: float | None = None  # overrides the frame rate the source announces
    color: str = "bgr"
    queue_frames: int = 32  # frames the queue holds (files wait; live sources drop beyond it)
    retries: int = 5  # reconnection attempts for a dropped network stream or camera
    retry_delay_s: float = 1.0  # first wait; doubles per attempt, at most 10 s
    open_timeout_s: float = 10.0  # network: connection and read timeouts


@dataclass
class StreamStats:
    frames: int = 0  # delivered to the queue
    dropped: int = 0  # live frames dropped because the queue was full
    reconnects: int = 0
    extra: dict = field(default_factory=dict)


# -- readers ---------------------------------------------------------------------------------------
class StreamReader:
    """Open a source and run it in a daemon thread. ``open()`` raises a one-line VideoError;
    ``take()`` returns what is queued (non-blocking); ``stop()`` ends the thread and joins it."""

    def __init__(self, spec: StreamSpec, options: ReaderOptions, clock0: float, wake: threading.Event) -> None:
        self.spec, self.options, self.clock0, self.wake = spec, options, clock0, wake
        self.live = spec.live or (options.realtime and spec.kind in ("file", "array", "iterator"))
        self.fps: float | None = None
        self.basis: str | None = None
        self.width = self.height = 0
        self.stats = StreamStats()
        self._items: deque = deque()
        self._queued_frames = 0
        self._lock = threading.Condition()
        self._stop = threading.Event()  # hard stop: drop what is left
        self._finish = threading.Event()  # wind down: stop reading, then report Finished (set by stop too)
        self._thread: threading.Thread | None = None
        self._cap: cv2.VideoCapture | None = None
        self._prefetch: list[tuple[np.ndarray, float, float]] = []  # (frame, raw ms, arrival) read by open()
        self._info: VideoInfo | None = None
        self._iter: Iterator | None = None

    # -- opening -------------------------------------------------------------------------------
    def open(self) -> "StreamReader":
        spec, opts = self.spec, self.options
        if spec.error:
            raise VideoError(spec.error)
        if spec.kind in ("file", "camera", "network"):
            self._cap = self._open_capture()
            announced = self._cap.get(cv2.CAP_PROP_FPS)
            self.fps = opts.fps or (float(announced) if announced and np.isfinite(announced) and 0 < announced < 1000 else None)
            self._prefetch = [f for f in (self._read_one() for _ in range(2)) if f is not None]
            if not self._prefetch:
                self._cap.release()
                raise VideoError(f"{spec.name}: no frames could be decoded")
            frame = self._prefetch[0][0]
            self.height, self.width = frame.shape[:2]
            self.basis = self._choose_basis()
        elif spec.kind == "array":
            frames = spec.target
            if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
                raise VideoError(f"array: frames must be uint8 [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
            if len(frames) == 0:
                raise VideoError("array: zero frames")
            self.fps = opts.fps
            self.height, self.width = frames.shape[1:3]
            self.basis = "fps" if self.fps else None
        else:
            self._iter = iter(spec.target)
            self.fps = opts.fps
            self.basis = "fps" if self.fps else "clock"
        return self

    def _open_capture(self) -> cv2.VideoCapture:
        spec, opts = self.spec, self.options
        if spec.kind == "file":
            cap, self._info = open_capture(spec.target)  # one-line errors: missing, unreadable, not a video
            return cap
        if spec.kind == "camera":
            cap = cv2.VideoCapture(int(spec.target))
            if not cap.isOpened():
                cap.release()
                raise VideoError(f"{spec.name}: camera could not be opened (no such device, or it is busy)")
            return cap
        ms = int(opts.open_timeout_s * 1000)
        cap = cv2.VideoCapture(spec.target, cv2.CAP_FFMPEG,
                               [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        if not cap.isOpened():
            cap.release()
            raise VideoError(f"{spec.name}: cannot open the stream (unreachable, refused, or not a video stream)")
        return cap

    def _read_one(self) -> tuple[np.ndarray, float, float] | None:
        ok, frame = self._cap.read()
        if not ok or frame is None:
            return None
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        return frame, float(self._cap.get(cv2.CAP_PROP_POS_MSEC)), time.perf_counter()

    def _choose_basis(self) -> str | None:
        """Stream timestamps when they advance between the first frames (MJPEG over HTTP has none:
        FFmpeg invents them from a guessed rate), else frame index / fps for files, else the clock."""
        has_pts = len(self._prefetch) == 2 and self._prefetch[1][1] > self._prefetch[0][1] >= 0
        if self.spec.kind == "network" and _fourcc(self._cap).upper() in ("MJPG", "MJPEG"):
            has_pts = False
        if has_pts:
            return "stream"
        if self.spec.kind == "file":
            return "fps" if self.fps else None
        return "clock"

    # -- the thread ----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"fvdeploy-watch:{self.spec.name}"[:60])
        self._thread.start()

    def finish(self) -> None:
        """Stop reading new frames; what is queued is still delivered, then Finished."""
        self._finish.set()

    def stop(self) -> None:
        self._stop.set()
        self._finish.set()
        with self._lock:
            self._lock.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=15)
        if self._cap is not None and (self._thread is None or not self._thread.is_alive()):
            self._cap.release()

    @property
    def has_items(self) -> bool:
        return bool(self._items)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            if self.spec.kind == "array":
                self._run_array()
            elif self.spec.kind == "iterator":
                self._run_iterator()
            else:
                partial = self._run_capture()
                self._put(Finished(partial=partial))
                return
            self._put(Finished())
        except VideoError as e:
            self._put(Finished(error=str(e)))
        except Exception as e:  # a bug must end this stream, not the watcher: logged, reported
            log.exception("reader of %s failed", self.spec.name)
            self._put(Finished(error=f"{self.spec.name}: internal error {type(e).__name__}: {e}"))

    def _put(self, item) -> bool:
        """Queue a batch or marker; False when the watch is stopping. Live sources drop frames that
        find the queue full; files wait for room."""
        with self._lock:
            if isinstance(item, FrameBatch):
                k = len(item.frames)
                while self._queued_frames + k > self.options.queue_frames and self._queued_frames > 0:
                    if self._stop.is_set():
                        return False
                    if self.live:
                        self.stats.dropped += k
                        return True
                    self._lock.wait(0.1)
                self._queued_frames += k
                self.stats.frames += k
            if self._stop.is_set():
                return False
            self._items.append(item)
        self.wake.set()
        return True

    def take(self, max_frames: int) -> tuple[list[FrameBatch], Marker | None]:
        """Up to ``max_frames`` queued frames, and the marker that follows them, if it is next."""
        out: list[FrameBatch] = []
        n = 0
        with self._lock:
            while self._items and n < max_frames:
                item = self._items[0]
                if not isinstance(item, FrameBatch):
                    if out:
                        break
                    self._items.popleft()
                    self._lock.notify_all()
                    return out, item
                room = max_frames - n
                if len(item.frames) > room:
                    out.append(item.part(0, room))
                    self._items[0] = item.part(room, len(item.frames))
                    n += room
                    self._queued_frames -= room
                    break
                self._items.popleft()
                out.append(item)
                n += len(item.frames)
                self._queued_frames -= len(item.frames)
            marker = None
            if self._items and not isinstance(self._items[0], FrameBatch):
                marker = self._items.popleft()
            self._lock.notify_all()
        return out, marker

    def _pace(self, index: int, t0: float) -> float:
        """Wait until frame ``index`` is due at the stream's rate (``realtime``); the arrival time."""
        if not self.options.realtime:
            return time.perf_counter()
        due = t0 + index / (self.fps or 30.0)
        delay = due - time.perf_counter()
        if delay > 0:
            self._finish.wait(delay)
        return max(due, time.perf_counter())

    def _emit(self, frames: list[np.ndarray], index0: int, seconds: list[float], arrival: list[float]) -> bool:
        if not frames:
            return True
        shape = frames[0].shape
        for f in frames:
            if f.shape != shape:
                raise VideoError(f"{self.spec.name}: frame size changed from {shape[1]}x{shape[0]} to "
                                 f"{f.shape[1]}x{f.shape[0]} (size changes are not supported)")
        return self._put(FrameBatch(np.stack(frames), np.arange(index0, index0 + len(frames), dtype=np.int64),
                                    np.asarray(seconds, np.float64), np.asarray(arrival, np.float64)))

    def _run_capture(self) -> str | None:
        spec = self.spec
        batch = 1 if self.live else FILE_BATCH
        index = 0  # frames delivered, across reconnects and loops
        seg_pts0 = seg_clock = None  # live "stream" basis: first pts and its arrival, per connection
        prev_seconds = -np.inf
        offset_s, loop = 0.0, 1
        report = VideoDecodeReport(self._info) if self._info is not None else None
        frames, seconds, arrival = [], [], []
        t0 = time.perf_counter()
        shape = self._prefetch[0][0].shape
        while not self._finish.is_set():
            item = self._prefetch.pop(0) if self._prefetch else self._read_one()
            if item is None:
                if not self._emit(frames, index - len(frames), seconds, arrival):
                    return None
                frames, seconds, arrival = [], [], []
                if spec.kind == "file":
                    if loop < spec.loops:  # benchmarks: the same file again, time running on
                        loop += 1
                        offset_s = prev_seconds + 1.0 / (self.fps or 30.0)
                        self._cap.release()
                        self._cap, _ = open_capture(spec.target)
                        continue
                    if report is not None and spec.loops == 1:
                        report.frames = index
                        report.finish()
                        return report.message if report.partial else None
                    return None
                if not self._reconnect(index):
                    return None
                seg_pts0 = None
                continue
            frame, ms, arrived = item
            if frame.shape != shape:
                raise VideoError(f"{spec.name}: frame {index} has size {frame.shape[1]}x{frame.shape[0]}, "
                                 f"earlier frames {shape[1]}x{shape[0]} (size changes are not supported)")
            if self.options.realtime and spec.kind == "file":
                arrived = self._pace(index, t0)
            s = self._seconds(index, ms, arrived, offset_s)
            if self.basis == "stream" and spec.live:
                if seg_pts0 is None:
                    seg_pts0, seg_clock = ms, arrived - self.clock0
                s = seg_clock + (ms - seg_pts0) / 1000.0
            if s <= prev_seconds:  # non-increasing timestamps (a stream restarting its clock): keep order
                s = prev_seconds + 1.0 / (self.fps or 1000.0)
            prev_seconds = s
            frames.append(frame)
            seconds.append(s)
            arrival.append(arrived)
            index += 1
            if len(frames) >= batch:
                if not self._emit(frames, index - len(frames), seconds, arrival):
                    return None
                frames, seconds, arrival = [], [], []
        return None

    def _seconds(self, index: int, ms: float, arrived: float, offset_s: float) -> float:
        if self.basis == "stream":
            return offset_s + ms / 1000.0
        if self.basis == "fps":
            return index / self.fps
        if self.basis == "clock":
            return arrived - self.clock0
        return float("nan")

    def _reconnect(self, index: int) -> bool:
        """Reopen a dropped live source with bounded, logged retries. False when stopping; raises
        a one-line VideoError when every attempt failed."""
        spec, opts = self.spec, self.options
        dropped_at = time.perf_counter()
        if not self._put(Dropped(f"{spec.name}: the stream stopped after {index} frames", dropped_at)):
            return False
        self._cap.release()
        delay = opts.retry_delay_s
        for attempt in range(1, opts.retries + 1):
            log.warning("%s: stream dropped; reconnecting (attempt %d of %d) in %.1f s", spec.name, attempt, opts.retries, delay)
            if self._finish.wait(delay):
                return False
            try:
                self._cap = self._open_capture()
            except VideoError as e:
                log.warning("%s", e)
                delay = min(10.0, delay * 2)
                continue
            first = self._read_one()
            if first is None:
                self._cap.release()
                delay = min(10.0, delay * 2)
                continue
            self._prefetch = [first]
            self.stats.reconnects += 1
            log.warning("%s: reconnected after %.1f s (attempt %d)", spec.name, time.perf_counter() - dropped_at, attempt)
            return self._put(Resumed(first[2], attempt))  # back when its first frame arrived
        raise VideoError(f"{spec.name}: the stream dropped and {opts.retries} reconnection attempts failed")

    def _run_array(self) -> None:
        frames = self.spec.target
        t0 = time.perf_counter()
        batch = 1 if self.live else FILE_BATCH
        for start in range(0, len(frames), batch):
            if self._finish.is_set():
                return
            chunk = frames[start : start + batch]
            arrival = [self._pace(start + j, t0) for j in range(len(chunk))]
            seconds = [(start + j) / self.fps if self.fps else float("nan") for j in range(len(chunk))]
            if not self._emit(list(chunk), start, seconds, arrival):
                return
        if self.spec.loops > 1:
            raise VideoError("array: loops apply to files only")

    def _run_iterator(self) -> None:
        """Frames that come fast (a generator over stored frames) go in batches; a frame that took a
        while to come (a live loop) goes at once, so a live iterator gains no delay."""
        t0 = time.perf_counter()
        shape = None
        frames, seconds, arrival = [], [], []
        index = 0
        it = iter(self._iter)
        while not self._finish.is_set():
            asked = time.perf_counter()
            frame = next(it, _END)
            if frame is _END:
                break
            waited = time.perf_counter() - asked
            frame = np.asarray(frame)
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
                raise VideoError(f"stream frame {index}: frames must be uint8 [H, W, 3], got {frame.dtype} {tuple(frame.shape)}")
            if shape is None:
                shape = frame.shape
                self.height, self.width = shape[:2]
            arrived = self._pace(index, t0) if self.options.realtime else time.perf_counter()
            frames.append(frame)
            seconds.append(index / self.fps if self.fps else arrived - self.clock0)
            arrival.append(arrived)
            index += 1
            if len(frames) >= FILE_BATCH or waited > 0.005 or self.live:
                if not self._emit(frames, index - len(frames), seconds, arrival):
                    return
                frames, seconds, arrival = [], [], []
        if not self._emit(frames, index - len(frames), seconds, arrival):
            return
        if shape is None and not self._finish.is_set():
            raise VideoError("stream: zero frames")
