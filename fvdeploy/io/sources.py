"""Every way frames come in, behind one contract: the frame source.

``open_source(x)`` takes a path, a URL (http/https/file: a finite file; rtsp/rtmp/udp/srt/...: a
live stream), a camera index, a ``uint8`` array or an iterator of frames, and returns a
:class:`FrameSource`: files and cameras decoded by OpenCV (:class:`OpenCVSource`), network URLs by
PyAV (:class:`fvdeploy.io.pyav.PyAVSource`, each frame's own timestamp; why there, see that
module), files on the GPU by NVDEC, arrays and iterators as they are:

- ``batches(max_frames)`` yields :class:`FrameBatch`\\ es of ``uint8 [k, H, W, 3]`` frames (BGR from
  OpenCV, RGB CUDA tensors from NVDEC, arrays and iterators in the ``color`` given) with each
  frame's number in the source and its **presentation time in seconds**; a live source that drops
  and comes back also yields :class:`Dropped` / :class:`Resumed` markers;
- ``fps`` is the rate the container declares (a VFR file's times come from its timestamps, never
  from ``frame / fps``); ``live`` (drop frames when behind, reconnect) and ``rereadable``
  (``read_range(start, stop)`` decodes frames again: the bounded-memory path's second look);
- what was read: ``frames_read``, ``lost_frames``, ``warnings`` (one line each: where decoding
  failed and resumed, and how many frames were lost), ``partial`` (frames were lost), and
  ``seconds(i)``, the presentation time of frame ``i`` (``i == frames_read``: the end of the last
  frame, i.e. its time plus its duration).

Times (``time_basis``): ``"stream"`` for a file's own timestamps: seconds are presentation
timestamps minus the container's start time (ffprobe's ``format=start_time``), the origin
``ffmpeg -ss`` uses, so a file whose audio starts before its video has its first frame at a
positive time; for a
live source, its timestamps placed on this source's clock at each (re)connection, so that times
keep increasing across drops; ``"fps"``, ``i / fps`` for arrays and iterators given a frame rate
(and files whose container carries no timestamps, e.g. a raw ``.h264`` stream); ``"clock"``,
arrival time (a live source without timestamps, e.g. MJPEG over HTTP); ``None``, no times at all
(seconds are null).

Damage: decoding goes on past a damaged stretch, as ffmpeg does: a failed read is retried up to
``DAMAGE_RETRIES`` times; frames that come after it are kept, and the frames lost are counted from
the timestamps (the gap divided by the usual frame duration). A container's frame count is only a
hint and never sets ``partial`` (an MP4/MOV whose boxes run past the file's end is cut short: that
does). A finite source (a file, or a file behind an http(s) URL) ends at
its end; only live sources reconnect. A source that ended early without damage (a server that
stalled, a file that grew while it was read) sets ``incomplete``, hence ``partial``, with a warning.
What is not supported says so: a DASH manifest is a one-line error naming DASH; HDR video (PQ or HLG
transfer, BT.2020 primaries) is decoded without tone mapping, with a warning.

:class:`FrameReader` runs a source in one thread behind a bounded queue (counted in frames):
decoding overlaps compute (OpenCV and NVDEC release the GIL). A finite source waits for room; a
live one drops the frames that find the queue full, and counts them.
"""

from __future__ import annotations

import base64
import errno
import logging
import math
import os
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from array import array
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2  # noqa: E402,I001  (after io.video, which quietens FFmpeg)
import numpy as np

from ..errors import FvdeployError, VideoError
from .names import DECODERS
from .urls import LIVE_SCHEMES, URL_PATTERN, is_live_url, is_network_url, is_url, redact  # noqa: F401 (moved; still importable here)
from .video import check_path, declared_fps, frame_fingerprint, open_capture

log = logging.getLogger(__name__)

DAMAGE_RETRIES = 64  # failed reads in a row before a finite source counts as ended
SKIP_FRAMES = 4  # a jump of this many frame durations in a constant-rate stream is a damaged stretch
TIME_BASES = ("stream", "fps", "clock")
# FFmpeg's AVColorTransferCharacteristic / AVColorPrimaries codes (libavutil/pixfmt.h) that mark HDR video
HDR_TRANSFERS = {16: "PQ (SMPTE 2084)", 18: "HLG (ARIB STD-B67)"}
BT2020_PRIMARIES = 9


def not_dash(target: str, shown: str) -> None:
    """A one-line VideoError for a DASH manifest (``.mpd``): DASH is not supported."""
    if urllib.parse.urlsplit(target).path.lower().endswith(".mpd") or (
        not is_url(target) and target.lower().endswith(".mpd")
    ):
        raise VideoError(
            f"{shown}: a DASH manifest (.mpd); DASH is not supported: give the stream's HLS playlist (.m3u8), "
            "an RTSP URL or a video file"
        )


def hdr_warning(shown: str, transfer: int | None, primaries: int | None) -> str | None:
    """The warning for HDR-tagged video (PQ or HLG transfer, or BT.2020 primaries), else None:
    frames are converted to 8-bit BGR as tagged, with no tone mapping."""
    tags = [HDR_TRANSFERS[transfer]] if transfer in HDR_TRANSFERS else []
    if primaries == BT2020_PRIMARIES:
        tags.append("BT.2020 primaries")
    if not tags:
        return None
    return (
        f"{shown}: HDR video ({', '.join(tags)}) is not tone-mapped: frames are converted to 8-bit as if SDR, "
        "so colours and brightness differ from what an HDR display shows"
    )


def container_facts(path: str) -> tuple[float, str | None]:
    """What OpenCV does not tell about a file, read from its header with PyAV: the seconds from the
    container's start time (ffprobe's ``format=start_time``) to the video stream's start (OpenCV's
    times count from the latter; an audio-first file's video starts later), and an HDR warning.
    (0.0, None) where PyAV cannot open the file."""
    try:
        import av

        with av.open(path) as container:
            stream = container.streams.video[0]
            shift = 0.0
            if container.start_time is not None and stream.start_time is not None and stream.time_base:
                shift = max(0.0, float(stream.start_time * stream.time_base) - container.start_time / 1e6)
            cc = stream.codec_context
            return shift, hdr_warning(path, cc.color_trc, cc.color_primaries)
    except Exception:  # noqa: BLE001  (any file PyAV cannot parse: OpenCV's own times stand)
        return 0.0, None


