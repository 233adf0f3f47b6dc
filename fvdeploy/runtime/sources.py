"""Where frames come from: a video file, an in-memory array, or an iterator (a live stream).

Every source yields uint8 ``[k, H, W, 3]`` chunks in its colour order, and counts what it delivered.
A file can be read again (seek, verified by frame checksums); an array trivially; an iterator not.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from ..errors import FvdeployError, VideoError
from ..io.video import VideoDecodeReport, frame_fingerprint, iter_frame_chunks, open_capture


class Source:
    path: str | None = None
    fps: float | None = None
    color: str = "bgr"
    decoder: str = ""
    rereadable: bool = False
    frame_count_hint: int = 0
    frame_bytes: int = 0  # bytes of one decoded frame, 0 until known

    def __init__(self) -> None:
        self.decode_seconds = 0.0
        self.frames_read = 0
        self.extra_decoded = 0  # frames decoded again to recompute chunks (bounded-memory path)
        self.partial_message: str | None = None

    def chunks(self, chunk_frames: int) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def read_range(self, start: int, stop: int, chunk_frames: int) -> Iterator[np.ndarray]:
        raise VideoError("this source cannot be read twice")

    def describe(self) -> str:
        return self.path or f"<{self.decoder}>"


def _timed(it: Iterator[np.ndarray], source: Source, count: bool = True) -> Iterator[np.ndarray]:
    """Attribute the time spent producing each chunk to decoding."""
    while True:
        t0 = time.perf_counter()
        try:
            chunk = next(it)
        except StopIteration:
            source.decode_seconds += time.perf_counter() - t0
            return
        source.decode_seconds += time.perf_counter() - t0
        if count:
            source.frames_read += len(chunk)
        yield chunk


class FileSource(Source):
    decoder = "opencv"
    rereadable = True

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        super().__init__()
        self.threads = threads  # FFmpeg decoding threads (0: FFmpeg's default, all cores)
        cap, info = open_capture(path)  # one-line VideoError for missing/unreadable/not a video
        cap.release()
        self.path = str(path)
        self.info = info
        self.fps = info.fps
        self.frame_count_hint = info.frame_count_hint
        self.frame_bytes = info.width * info.height * 3
        self.fingerprints = array("I")  # one per decoded frame: verifies seeks when re-reading

    def chunks(self, chunk_frames: int) -> Iterator[np.ndarray]:
        report = VideoDecodeReport(self.info)
        for chunk in _timed(iter_frame_chunks(self.path, chunk_frames, report=report, threads=self.threads), self):
            self.fingerprints.extend(frame_fingerprint(f) for f in chunk)
            yield chunk
        if report.partial:
            self.partial_message = report.message

    def read_range(self, start: int, stop: int, chunk_frames: int) -> Iterator[np.ndarray]:
        """Frames ``[start, stop)`` again: seek, check the landing frame's checksum, and fall back to
        decoding from the start when the container's seek is not frame-exact."""
        cap, _ = open_capture(self.path)
        try:
            if start > 0:
                cap.set(cv2.CAP_PROP_POS_FRAMES, start)
            ok, first = cap.read()
            if not ok or frame_fingerprint(first) != self.fingerprints[start]:
                cap.release()
                cap, _ = open_capture(self.path)
                for _ in range(start):
                    cap.grab()
                self.extra_decoded += start
                ok, first = cap.read()
                if not ok or frame_fingerprint(first) != self.fingerprints[start]:
                    raise VideoError(f"{self.path}: the file changed while it was being classified")
            buf, index = [first], start + 1
            while index < stop:
                if len(buf) == chunk_frames:
                    self.extra_decoded += len(buf)
                    yield np.stack(buf)
                    buf = []
                ok, frame = cap.read()
                if not ok:
                    raise VideoError(f"{self.path}: could not decode frame {index} again")
                buf.append(frame)
                index += 1
            self.extra_decoded += len(buf)
            yield np.stack(buf)
        finally:
            cap.release()


