"""OpenCV's FFmpeg capture, the folder scan and FFmpeg's log level: what ``io.sources`` builds on.

Frames are ``uint8 [H, W, 3]`` in BGR, as OpenCV gives them (the model's colour order is applied
in preprocessing), oriented as displayed (OpenCV applies rotation metadata by default). The
container's frame count is only a hint, never trusted: what counts is what was decoded.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import zlib
from dataclasses import dataclass, field
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

log = logging.getLogger(__name__)

# Every container FFmpeg commonly reads (compared case-insensitively): phones (.mov .mp4 .3gp),
# camcorders (.mts .m2ts .dv), broadcast (.mxf .ts .vob .mpg), raw elementary streams (.h264 ...).
VIDEO_EXTENSIONS = (
    ".mp4",
    ".m4v",
    ".mov",
    ".qt",
    ".mkv",
    ".webm",
    ".avi",
    ".divx",
    ".wmv",
    ".asf",
    ".flv",
    ".f4v",
    ".mpg",
    ".mpeg",
    ".m1v",
    ".m2v",
    ".mpv",
    ".ts",
    ".mts",
    ".m2ts",
    ".mxf",
    ".vob",
    ".ogv",
    ".ogg",
    ".dv",
    ".3gp",
    ".3g2",
    ".y4m",
    ".h264",
    ".264",
    ".h265",
    ".265",
    ".hevc",
    ".gif",
    ".mjpeg",
    ".mjpg",
    ".rm",
    ".rmvb",
    ".nut",
    ".ivf",
)
# FFmpeg's log levels (libavutil/log.h): quiet, and warning for --log-level debug.
AV_LOG_QUIET, AV_LOG_WARNING = -8, 24


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


def declared_fps(value: float | None) -> float | None:
    """A container's declared frame rate when it is plausible (finite, 0 < fps < 1000), else None:
    FFmpeg reports 0, NaN or a time base (90000) for streams that declare none."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) and 0 < value < 1000 else None


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
        fps=declared_fps(fps),
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


@dataclass
class FolderScan:
    """What a folder holds: video files (by extension, case-insensitive) and what was skipped:
    other files, dangling links, links back to a folder already scanned (a loop), unreadable
    folders (``describe_skipped`` tells them apart)."""

    videos: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


def scan_folder(root: str | Path) -> FolderScan:
    """Video files under a directory (recursive, sorted) and what it skipped (sorted).

    Symlinked sub-folders are scanned (a dataset often links its videos in), each real folder
    once: a link back to a folder already scanned (a loop, or a second link to one folder) is
    skipped, so the scan ends whatever the links. A dangling link is skipped, never dropped
    silently: ``describe_skipped`` names it."""
    root = Path(root)
    scan = FolderScan()
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in seen:
                scan.skipped.append(folder)
                continue
            seen.add((st.st_dev, st.st_ino))
            entries = list(os.scandir(folder))
        except OSError:
            scan.skipped.append(folder)
            continue
        for entry in entries:
            path = Path(entry.path)
            try:
                if entry.is_dir():  # follows a symlink
                    stack.append(path)
                elif entry.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
                    scan.videos.append(path)
                else:  # another file, a dangling link, a fifo or socket
                    scan.skipped.append(path)
            except OSError:
                scan.skipped.append(path)
    scan.videos.sort()
    scan.skipped.sort()
    return scan


def find_videos(root: str | Path) -> list[Path]:
    """Video files under a directory (recursive, symlinked folders once each), sorted."""
    return scan_folder(root).videos


def _why_skipped(path: Path) -> str:
    if path.is_symlink() and not path.exists():
        return "dangling link(s)"
    if path.is_dir():
        return "folder(s) already scanned (a link back or a second link) or unreadable"
    return "file(s) without a video extension"


def describe_skipped(root: str | Path, skipped: list[Path], limit: int = 5) -> str:
    """One line naming what a folder scan skipped, by kind (files without a video extension,
    dangling links with their target, folders already scanned): the first ``limit`` of each and
    a count."""

    def name(p: Path) -> str:
        shown = str(p.relative_to(root)) if p.is_relative_to(root) else str(p)
        return f"{shown} -> {os.readlink(p)}" if p.is_symlink() and not p.exists() else shown

    groups: dict[str, list[Path]] = {}
    for p in skipped:
        groups.setdefault(_why_skipped(p), []).append(p)
    parts = []
    for why, paths in groups.items():
        names = ", ".join(name(p) for p in paths[:limit])
        more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
        parts.append(f"skipped {len(paths)} {why}: {names}{more}")
    return f"{root}: " + "; ".join(parts)


def set_ffmpeg_log_level(level: int = AV_LOG_QUIET) -> bool:
    """Set the log level of the FFmpeg that OpenCV carries, at any time.

    OpenCV reads ``OPENCV_FFMPEG_LOGLEVEL`` only when its FFmpeg backend first starts, so an
    application that opened a capture (or a writer) before importing fvdeploy would get FFmpeg's
    own lines (``[h264 @ 0x...] Invalid NAL unit size``) on its terminal. We report damage as one
    warning per file instead, so we call ``av_log_set_level`` of the libavutil already loaded in
    this process (found in /proc/self/maps; OpenCV has no API for it). Hand-written: False where
    that library cannot be found (the environment variable then still applies). Every libavutil
    loaded is set: PyAV's wheel carries its own FFmpeg (network streams), which may be loaded too."""
    paths = {line.split()[-1] for line in _maps() if "libavutil" in line and line.split()[-1].startswith("/")}
    done = False
    for path in sorted(paths):
        try:
            ctypes.CDLL(path).av_log_set_level(ctypes.c_int(level))
            done = True
        except (OSError, AttributeError):
            continue
    return done


def _maps() -> list[str]:
    try:
        with open("/proc/self/maps") as f:
            return f.read().splitlines()
    except OSError:
        return []


# Quiet from the first import on, whatever opened a capture before us; a user who set
# OPENCV_FFMPEG_LOGLEVEL to something else (debugging) gets FFmpeg's warnings.
set_ffmpeg_log_level(AV_LOG_QUIET if os.environ.get("OPENCV_FFMPEG_LOGLEVEL", "-8") == "-8" else AV_LOG_WARNING)