# -- what a source hands over ----------------------------------------------------------------------
@dataclass
class FrameBatch:
    """Consecutive frames of one source."""

    frames: Any  # uint8 [k, H, W, 3]: numpy (OpenCV, arrays, iterators) or a CUDA tensor (NVDEC)
    index: np.ndarray  # int64 [k]: each frame's number in the source (counts across reconnects)
    pts: np.ndarray  # float64 [k]: presentation time in seconds (nan: the source has none)
    arrival: np.ndarray  # float64 [k]: time.perf_counter() when the frame was read

    def __len__(self) -> int:
        return len(self.frames)

    def part(self, start: int, stop: int) -> "FrameBatch":
        return FrameBatch(
            self.frames[start:stop], self.index[start:stop], self.pts[start:stop], self.arrival[start:stop]
        )


@dataclass
class Dropped:
    """A live source stopped delivering; it is reconnecting."""

    reason: str
    at: float  # perf_counter


@dataclass
class Resumed:
    """A live source is back; frames after this marker start a new segment."""

    at: float  # perf_counter of the first frame after the drop
    attempts: int
    pts: float  # that time in the source's time basis


Marker = Dropped | Resumed


def check_fps(fps: Any) -> float | None:
    """``fps`` must be None or a finite number > 0 (a VideoError otherwise)."""
    if fps is None:
        return None
    if (
        isinstance(fps, bool)
        or not isinstance(fps, (int, float, np.integer, np.floating))
        or not math.isfinite(fps)
        or fps <= 0
    ):
        raise VideoError(f"fps must be a finite number > 0, or None for no times; got {fps!r}")
    return float(fps)


def check_frames(frames: Any, where: str, single: bool = False) -> np.ndarray:
    """The API's boundary for in-memory frames: ``uint8 [T, H, W, 3]`` or grey ``[T, H, W]``
    (``single``: one frame, ``[H, W, 3]`` or ``[H, W]``), returned as ``[T, H, W, 3]``."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise VideoError(
            f"{where}: frames must be a uint8 numpy array, got {getattr(frames, 'dtype', type(frames).__name__)}"
        )
    if single:
        frames = frames[None]
    layout = "one frame is [H, W, 3] (or [H, W] grey)" if single else "a video is [T, H, W, 3] (or [T, H, W] grey)"
    if frames.ndim == 3:
        if frames.shape[-1] == 3 and not single:
            raise VideoError(
                f"{where}: an array of shape {tuple(frames.shape)} is ambiguous (one [H, W, 3] image, or "
                f"{frames.shape[0]} grey frames 3 pixels wide); {layout}: pass image[None] for one frame"
            )
        frames = frames[..., None]
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3):
        shape = tuple(frames.shape[1:]) if single else tuple(frames.shape)
        raise VideoError(f"{where}: got shape {shape}; {layout}")
    if frames.shape[0] == 0:
        raise VideoError(f"{where}: zero frames (shape {tuple(frames.shape)})")
    if 0 in frames.shape[1:3]:
        raise VideoError(
            f"{where}: zero-sized frames {frames.shape[2]}x{frames.shape[1]} (shape {tuple(frames.shape)})"
        )
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return frames


# -- the contract ----------------------------------------------------------------------------------
class FrameSource:
    """Where frames come from (see the module docstring). Subclasses implement ``_batches``.

    Frames are ``uint8 [k, H, W, 3]`` in ``color`` order, times in seconds. ``width``/``height``
    in pixels, ``fps`` the declared rate (None when unknown), ``frame_count_hint`` the
    container's count (0 when unknown; never trusted). After reading: ``frames_read``,
    ``lost_frames``, ``extra_decoded`` (frames decoded again by ``read_range``),
    ``decode_seconds`` (wall-clock seconds spent decoding), ``reconnects`` and ``warnings``.
    Constructors raise ``VideoError`` (one line) for what cannot be opened; ``batches`` raises
    ``VideoError`` when no frame decodes at all."""

    kind = ""  # file | url | camera | array | iterator
    decoder = ""  # opencv | nvdec | array | iterator (reported in results; consumers read the properties below)
    color = "bgr"
    rereadable = False
    # How consumers read this source (FrameReader, the engine), so none of them switches on names:
    threaded = False  # decoding runs in a thread of its own (it releases the GIL: OpenCV, NVDEC)
    host_frames = True  # batches are numpy arrays in host memory (NVDEC's are CUDA tensors)
    queue_batches = 3  # decoded batches that may wait for the model

    def __init__(self, name: str, *, fps: float | None = None, live: bool = False) -> None:
        self.name = name
        self.path: str | None = None  # what results name: the path or the (redacted) URL
        self.fps = fps
        self.live = live
        self.time_basis: str | None = "fps" if fps else None
        self.frame_count_hint = 0
        self.width = self.height = 0
        self.frames_read = 0
        self.lost_frames = 0
        self.extra_decoded = 0  # frames decoded again (read_range)
        self.decode_seconds = 0.0
        self.reconnects = 0
        self.incomplete = False  # ended early without damage (a stalled server, a file that grew): partial
        self.warnings: list[str] = []
        self.record = False  # keep every frame's time (and a checksum) for seconds(i) and read_range
        self.stopping = threading.Event()  # set by the reader: stop reading (and stop reconnecting)
        self._pts = array("d")
        self._fingerprints = array("I")

    @property
    def frame_bytes(self) -> int:
        return self.width * self.height * 3

    @property
    def partial(self) -> bool:
        """Frames were lost (damage, or a source that ended before what it reliably announced, or
        stalled, or grew while it was read: ``incomplete``)."""
        return self.lost_frames > 0 or self.incomplete

    def describe(self) -> str:
        return self.path or self.name

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        log.debug("%s", message)

    # -- reading -----------------------------------------------------------------------------------
    def batches(self, max_frames: int = 32) -> Iterator[FrameBatch | Marker]:
        """Every frame in order, in batches of at most ``max_frames``, and markers (live sources).
        Raises VideoError when the source yields no frame at all."""
        for item in self._timed(self._batches(max_frames)):
            if isinstance(item, FrameBatch):
                self.frames_read += len(item)
                if self.record:
                    self._pts.extend(item.pts.tolist())
                    if self.rereadable and isinstance(item.frames, np.ndarray):
                        self._fingerprints.extend(frame_fingerprint(f) for f in item.frames)
            yield item
        if self.frames_read == 0:
            raise VideoError(f"{self.describe()}: no frames could be decoded (zero frames, or a corrupt video)")

    def _timed(self, it: Iterator) -> Iterator:
        while True:
            t0 = time.perf_counter()
            item = next(it, None)
            self.decode_seconds += time.perf_counter() - t0
            if item is None:
                return
            yield item

    def _batches(self, max_frames: int) -> Iterator[FrameBatch | Marker]:
        raise NotImplementedError

    def read_range(self, start: int, stop: int, max_frames: int = 32) -> Iterator[FrameBatch]:
        """Frames ``[start, stop)`` again (only where ``rereadable``)."""
        raise VideoError(f"{self.describe()}: this source cannot be read twice")

    def close(self) -> None:
        """Release what the source holds (also done when ``batches`` ends)."""

    def _ask_size(self, frame_check: Callable[[int, int, str], None] | None) -> None:
        """Let ``frame_check`` refuse this source's ``width`` x ``height`` (when both are known);
        the source is closed before its refusal goes up."""
        if frame_check is None or not (self.width and self.height):
            return
        try:
            frame_check(self.width, self.height, self.describe())
        except BaseException:
            self.close()
            raise

    # -- times -------------------------------------------------------------------------------------
    def seconds(self, frame: int) -> float | None:
        """Presentation time of frame ``frame`` in seconds (``record`` must be on); for
        ``frame == frames_read`` the end of the last frame. None without times."""
        n = len(self._pts)
        if self.time_basis is None or n == 0:
            return None
        if frame < n:
            value = self._pts[frame]
        else:
            value = self._pts[n - 1] + self.last_frame_duration()
        return None if math.isnan(value) else round(value, 6)

    def last_frame_duration(self) -> float:
        """The last frame's duration: the step before it, else one frame at the declared rate."""
        n = len(self._pts)
        if n >= 2 and self._pts[n - 1] > self._pts[n - 2]:
            return self._pts[n - 1] - self._pts[n - 2]
        return 1.0 / self.fps if self.fps else 0.0