class NvdecSource(Source):
    """A file decoded by NVDEC on the GPU: chunks are CUDA uint8 RGB tensors (no host copy)."""

    decoder = "nvdec"
    rereadable = True
    color = "rgb"

    def __init__(self, path: str | Path, gpu_id: int) -> None:
        super().__init__()
        from ..io.nvdec import NvdecReader
        from ..io.video import check_path

        check_path(Path(path))
        self.path = str(path)
        self.reader = NvdecReader(self.path, gpu_id)
        self.fps = self.reader.fps
        self.frame_count_hint = self.reader.frame_count_hint
        self.frame_bytes = self.reader.width * self.reader.height * 3

    def chunks(self, chunk_frames: int) -> Iterator:
        yield from _timed(self.reader.chunks(), self)
        if self.frames_read == 0:
            raise VideoError(f"{self.path}: no frames could be decoded (zero-frame or corrupt video)")
        hint = self.frame_count_hint
        if hint > 0 and self.frames_read < hint - max(2, hint // 100):
            self.partial_message = f"decoding stopped after {self.frames_read} of the {hint} frames the container announces"

    def read_range(self, start: int, stop: int, chunk_frames: int) -> Iterator:
        for chunk in self.reader.read_range(start, stop):
            self.extra_decoded += len(chunk)
            yield chunk


def _check_frames(frames: np.ndarray, where: str) -> np.ndarray:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise VideoError(f"{where}: frames must be a uint8 numpy array, got {getattr(frames, 'dtype', type(frames).__name__)}")
    if frames.ndim == 3:  # grayscale [T, H, W]
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise VideoError(f"{where}: frames must be [T, H, W, 3] (or [T, H, W] grayscale), got shape {frames.shape}")
    return frames


class ArraySource(Source):
    decoder = "array"
    rereadable = True

    def __init__(self, frames: np.ndarray, fps: float | None = None, color: str = "bgr") -> None:
        super().__init__()
        self.frames = _check_frames(frames, "array")
        if len(self.frames) == 0:
            raise VideoError("array: zero frames")
        self.fps, self.color = fps, color
        self.frame_count_hint = len(self.frames)
        self.frame_bytes = int(np.prod(self.frames.shape[1:]))

    def chunks(self, chunk_frames: int) -> Iterator[np.ndarray]:
        for start in range(0, len(self.frames), chunk_frames):
            chunk = self.frames[start : start + chunk_frames]
            self.frames_read += len(chunk)
            yield chunk

    def read_range(self, start: int, stop: int, chunk_frames: int) -> Iterator[np.ndarray]:
        for s in range(start, stop, chunk_frames):
            yield self.frames[s : min(stop, s + chunk_frames)]


class IteratorSource(Source):
    decoder = "iterator"

    def __init__(self, frames: Iterable[np.ndarray], fps: float | None = None, color: str = "bgr") -> None:
        super().__init__()
        self.it = iter(frames)
        self.fps, self.color = fps, color

    def chunks(self, chunk_frames: int) -> Iterator[np.ndarray]:
        buf: list[np.ndarray] = []
        shape = None

        def frames() -> Iterator[np.ndarray]:
            for i, frame in enumerate(self.it):
                yield _check_frames(np.asarray(frame)[None], f"stream frame {i}")[0]

        for frame in _timed(frames(), self, count=False):
            if shape is None:
                shape = frame.shape
                self.frame_bytes = int(np.prod(shape))
            elif frame.shape != shape:
                raise VideoError(f"stream: frame {self.frames_read + len(buf)} has shape {frame.shape}, earlier {shape}")
            buf.append(frame)
            if len(buf) == chunk_frames:
                self.frames_read += len(buf)
                yield np.stack(buf)
                buf = []
        if buf:
            self.frames_read += len(buf)
            yield np.stack(buf)
        if self.frames_read == 0:
            raise VideoError("stream: zero frames")


def open_source(source, *, fps: float | None = None, color: str = "bgr", decoder: str = "opencv",
                gpu_id: int = 0, threads: int = 0) -> Source:
    """A path, a numpy array ``[T, H, W, 3]`` or an iterator of frames, as a Source.

    ``decoder`` applies to files: ``opencv``, ``nvdec`` (an error when NVDEC cannot decode it), or
    ``auto`` (NVDEC where it works, else OpenCV; the result's ``run.decoder`` says which)."""
    if color not in ("bgr", "rgb"):
        raise VideoError(f"color must be 'bgr' or 'rgb', got {color!r}")
    if isinstance(source, Source):
        return source
    if isinstance(source, (str, Path)):
        if decoder == "nvdec":
            return NvdecSource(source, gpu_id)
        if decoder == "auto":
            try:
                return NvdecSource(source, gpu_id)
            except FvdeployError:  # no NVDEC here, or not for this codec: OpenCV says what else is wrong
                pass
        return FileSource(source, threads)
    if isinstance(source, np.ndarray):
        return ArraySource(source, fps, color)
    if isinstance(source, Iterable):
        return IteratorSource(source, fps, color)
    raise VideoError(f"cannot classify a {type(source).__name__}: pass a path, a uint8 array or an iterator of frames")
