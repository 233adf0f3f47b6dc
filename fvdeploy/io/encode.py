"""Videos a browser plays: H.264 in MP4 with the index at the front (``faststart``), or VP9 in
WebM, encoded by FFmpeg's libx264 / libvpx-vp9 through PyAV (``av``; its wheels bundle both). Used
by ``--annotate`` and ``watch --clips``.

Why not OpenCV's ``VideoWriter``: the opencv-python wheels have no H.264 encoder (their ``mp4v`` is
MPEG-4 Part 2, which neither Chrome nor Firefox decodes, opencv/opencv#23847), and they write the MP4
index at the end, so a browser must fetch the whole file before it can start.

The file is written to a hidden temporary file beside the target and renamed when it is complete
(mode 0666 less the umask), so an interrupted run leaves nothing half-written under the target name.
"""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FvdeployError
from .names import VIDEO_OUTPUTS

# x264 at CRF 23 with the "veryfast" preset: the size/quality of FFmpeg's default at about 3x its
# speed (annotating is a second pass over the whole video). Main profile: every browser decodes it.
X264_OPTIONS = {"crf": "23", "preset": "veryfast", "profile": "main"}
# libvpx-vp9 in constant-quality mode (b=0), realtime deadline: a clip of an event is evidence, not
# an archive; the defaults ("good", cpu-used 1) are ~20x slower.
VP9_OPTIONS = {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"}
TIME_BASE = Fraction(1, 90000)  # the MPEG clock: frame times in seconds keep 11 us resolution


class EncoderMissing(FvdeployError):
    """PyAV (``av``) is not installed."""


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise EncoderMissing(
            "writing browser-playable video needs PyAV, a dependency of fvdeploy: pip install av"
        ) from None
    return av


def even_size(width: int, height: int, max_height: int | None = None) -> tuple[int, int]:
    """``(width, height)`` scaled to at most ``max_height`` rows (aspect kept), each rounded to an
    even number >= 2 (4:2:0 chroma needs even sides)."""
    w, h = float(width), float(height)
    if max_height is not None and h > max_height:
        w, h = w * max_height / h, float(max_height)
    return max(2, int(round(w / 2)) * 2), max(2, int(round(h / 2)) * 2)


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


class VideoEncoder:
    """Write frames to ``path`` (``.mp4``/``.m4v``: H.264 + faststart; ``.webm``: VP9).

    ``width``, ``height``: the encoded size (even; frames of another size are scaled to it by
    FFmpeg's swscale). ``fps``: the nominal rate (frames without a time are placed at ``i / fps``).
    Use as a context manager or call ``close()`` (keep the file) / ``abort()`` (delete it).

    Raises ``FvdeployError`` for an unsupported extension, ``EncoderMissing`` without PyAV."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float) -> None:
        self.path = Path(path)
        spec = VIDEO_OUTPUTS.get(self.path.suffix.lower())
        if spec is None:
            raise FvdeployError(
                f"{self.path}: browser-playable video is written as {' or '.join(VIDEO_OUTPUTS)}, "
                f"not {self.path.suffix or 'no extension'!r}"
            )
        if width % 2 or height % 2 or width < 2 or height < 2:
            raise FvdeployError(f"{self.path}: the encoded size must be even, got {width}x{height}")
        av = _av()
        container_format, codec = spec
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(suffix=self.path.suffix, prefix=f".{self.path.stem}.", dir=self.path.parent)
        os.close(fd)
        self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 25.0
        self.frames = 0
        self._last_pts = -1
        try:
            options = {"movflags": "+faststart"} if container_format == "mp4" else {}
            self._out = av.open(self.tmp, "w", format=container_format, options=options)
            rate = Fraction(self.fps).limit_denominator(1001)
            stream = self._out.add_stream(codec, rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.time_base = TIME_BASE
            stream.codec_context.time_base = TIME_BASE
            stream.options = dict(X264_OPTIONS if codec == "libx264" else VP9_OPTIONS)
            self._stream = stream
        except Exception as e:
            self._cleanup()
            raise FvdeployError(f"{self.path}: cannot start the {codec} encoder ({e})") from None
        self.width, self.height = width, height

    def write(self, image: np.ndarray, t: float | None = None, fmt: str = "bgr24") -> None:
        """One frame: uint8 ``[H, W, 3]`` in ``fmt`` (``bgr24`` or ``rgb24``), or ``[H*3/2, W]``
        with ``fmt="yuv420p"`` (I420 planes, as ``cv2.COLOR_BGR2YUV_I420`` gives). ``t``: its time
        in seconds from the start of the video (default ``frames / fps``); times must increase."""
        av = _av()
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=fmt)
        seconds = self.frames / self.fps if t is None or not np.isfinite(t) else t
        pts = max(int(round(seconds / TIME_BASE)), self._last_pts + 1)
        frame.pts, frame.time_base = pts, TIME_BASE
        self._last_pts = pts
        for packet in self._stream.encode(frame):
            self._out.mux(packet)
        self.frames += 1

    def close(self, path: str | Path | None = None) -> Path:
        """Flush, finish the file (the index moves to the front) and rename it to ``path`` (default:
        the one given at the start, in the same folder); a video with no frame is an error (nothing
        is left behind)."""
        if path is not None:
            self.path = Path(path)
        if self.frames == 0:
            self.abort()
            raise FvdeployError(f"{self.path}: no frames to write")
        try:
            for packet in self._stream.encode():
                self._out.mux(packet)
            self._out.close()
            os.chmod(self.tmp, _umask_mode())
            os.replace(self.tmp, self.path)
        finally:
            self._cleanup()
        return self.path

    def abort(self) -> None:
        """Stop and delete what was written."""
        try:
            self._out.close()
        except Exception:  # noqa: BLE001  # the file is deleted anyway
            pass
        self._cleanup()

    def _cleanup(self) -> None:
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)

    def __enter__(self) -> VideoEncoder:
        return self

    def __exit__(self, kind, *_: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