class _Clock:
    """Keeps a source's times increasing without moving the frames that are on time: a stale or
    reordered frame (a damaged stretch returns one late) is placed just after the previous frame;
    two frames in a row behind the previous one and advancing mean the stream restarted its clock,
    and from there on its times continue one usual frame duration after the previous frame."""

    def __init__(self, fps: float | None) -> None:
        self.prev = -math.inf
        self.fallback = 1.0 / fps if fps else 1e-3
        self.steps: list[float] = []
        self.offset = 0.0
        self.behind: float | None = None  # the last frame's own time when it was placed behind

    def usual_step(self) -> float:
        return float(np.median(self.steps)) if self.steps else self.fallback

    def place(self, t: float) -> float:
        t += self.offset
        if t <= self.prev:
            if self.behind is None or t <= self.behind:
                self.behind = t
                self.prev += 1e-6
                return self.prev
            self.offset += self.prev + self.usual_step() - t  # restarted: continue from here
            t = self.prev + self.usual_step()
        elif math.isfinite(self.prev) and self.behind is None:
            self.steps = (self.steps + [t - self.prev])[-32:]
        self.behind = None
        self.prev = t
        return t


@dataclass
class _Damage:
    """Frames lost in a damaged stretch, counted from the timestamp gaps of the frames decoded
    after it (a decoder first returns the frames it still held, so the gap shows a little later)."""

    at: int  # frames delivered before the failed reads
    time: float  # seconds, where the first lost frame would have been
    step: float  # the usual frame duration before the damage
    lost: int = 0
    frames_left: int = 32  # frames after the failure that are searched for gaps
    confirm: bool = False  # a jump without a failed read: real only if the usual rate resumes after it
    confirmed: bool = True

    def see(self, gap: float) -> bool:
        """One more frame, ``gap`` seconds after the previous one; True when the count is final."""
        if self.confirm:
            self.confirmed = self.confirmed and math.isfinite(gap) and abs(gap / self.step - 1) < 0.1
        elif math.isfinite(gap) and self.step > 0 and gap > 1.5 * self.step:
            self.lost += round(gap / self.step) - 1
        self.frames_left -= 1
        return self.frames_left <= 0 or not self.confirmed


