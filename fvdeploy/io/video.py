"""Video decoding with OpenCV, behind a small interface (so another decoder can slot in).

Frames are ``uint8 [H, W, 3]`` in BGR, as OpenCV gives them (the model's colour order is applied
in preprocessing), oriented as displayed (OpenCV applies rotation metadata by default). Every frame
is decoded in order; the container's frame count is only a hint, never trusted: what counts is what
was read.
"""

from __future__ import annotations

import os
import queue
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# FFmpeg prints its own complaints ("moov atom not found", "huffman table decode error") straight
# to stderr; we report each failure as one line, so keep FFmpeg quiet unless the user asks otherwise.
# Read when OpenCV first opens a file, so it is set before cv2 is imported here.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from ..errors import VideoError  # noqa: E402

# OpenCV's own warnings ("can't be used to capture by name", ...) would follow our one-line errors
# on stderr; the failures they describe are reported by us.
if hasattr(cv2, "utils") and hasattr(cv2.utils, "logging"):
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".3gp")


@dataclass
class VideoInfo:
    path: str
    fps: float | None  # None when the container does not say
    width: int
    height: int
    frame_count_hint: int  # what the container announces; may be wrong or 0


def check_path(path: Path) -> None:
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if path.is_dir():
        raise VideoError(f"{path}: is a directory, not a video file")
    if not os.access(path, os.R_OK):
        raise VideoError(f"{path}: permission denied")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")


def open_capture(path: str | Path, threads: int = 0) -> tuple[cv2.VideoCapture, VideoInfo]:
    """Open a video file (one-line VideoError for missing, unreadable, or not-a-video files).
    ``threads``: FFmpeg decoding threads (0 = FFmpeg's default, one per core); several videos
    decoded in parallel should share the cores rather than each take all of them."""
    path = Path(path)
    check_path(path)
    params = [cv2.CAP_PROP_N_THREADS, threads] if threads > 0 else []
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{path}: not a video OpenCV can open (unknown format or corrupt header)")
    fps = cap.get(cv2.CAP_PROP_FPS)
    info = VideoInfo(
        path=str(path),
        fps=float(fps) if fps and np.isfinite(fps) and 0 < fps < 1000 else None,
        width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        frame_count_hint=max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT))),
    )
    return cap, info


def probe(path: str | Path) -> VideoInfo:
    cap, info = open_capture(path)
    cap.release()
    return info


def frame_fingerprint(frame: np.ndarray) -> int:
    """A cheap checksum of a frame, to verify that a seek landed where it should."""
    return zlib.crc32(np.ascontiguousarray(frame[::8, ::8]).tobytes())


class VideoDecodeReport:
    """What a decode produced: frames read and whether the file ended early (truncated/corrupt)."""

    def __init__(self, info: VideoInfo) -> None:
        self.info = info
        self.frames = 0
        self.partial = False
        self.message: str | None = None

    def finish(self) -> None:
        hint = self.info.frame_count_hint
        # Containers announce approximate counts (edit lists, VFR); a shortfall beyond a few frames
        # means the decoder stopped early: the file is truncated or corrupt.
        if hint > 0 and self.frames < hint - max(2, hint // 100):
            self.partial = True
            self.message = f"decoding stopped after {self.frames} of the {hint} frames the container announces"


def iter_frame_chunks(
    path: str | Path, chunk_size: int = 32, *, start: int = 0, stop: int | None = None, report: VideoDecodeReport | None = None,
    threads: int = 0,
) -> Iterator[np.ndarray]:
    """Decode ``path`` in order and yield ``uint8 [k, H, W, 3]`` BGR chunks of frames ``[start, stop)``.

    Frames before ``start`` are grabbed (decoded, not converted); a zero-frame video is a VideoError.
    Frame sizes may not change mid-stream (a VideoError if they do).
    """
    cap, info = open_capture(path, threads)
    report = report if report is not None else VideoDecodeReport(info)
    report.info = info
    try:
        index = 0
        while index < start:
            if not cap.grab():
                break
            index += 1
        buf: list[np.ndarray] = []
        shape = None
        while stop is None or index < stop:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            if frame.ndim == 2:  # some backends give single-channel frames for grayscale video
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            if shape is None:
                shape = frame.shape
            elif frame.shape != shape:
                raise VideoError(f"{path}: frame {index} has size {frame.shape[1]}x{frame.shape[0]}, "
                                 f"earlier frames {shape[1]}x{shape[0]} (size changes are not supported)")
            buf.append(frame)
            index += 1
            report.frames = index
            if len(buf) == chunk_size:
                yield np.stack(buf)
                buf = []
        if buf:
            yield np.stack(buf)
    finally:
        cap.release()
    if start == 0 and stop is None:
        report.finish()
        if report.frames == 0:
            raise VideoError(f"{path}: no frames could be decoded (zero-frame or corrupt video)")


def read_video(path: str | Path) -> np.ndarray:
    """All frames of a short clip, ``uint8 [T, H, W, 3]`` BGR. Long videos: use the runtime."""
    return np.concatenate(list(iter_frame_chunks(path, 256)))


_END = object()


class BackgroundReader:
    """Run an iterator in a daemon thread behind a bounded queue, so decoding overlaps compute
    (OpenCV releases the GIL while it decodes). Exceptions are re-raised in the consumer."""

    def __init__(self, it: Iterator, max_chunks: int = 4) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max_chunks)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(it,), daemon=True, name="fvdeploy-decode")
        self._thread.start()

    def _run(self, it: Iterator) -> None:
        try:
            for item in it:
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._put_final(_END)
        except BaseException as e:  # delivered to the consumer, which raises it
            self._put_final(e)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def _put_final(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def find_videos(root: str | Path) -> list[Path]:
    """Video files under a directory (recursive), sorted."""
    root = Path(root)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