# -- OpenCV: files, URLs, cameras ------------------------------------------------------------------
class OpenCVSource(FrameSource):
    """A file, URL or camera decoded by OpenCV's FFmpeg backend, timestamps from ``CAP_PROP_POS_MSEC``.

    ``target``: a path, a URL or a camera index. ``live``: default from the kind (cameras and
    rtsp/rtmp/udp/srt URLs). ``fps`` overrides the declared rate. ``threads``: FFmpeg decoding
    threads (0: FFmpeg's choice). ``retries``/``retry_delay_s``: reconnection of a live source
    (delays doubling, at most 10 s); ``open_timeout_s``: opening and reading timeout for URLs.
    Batches are BGR. Raises ``VideoError`` when the file is missing, unreadable or not a video,
    the URL or camera cannot be opened, or the first frames do not decode."""

    decoder = "opencv"
    threaded = True

    def __init__(
        self,
        target: str | int,
        *,
        name: str | None = None,
        live: bool | None = None,
        fps: float | None = None,
        threads: int = 0,
        retries: int = 5,
        retry_delay_s: float = 1.0,
        open_timeout_s: float = 10.0,
        loops: int = 1,
        frame_check: Callable[[int, int, str], None] | None = None,
    ) -> None:
        if isinstance(target, int):
            kind, shown = "camera", f"camera:{target}"
        elif is_url(str(target)) and not Path(str(target)).exists():
            kind, shown = "url", redact(str(target))
        else:
            kind, shown = "file", str(target)
        if kind != "camera":
            not_dash(str(target), shown)
        is_live = kind == "camera" or (kind == "url" and is_live_url(str(target)))
        super().__init__(name or shown, live=is_live if live is None else live)
        self.kind, self.target = kind, target
        self.path = shown if kind != "camera" else None
        self.threads, self.retries, self.retry_delay_s, self.open_timeout_s = (
            threads,
            retries,
            retry_delay_s,
            open_timeout_s,
        )
        self.loops = loops  # benchmarks: play a file this many times back to back
        self.rereadable = kind == "file"
        self.clock0 = time.perf_counter()
        self._cap = self._open()
        # OpenCV counts a file's times from its video stream's start: shift them to the container's
        # start (ffmpeg -ss's origin); and what OpenCV does not say: HDR, a file still being written
        self._shift, self._hdr = container_facts(str(target)) if kind == "file" else (0.0, None)
        self._size0 = _size_and_mtime(str(target)) if kind == "file" else None  # None: nothing to check
        self.fps = fps or declared_fps(self._cap.get(cv2.CAP_PROP_FPS))
        self.frame_count_hint = max(0, int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))) if kind != "camera" else 0
        self.width, self.height = (
            int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        if (
            live is None
            and kind == "url"
            and self.frame_count_hint <= 0
            and _fourcc(self._cap).upper() in ("MJPG", "MJPEG")
        ):
            self.live = True  # an IP camera's endless multipart JPEG stream over http, not a file
        self._ask_size(frame_check)  # before a frame is decoded: a tiny file of huge frames must not grow first
        # Two frames decide the time basis (and prove the source decodes at all).
        self._prefetch = [f for f in (self._read() for _ in range(2)) if f is not None]
        if not self._prefetch:
            self._cap.release()
            raise VideoError(f"{self.describe()}: no frames could be decoded (zero frames, or a corrupt video)")
        header = (self.width, self.height)
        self.height, self.width = self._prefetch[0][0].shape[:2]
        if header != (self.width, self.height):  # the header had no size, or not the decoded one
            self._ask_size(frame_check)
        self.time_basis = self._choose_basis()

    def _open(self) -> cv2.VideoCapture:
        if self.kind == "file":
            cap, _ = open_capture(str(self.target), self.threads)  # one-line errors: missing, unreadable, not a video
            return cap
        if self.kind == "camera":
            cap = cv2.VideoCapture(int(self.target))
            if not cap.isOpened():
                cap.release()
                raise VideoError(f"{self.name}: camera could not be opened (no such device, or it is busy)")
            return cap
        ms = int(self.open_timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        if self.threads > 0:
            params += [cv2.CAP_PROP_N_THREADS, self.threads]
        cap = cv2.VideoCapture(str(self.target), cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise VideoError(
                f"{self.name}: cannot open {'the stream' if self.live else 'this URL'} ({why_unopened(str(self.target))})"
            )
        return cap

    def _read(self) -> tuple[np.ndarray, float, float] | None:
        ok, frame = self._cap.read()
        if not ok or frame is None:
            return None
        if frame.ndim == 2:  # some backends give single-channel frames for grey video
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        return frame, float(self._cap.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0, time.perf_counter()

    def _choose_basis(self) -> str | None:
        """The stream's timestamps when they advance between the first frames; MJPEG over HTTP has
        none (FFmpeg invents them from a guessed rate), nor has a raw .h264 stream (all zero)."""
        p = self._prefetch
        has_pts = len(p) == 2 and p[1][1] > p[0][1] >= 0
        if self.kind == "url" and self.live and _fourcc(self._cap).upper() in ("MJPG", "MJPEG"):
            has_pts = False
        if has_pts or (len(p) == 1 and p[0][1] >= 0 and self.kind == "file"):
            return "stream"
        if self.live:
            return "clock"
        return "fps" if self.fps else None

    def _batches(self, max_frames: int) -> Iterator[FrameBatch | Marker]:
        batch = 1 if self.live else max_frames
        index = 0  # frames delivered, across reconnects and loops
        clock = _Clock(self.fps)
        offset, loop = 0.0, 1
        conn_pts0: float | None = None  # live, stream basis: first timestamp of this connection ...
        conn_at = 0.0  # ... and its place on this source's clock
        frames: list[np.ndarray] = []
        pts: list[float] = []
        arrival: list[float] = []
        shape = self._prefetch[0][0].shape
        failed_at: int | None = None  # frames delivered when the current run of failed reads began
        eof_wall = 0.0  # wall-clock time of that run's first failed read (a file's end, at the last run)
        fails = 0
        last_raw = -math.inf
        damage: _Damage | None = None  # a damaged stretch whose lost frames are being counted
        skip: _Damage | None = None  # a jump in a constant-rate stream, confirmed if the rate resumes
        try:
            while not self.stopping.is_set():
                item = self._prefetch.pop(0) if self._prefetch else self._read()
                if item is None:
                    fails += 1
                    if failed_at is None:
                        failed_at, eof_wall = index, time.time()
                    if fails <= (3 if self.live else DAMAGE_RETRIES):
                        continue  # damage or a passing glitch: ffmpeg reads on past it
                    if frames:
                        yield self._batch(frames, index, pts, arrival)
                        frames, pts, arrival = [], [], []
                    at_end = self.kind == "file" and not self.live and loop >= self.loops
                    missing = iso_bmff_missing_bytes(str(self.target)) if at_end else 0
                    if damage is not None and not missing:  # a cut file's last damage is its cut: said once, below
                        self._lost(damage)
                    damage = None
                    skip = None
                    if self.live:
                        if (yield from self._reconnect(index)):
                            fails, failed_at, conn_pts0, last_raw = 0, None, None, -math.inf
                            continue
                        return
                    if self.kind == "file" and loop < self.loops:  # benchmarks: the same file again, time running on
                        loop += 1
                        offset = clock.prev + clock.usual_step() - self._shift
                        self._cap.release()
                        self._cap = self._open()
                        fails, failed_at, last_raw = 0, None, -math.inf
                        continue
                    self._check_growth(index, eof_wall)
                    if missing:
                        self._cut_short(index, clock, missing)
                    return
                frame, raw, arrived = item
                if frame.shape != shape:  # OpenCV itself rescales a size change; a camera may not
                    raise VideoError(
                        f"{self.describe()}: frame {index} has size {frame.shape[1]}x{frame.shape[0]}, earlier "
                        f"frames {shape[1]}x{shape[0]} (a size change mid-video is not supported: split the file)"
                    )
                t = self._time(index, raw, arrived, offset, conn_pts0, conn_at)
                if self.live and self.time_basis == "stream" and conn_pts0 is None:
                    conn_pts0, conn_at = raw, arrived - self.clock0
                    t = conn_at
                if failed_at is not None:  # reads resumed after failing: count what the timestamps skip
                    if damage is not None:
                        self._lost(damage)
                    damage = _Damage(failed_at, clock.prev + clock.usual_step(), clock.usual_step())
                gap = raw - last_raw if self.time_basis == "stream" and raw > last_raw else math.nan
                if damage is not None and self.time_basis == "stream" and raw < last_raw:
                    damage.lost -= 1  # a frame counted in a gap came back late
                if damage is not None:
                    if damage.see(gap):
                        self._lost(damage)
                        damage = None
                elif skip is not None:
                    if skip.see(gap):
                        if skip.confirmed:
                            self._lost(skip)
                        skip = None
                elif self._skipped(gap, clock):  # no failed read, but a constant-rate stream jumped
                    skip = _Damage(
                        index, clock.prev + clock.usual_step(), clock.usual_step(), frames_left=2, confirm=True
                    )
                    skip.lost = round(gap / skip.step) - 1
                fails, failed_at, last_raw = 0, None, max(last_raw, raw)  # a stray early frame is no gap
                frames.append(frame)
                pts.append(clock.place(t))
                arrival.append(arrived)
                index += 1
                if len(frames) >= batch:
                    yield self._batch(frames, index, pts, arrival)
                    frames, pts, arrival = [], [], []
        finally:
            self._cap.release()
            if self._hdr is not None and self._hdr not in self.warnings:
                self.warn(self._hdr)

    def _check_growth(self, frames: int, eof_wall: float) -> None:
        """A file still being written when its end was read: another process has it open for
        writing, or it was modified after its end was reached (``eof_wall``, wall-clock seconds).
        What was read is then not the whole file: incomplete (partial), with a warning. A file that
        grew while it was read and was finished before its end was reached was read whole (FFmpeg
        reads on to the end there is), so it is not flagged."""
        if self._size0 is None:
            return
        writing = open_for_writing(str(self.target))
        now = _size_and_mtime(str(self.target))
        if writing:
            what = "the file is open for writing by another process (still being written?)"
        elif now is not None and now[1] / 1e9 >= eof_wall:
            what = "the file changed after its end was read (still being written?)"
        else:
            return
        self.incomplete = True
        self.warn(f"{self.describe()}: {what}: {frames} frames read, the rest is not in this result")

    def _cut_short(self, frames: int, clock: "_Clock", missing: int) -> None:
        """An MP4/MOV whose boxes run ``missing`` bytes past the end of the file was cut short (a copy
        or an upload that stopped, a recorder that died with its index written first): what was read
        is not the whole video, and the frames its index announces past that are lost. An edit list
        that trims frames (announced > presented) leaves the boxes whole and is never flagged."""
        self.incomplete = True
        lost = max(0, self.frame_count_hint - frames)
        self.lost_frames += lost
        end = clock.prev + clock.usual_step() if math.isfinite(clock.prev) else math.nan
        at = f" at {end:.2f} s" if math.isfinite(end) else ""
        announced = f"; {self.frame_count_hint} announced" if self.frame_count_hint else ""
        self.warn(
            f"{self.describe()}: the file is cut short ({missing} bytes of its last box are missing): it ends"
            f"{at} after {frames} frames{announced}"
        )

    def _time(
        self, index: int, raw: float, arrived: float, offset: float, conn_pts0: float | None, conn_at: float
    ) -> float:
        if self.time_basis == "stream":
            if self.live:
                return conn_at + (raw - conn_pts0) if conn_pts0 is not None else arrived - self.clock0
            return offset + raw + self._shift
        if self.time_basis == "fps":
            return index / self.fps if self.fps else math.nan
        if self.time_basis == "clock":
            return arrived - self.clock0
        return math.nan

    def _skipped(self, gap: float, clock: _Clock) -> bool:
        """A jump of at least ``SKIP_FRAMES`` frames in a stream that ran at its declared constant
        rate: the demuxer skipped a damaged stretch without a failed read (MPEG-TS resyncs so).
        A VFR stream (its usual step is not the declared rate's), or a phone's one- or two-frame
        hiccup, is never taken for damage."""
        if not (math.isfinite(gap) and self.fps and len(clock.steps) >= 8):
            return False
        step = clock.usual_step()
        return abs(step * self.fps - 1) < 0.05 and gap >= SKIP_FRAMES * step

    def _lost(self, damage: "_Damage") -> None:
        lost = max(1, damage.lost)
        self.lost_frames += lost
        when = f" ({damage.time:.2f} s)" if math.isfinite(damage.time) else ""
        self.warn(f"{self.describe()}: decode error at frame {damage.at}{when}: {lost} frame(s) lost, decoding resumed")

    @staticmethod
    def _batch(frames: list[np.ndarray], end: int, pts: list[float], arrival: list[float]) -> FrameBatch:
        return FrameBatch(
            np.stack(frames),
            np.arange(end - len(frames), end, dtype=np.int64),
            np.asarray(pts, np.float64),
            np.asarray(arrival, np.float64),
        )

    def _reconnect(self, index: int) -> Generator[Dropped | Resumed, None, bool]:
        """Reopen a dropped live source with bounded, logged retries and backoff. Yields ``Dropped``,
        then ``Resumed`` and returns True; False when the source is being stopped; a one-line
        VideoError when every attempt failed."""
        dropped_at = time.perf_counter()
        yield Dropped(f"{self.name}: the stream stopped after {index} frames", dropped_at)
        self._cap.release()
        delay = self.retry_delay_s
        for attempt in range(1, self.retries + 1):
            log.warning(
                "%s: stream dropped; reconnecting (attempt %d of %d) in %.1f s", self.name, attempt, self.retries, delay
            )
            if self.stopping.wait(delay):
                return False
            try:
                self._cap = self._open()
            except VideoError as e:
                log.warning("%s", e)
                delay = min(10.0, delay * 2)
                continue
            first = self._read()
            if first is None:
                self._cap.release()
                delay = min(10.0, delay * 2)
                continue
            self._prefetch = [first]
            self.reconnects += 1
            log.warning(
                "%s: reconnected after %.1f s (attempt %d)", self.name, time.perf_counter() - dropped_at, attempt
            )
            yield Resumed(first[2], attempt, first[2] - self.clock0)
            return True
        raise VideoError(f"{self.name}: the stream dropped and {self.retries} reconnection attempts failed")

    def read_range(self, start: int, stop: int, max_frames: int = 32) -> Iterator[FrameBatch]:
        """Frames ``[start, stop)`` again: seek, check the landing frame's checksum, and fall back to
        decoding from the start when the container's seek is not frame-exact."""
        if not self.rereadable or len(self._fingerprints) < stop:
            raise VideoError(f"{self.describe()}: this source cannot be read twice")
        cap, _ = open_capture(str(self.target), self.threads)
        try:
            if start > 0:
                cap.set(cv2.CAP_PROP_POS_FRAMES, start)
            first: np.ndarray | None
            ok, first = cap.read()
            if not ok or frame_fingerprint(first) != self._fingerprints[start]:
                cap.release()
                cap, _ = open_capture(str(self.target), self.threads)
                first, skipped = _seek_by_decoding(cap, start, self._fingerprints)
                self.extra_decoded += skipped
                if first is None:
                    raise VideoError(f"{self.describe()}: the file changed while it was being classified")
            buf, index = [first], start + 1
            while index < stop:
                if len(buf) == max_frames:
                    yield self._again(buf, index)
                    buf = []
                ok, frame = cap.read()
                if not ok:  # a damaged stretch: the frames after it were counted without it, so skip it too
                    found, _ = _next_matching(cap, self._fingerprints[index])
                    if found is None:
                        raise VideoError(f"{self.describe()}: could not decode frame {index} again")
                    frame = found
                buf.append(frame)
                index += 1
            yield self._again(buf, index)
        finally:
            cap.release()

    def _again(self, frames: list[np.ndarray], end: int) -> FrameBatch:
        self.extra_decoded += len(frames)
        idx = np.arange(end - len(frames), end, dtype=np.int64)
        return FrameBatch(
            np.stack(frames), idx, np.asarray([self._pts[i] for i in idx], np.float64), np.zeros(len(frames))
        )

    def close(self) -> None:
        self._cap.release()


def _seek_by_decoding(cap: cv2.VideoCapture, start: int, fingerprints: array) -> tuple[np.ndarray | None, int]:
    """Decode from the beginning to frame ``start`` (matching each frame's checksum, so damaged
    stretches are skipped as in the first pass); the frame and how many were decoded to reach it."""
    decoded, index, fails = 0, 0, 0
    while fails <= DAMAGE_RETRIES:
        ok, frame = cap.read()
        if not ok:
            fails += 1
            continue
        fails = 0
        decoded += 1
        if frame_fingerprint(frame) != fingerprints[index]:
            continue
        if index == start:
            return frame, decoded - 1
        index += 1
    return None, decoded


def _next_matching(cap: cv2.VideoCapture, fingerprint: int) -> tuple[np.ndarray | None, int]:
    fails = 0
    while fails <= DAMAGE_RETRIES:
        ok, frame = cap.read()
        if not ok:
            fails += 1
            continue
        if frame_fingerprint(frame) == fingerprint:
            return frame, 0
    return None, 0


def _fourcc(cap: cv2.VideoCapture) -> str:
    v = int(cap.get(cv2.CAP_PROP_FOURCC))
    return "".join(chr((v >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ")


def open_for_writing(path: str) -> bool | None:
    """Whether another process has ``path`` open for writing (a recorder still writing it), by
    asking Linux for a read lease, which it refuses (EAGAIN) exactly then; None where that cannot be
    asked (not Linux, a file system without leases, a file owned by another user without CAP_LEASE)."""
    import fcntl

    if not hasattr(fcntl, "F_SETLEASE"):
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as e:
        return True if e.errno == errno.EAGAIN else None
    else:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


def iso_bmff_missing_bytes(path: str, max_boxes: int = 100_000) -> int:
    """Bytes that the top-level boxes of an ISO BMFF file (MP4, MOV, M4V, 3GP: ``ftyp`` at byte 4)
    declare beyond the file's end; 0 for a whole file, a box that runs to the end (size 0), or
    another format. Box layout: ISO/IEC 14496-12, 4.2 (32-bit size, type; size 1: a 64-bit size
    follows). Hand-written: reading box headers needs no library, and PyAV/OpenCV do not expose it."""
    try:
        with open(path, "rb") as f:
            total = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8 or head[4:8] not in (b"ftyp", b"styp"):
                return 0
            pos = 0
            for _ in range(max_boxes):
                if pos + 8 > total:
                    return 0
                f.seek(pos)
                (size,) = struct.unpack(">I", f.read(4))
                f.read(4)
                if size == 1:
                    (size,) = struct.unpack(">Q", f.read(8))
                elif size == 0:
                    return 0
                if size < 8:
                    return 0  # not a box layout we can follow: say nothing
                if pos + size > total:
                    return pos + size - total
                pos += size
    except OSError:
        return 0
    return 0


def _size_and_mtime(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def why_unopened(url: str, error: BaseException | None = None) -> str:
    """Why FFmpeg could not open ``url``: for http(s), ask the server (status, byte ranges); else
    FFmpeg's reason (``error``'s strerror: never its filename, which may hold a password)."""
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        reason = getattr(error, "strerror", None)
        return (
            f"unreachable or not a video stream: {reason}" if reason else "unreachable, refused, or not a video stream"
        )
    # urllib takes no credentials in the URL: move them to a Basic header (never into a message)
    parts = urllib.parse.urlsplit(url)
    headers = {"Range": "bytes=0-1023"}
    if parts.username is not None:
        token = base64.b64encode(
            f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}".encode()
        )
        headers["Authorization"] = "Basic " + token.decode()
        host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        url = urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status, ranges = response.status, response.headers.get("Accept-Ranges", "")
            kind = response.headers.get("Content-Type", "").lower()
            head = response.read(1024)
    except urllib.error.HTTPError as e:
        return f"the server answered HTTP {e.code}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        return f"unreachable: {getattr(e, 'reason', e)}"
    if "dash+xml" in kind or b"<MPD" in head:  # a manifest without .mpd in its URL
        return "it is a DASH manifest; DASH is not supported: give the stream's HLS playlist (.m3u8), an RTSP URL or a video file"
    if status != 206 and "bytes" not in ranges.lower():
        return (
            "the server does not serve byte ranges, which this file needs (its index is not at the start); "
            "re-mux it with 'ffmpeg -i IN -c copy -movflags +faststart OUT' or download it first"
        )
    return "the server sent something FFmpeg cannot read as video"


# -- NVDEC -------------------------------------------------------------------------------------------
class NvdecSource(FrameSource):
    """A file decoded by NVDEC on the GPU: batches are CUDA uint8 RGB tensors (no host copy).

    PyNvVideoCodec's batch API gives no per-frame timestamps we could verify here (no GPU in CI),
    so times are ``frame / fps`` (``time_basis`` "fps"); for VFR files use ``--decoder opencv``.

    Raises ``BackendError`` when PyNvVideoCodec is missing or cannot load, ``VideoError`` when the
    file is missing or NVDEC cannot decode it (``open_source(decoder="auto")`` then uses OpenCV)."""

    decoder = "nvdec"
    kind = "file"
    color = "rgb"
    rereadable = True
    threaded = True
    host_frames = False
    queue_batches = 2  # its batches already hold GPU memory: keep fewer waiting

    def __init__(self, path: str | Path, gpu_id: int) -> None:
        from .nvdec import NvdecReader

        check_path(Path(path))
        self.reader = NvdecReader(str(path), gpu_id)
        super().__init__(str(path), fps=self.reader.fps)
        self.path = str(path)
        self.frame_count_hint = self.reader.frame_count_hint
        self.width, self.height = self.reader.width, self.reader.height

    def _batches(self, max_frames: int) -> Iterator[FrameBatch]:
        index = 0
        for chunk in self.reader.chunks():
            if self.stopping.is_set():
                return
            idx = np.arange(index, index + len(chunk), dtype=np.int64)
            index += len(chunk)
            yield FrameBatch(
                chunk,
                idx,
                idx / self.fps if self.fps else np.full(len(idx), np.nan),
                np.full(len(idx), time.perf_counter()),
            )

    def read_range(self, start: int, stop: int, max_frames: int = 32) -> Iterator[FrameBatch]:
        for chunk in self.reader.read_range(start, stop):
            idx = np.arange(start, start + len(chunk), dtype=np.int64)
            start += len(chunk)
            self.extra_decoded += len(chunk)
            yield FrameBatch(chunk, idx, idx / self.fps if self.fps else np.full(len(idx), np.nan), np.zeros(len(idx)))


# -- in memory -----------------------------------------------------------------------------------------
class ArraySource(FrameSource):
    """A ``uint8 [T, H, W, 3]`` (or grey ``[T, H, W]``) array; frame i at ``i / fps`` seconds (no
    times without ``fps``). Batches are views of the array, in the ``color`` given. Raises
    ``VideoError`` for another dtype or layout, zero frames or zero-sized frames, and a ``fps``
    that is not a finite number > 0."""

    kind = decoder = "array"
    rereadable = True

    def __init__(self, frames: np.ndarray, fps: float | None = None, color: str = "bgr", name: str = "<array>") -> None:
        super().__init__(name, fps=check_fps(fps))
        self.frames = check_frames(frames, "array")
        self.color = color
        self.frame_count_hint = len(self.frames)
        self.height, self.width = self.frames.shape[1:3]

    def _slice(self, start: int, stop: int) -> FrameBatch:
        idx = np.arange(start, stop, dtype=np.int64)
        pts = idx / self.fps if self.fps else np.full(len(idx), np.nan)
        return FrameBatch(self.frames[start:stop], idx, pts, np.full(len(idx), time.perf_counter()))

    def _batches(self, max_frames: int) -> Iterator[FrameBatch]:
        for start in range(0, len(self.frames), max_frames):
            if self.stopping.is_set():
                return
            yield self._slice(start, min(len(self.frames), start + max_frames))

    def read_range(self, start: int, stop: int, max_frames: int = 32) -> Iterator[FrameBatch]:
        for s in range(start, stop, max_frames):
            yield self._slice(s, min(stop, s + max_frames))


class IteratorSource(FrameSource):
    """An iterator of ``uint8 [H, W, 3]`` (or grey ``[H, W]``) frames, read once; frame i at ``i / fps``.
    Frames that come fast go in batches; a frame that took a while to come (a live loop) goes at
    once, so a live iterator gains no delay. Not rereadable. A bad ``fps`` raises ``VideoError``
    here; a frame of another dtype, layout or size raises ``VideoError`` while reading."""

    kind = decoder = "iterator"

    def __init__(
        self,
        frames: Iterable,
        fps: float | None = None,
        color: str = "bgr",
        name: str = "<iterator>",
        live: bool = False,
    ) -> None:
        super().__init__(name, fps=check_fps(fps), live=live)
        self.it = iter(frames)
        self.color = color

    def _batches(self, max_frames: int) -> Iterator[FrameBatch]:
        shape = None
        frames: list[np.ndarray] = []
        arrival: list[float] = []
        index = 0
        while not self.stopping.is_set():
            asked = time.perf_counter()
            try:
                frame = next(self.it, None)
            except Exception as e:  # the caller's iterator failed: a VideoError saying where
                first = str(e).splitlines()[0] if str(e) else ""
                raise VideoError(
                    f"{self.name}: the frame iterator raised {type(e).__name__} at frame {index}: {first}"
                ) from e
            if frame is None:
                break
            waited = time.perf_counter() - asked
            frame = check_frames(np.asarray(frame), f"{self.name} frame {index}", single=True)[0]
            if shape is None:
                shape = frame.shape
                self.height, self.width = shape[:2]
            elif frame.shape != shape:
                raise VideoError(
                    f"{self.name}: frame {index} has size {frame.shape[1]}x{frame.shape[0]}, earlier frames "
                    f"{shape[1]}x{shape[0]} (every frame of a video must have one size)"
                )
            frames.append(frame)
            arrival.append(time.perf_counter())
            index += 1
            if len(frames) >= max_frames or waited > 0.005 or self.live:
                yield self._batch(frames, index, arrival)
                frames, arrival = [], []
        if frames:
            yield self._batch(frames, index, arrival)

    def _batch(self, frames: list[np.ndarray], end: int, arrival: list[float]) -> FrameBatch:
        idx = np.arange(end - len(frames), end, dtype=np.int64)
        return FrameBatch(
            np.stack(frames),
            idx,
            idx / self.fps if self.fps else np.full(len(idx), np.nan),
            np.asarray(arrival, np.float64),
        )


# -- opening ---------------------------------------------------------------------------------------------
def open_source(
    source: Any,
    *,
    fps: float | None = None,
    color: str = "bgr",
    decoder: str = "opencv",
    gpu_id: int = 0,
    threads: int = 0,
    live: bool | None = None,
    **capture_options: Any,
) -> FrameSource:
    """Open a path, URL, camera index (an ``int``, or a string of digits that is not a file), a
    uint8 array ``[T, H, W, 3]`` or an iterator of frames as a FrameSource.

    ``fps``: arrays and iterators (frame i at i / fps; None: no times); for files and streams it
    overrides the declared rate; network URLs (every scheme but ``file://``) are read by PyAV
    (``fvdeploy.io.pyav``), files and cameras by OpenCV. ``decoder`` applies to files: ``opencv``, ``nvdec`` (an error
    when NVDEC cannot decode it), or ``auto`` (NVDEC where it works, else OpenCV). ``live``: treat
    the source as live (drop when behind, reconnect) whatever its kind. ``capture_options``:
    ``retries``, ``retry_delay_s``, ``open_timeout_s``, ``loops`` and ``frame_check`` (called with
    the frame size and the source's name before any frame is decoded; it raises to refuse it) for OpenCV
    captures and network URLs, and ``stall_timeout_s`` for network URLs.
    Raises VideoError (one line) for anything that cannot be opened or is malformed."""
    if color not in ("bgr", "rgb"):
        raise VideoError(f"color must be 'bgr' or 'rgb', got {color!r}")
    if decoder not in DECODERS:
        raise FvdeployError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
    fps = check_fps(fps)
    if isinstance(source, FrameSource):
        return source
    if isinstance(source, bool):
        raise VideoError(
            f"cannot read frames from {source!r}: pass a path, URL, camera index, array or iterator of frames"
        )
    if isinstance(source, (int, np.integer)):
        return OpenCVSource(int(source), fps=fps, live=live, threads=threads, **capture_options)
    if isinstance(source, (str, Path)):
        text = str(source)
        if text.isdigit() and not Path(text).exists():
            return OpenCVSource(int(text), fps=fps, live=live, threads=threads, **capture_options)
        if is_network_url(text) and not Path(text).exists():
            from .pyav import PyAVSource

            return PyAVSource(text, fps=fps, live=live, threads=threads, **capture_options)
        if not is_url(text) and decoder in ("nvdec", "auto") and not live:
            try:
                return NvdecSource(text, gpu_id)
            except FvdeployError:  # no NVDEC here, or not for this codec
                if decoder == "nvdec":
                    raise
        return OpenCVSource(text, fps=fps, live=live, threads=threads, **capture_options)
    if isinstance(source, np.ndarray):
        return ArraySource(source, fps, color)
    if isinstance(source, Iterable) and not isinstance(source, (bytes, dict)):
        return IteratorSource(source, fps, color, live=bool(live))
    raise VideoError(
        f"cannot read frames from a {type(source).__name__}: pass a path, URL, camera index, uint8 array "
        "[T, H, W, 3] or an iterator of frames"
    )


def read_video(source: Any, **options: Any) -> np.ndarray:
    """All frames of a short clip, ``uint8 [T, H, W, 3]`` (BGR from files). Long videos: use the runtime."""
    src = open_source(source, **options)
    return np.concatenate([b.frames for b in src.batches(256) if isinstance(b, FrameBatch)])


# -- one thread per source -----------------------------------------------------------------------------
@dataclass
class End:
    """The source is done: it ended (``error`` None) or failed."""

    error: str | None = None
    exception: BaseException | None = None


class FrameReader:
    """Run ``source.batches()`` in a daemon thread behind a queue that holds ``queue_frames``.

    A finite source waits for room (every frame is delivered); a live one (``source.live``, or
    ``drop``) drops the frames that find the queue full and counts them in ``dropped``. ``pace``
    releases each frame at its presentation time, like a camera (benchmarks, ``watch --realtime``).
    Consume with ``take()`` (non-blocking: batches and the marker after them; ``wake`` is set when
    something arrives) or by iterating (blocking: batches only; the source's error, e.g. a
    ``VideoError``, is raised here, in the consumer's thread). ``batch_frames``/``queue_frames``
    count frames; ``dropped`` and ``delivered`` count frames too. ``transform`` (frames -> frames,
    e.g. ``io.transforms.shrink``) runs on each batch in the reader thread, so the consumer
    receives frames already made small; it must keep the frame count.

    ``threaded`` (default: ``source.threaded``): False reads the source in the consumer's thread
    when it iterates (arrays and iterators need no thread); ``take()`` always needs the thread."""

    def __init__(
        self,
        source: FrameSource,
        *,
        batch_frames: int = 32,
        queue_frames: int = 96,
        drop: bool | None = None,
        pace: bool = False,
        wake: threading.Event | None = None,
        transform: Callable[[Any], Any] | None = None,
        threaded: bool | None = None,
    ) -> None:
        self.source, self.batch_frames, self.queue_frames = source, batch_frames, max(1, queue_frames)
        self.threaded = source.threaded if threaded is None else threaded
        self._inline: Iterator | None = None
        self.transform = transform
        self.drop = source.live if drop is None else drop
        self.pace = pace
        self.wake = wake or threading.Event()
        self.dropped = 0
        self.delivered = 0
        self._items: list = []
        self._queued = 0
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------------------
    def start(self) -> "FrameReader":
        if self._thread is None and self.threaded:
            self._thread = threading.Thread(
                target=self._run, daemon=True, name=f"fvdeploy-read:{self.source.name}"[:60]
            )
            self._thread.start()
        return self

    def finish(self) -> None:
        """Stop reading new frames; what is queued is still delivered, then End."""
        self.source.stopping.set()

    def stop(self) -> None:
        """Stop now and join the thread (queued frames are dropped)."""
        if self._inline is not None:
            self._inline.close()  # type: ignore[attr-defined]  # a generator
        self._stop.set()
        self.source.stopping.set()
        with self._lock:
            self._lock.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=15)
        if self._thread is None or not self._thread.is_alive():
            self.source.close()

    close = stop

    def __enter__(self) -> "FrameReader":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def has_items(self) -> bool:
        return bool(self._items)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        t0 = None
        pts0 = 0.0
        try:
            for item in self.source.batches(self.batch_frames):
                if self.pace and isinstance(item, FrameBatch):
                    for j in range(len(item)):
                        p = (
                            float(item.pts[j])
                            if not math.isnan(item.pts[j])
                            else item.index[j] / (self.source.fps or 30.0)
                        )
                        if t0 is None:
                            t0, pts0 = time.perf_counter(), p
                        delay = t0 + (p - pts0) - time.perf_counter()
                        if delay > 0 and self.source.stopping.wait(delay):
                            break
                        item.arrival[j] = max(time.perf_counter(), t0 + (p - pts0))
                if self.transform is not None and isinstance(item, FrameBatch):
                    item = replace(item, frames=self.transform(item.frames))
                if not self._put(item):
                    return
            self._put(End())
        except FvdeployError as e:
            self._put(End(str(e), e))
        except Exception as e:  # a bug must end this source, not the consumer: logged, reported
            log.exception("reader of %s failed", self.source.name)
            self._put(End(f"{self.source.name}: internal error {type(e).__name__}: {e}", e))

    def _put(self, item: Any) -> bool:
        with self._lock:
            if isinstance(item, FrameBatch):
                k = len(item)
                while self._queued + k > self.queue_frames and self._queued > 0:
                    if self._stop.is_set():
                        return False
                    if self.drop:
                        self.dropped += k
                        return True
                    self._lock.wait(0.1)
                self._queued += k
                self.delivered += k
            if self._stop.is_set():
                return False
            self._items.append(item)
            self._lock.notify_all()
        self.wake.set()
        return True

    # -- consuming -------------------------------------------------------------------------------
    def take(self, max_frames: int) -> tuple[list[FrameBatch], Marker | End | None]:
        """Up to ``max_frames`` queued frames, and the marker that follows them if it is next."""
        out: list[FrameBatch] = []
        n = 0
        with self._lock:
            while self._items and n < max_frames:
                item = self._items[0]
                if not isinstance(item, FrameBatch):
                    if out:
                        break
                    self._items.pop(0)
                    self._lock.notify_all()
                    return out, item
                room = max_frames - n
                if len(item) > room:
                    out.append(item.part(0, room))
                    self._items[0] = item.part(room, len(item))
                    n += room
                    self._queued -= room
                    break
                self._items.pop(0)
                out.append(item)
                n += len(item)
                self._queued -= len(item)
            marker = None
            if self._items and not isinstance(self._items[0], FrameBatch):
                marker = self._items.pop(0)
            self._lock.notify_all()
        return out, marker

    def __iter__(self) -> Iterator[FrameBatch]:
        if not self.threaded:
            self._inline = self._read_inline()
            return self._inline
        return self._read_queue()

    def _read_inline(self) -> Iterator[FrameBatch]:
        for item in self.source.batches(self.batch_frames):
            if isinstance(item, FrameBatch):
                self.delivered += len(item)
                yield item if self.transform is None else replace(item, frames=self.transform(item.frames))

    def _read_queue(self) -> Iterator[FrameBatch]:
        self.start()
        while True:
            with self._lock:
                while not self._items:
                    self._lock.wait(0.1)
                item = self._items.pop(0)
                if isinstance(item, FrameBatch):
                    self._queued -= len(item)
                self._lock.notify_all()
            if isinstance(item, End):
                if item.exception is not None:
                    raise item.exception
                return
            if isinstance(item, FrameBatch):
                yield item
