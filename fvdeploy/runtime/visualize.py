"""A timeline picture per video (like the paper's Fig. 7/8): the frames coloured by cluster (or
segment), with a thumbnail per segment and its label. Drawn with OpenCV: no plotting dependency."""

from __future__ import annotations

import colorsys
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from ..errors import FvdeployError
from .results import VideoResult

WIDTH = 1280


def palette(n: int) -> list[tuple[int, int, int]]:
    """n well-separated BGR colours."""
    cols = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.61803398875) % 1.0, 0.65, 0.95)
        cols.append((int(b * 255), int(g * 255), int(r * 255)))
    return cols


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45, color=(30, 30, 30), thick: int = 1) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def render_timeline(result: VideoResult, thumbnails=None) -> np.ndarray:
    segs = result.segments
    n = max(1, len(segs))
    total = max(1, result.num_frames)
    margin, bar_top, bar_h = 20, 56, 28
    slot_w = (WIDTH - 2 * margin) // n
    thumb_h = 72 if thumbnails is not None else 0
    height = bar_top + bar_h + 40 + thumb_h + 44
    img = np.full((height, WIDTH, 3), 250, np.uint8)
    title = Path(result.path).name if result.path else "video"
    _text(img, f"{title}: {result.label} ({result.score:.2f})", (margin, 24), 0.6, thick=2)
    secs = f", {result.duration_s:.1f} s" if result.duration_s else ""
    _text(img, f"{result.num_frames} frames{secs}, {len(segs)} segments ({result.run.get('mode', '')})", (margin, 44))
    cols = palette(n)
    x0, x1 = margin, WIDTH - margin
    scale = (x1 - x0) / total
    for i, s in enumerate(segs):
        a, b = x0 + int(round(s.start_frame * scale)), x0 + max(int(round(s.end_frame * scale)), int(round(s.start_frame * scale)) + 1)
        cv2.rectangle(img, (a, bar_top), (b - 1, bar_top + bar_h), cols[i], -1)
    cv2.rectangle(img, (x0, bar_top), (x1, bar_top + bar_h), (80, 80, 80), 1)
    _text(img, "0", (x0, bar_top + bar_h + 14), 0.4)
    _text(img, str(total), (x1 - 8 * len(str(total)), bar_top + bar_h + 14), 0.4)
    row = bar_top + bar_h + 40
    for i, s in enumerate(segs):
        cx = margin + i * slot_w + slot_w // 2
        mid = x0 + int(round((s.start_frame + s.end_frame) / 2 * scale))
        cv2.line(img, (mid, bar_top + bar_h), (cx, row - 4), cols[i], 1, cv2.LINE_AA)
        if thumbnails is not None:
            thumb = thumbnails.nearest((s.start_frame + s.end_frame) // 2)
            if thumb is not None:
                w = min(slot_w - 6, int(thumb.shape[1] * thumb_h / thumb.shape[0]))
                t = cv2.resize(thumb, (max(1, w), thumb_h), interpolation=cv2.INTER_AREA)
                img[row : row + thumb_h, cx - w // 2 : cx - w // 2 + w] = t
                cv2.rectangle(img, (cx - w // 2 - 1, row - 1), (cx - w // 2 + w, row + thumb_h), cols[i], 2)
        label = s.label if len(s.label) * 7 < slot_w else s.label[: max(1, slot_w // 7 - 1)] + "."
        _text(img, label, (cx - min(slot_w, len(label) * 7) // 2, row + thumb_h + 16), 0.4)
        _text(img, f"{s.score:.2f}  [{s.start_frame}, {s.end_frame})", (cx - slot_w // 2 + 3, row + thumb_h + 32), 0.35)
    return img


def plot_timeline(result: VideoResult, thumbnails, path: str | Path) -> Path:
    """Write the timeline PNG atomically (temp file + rename)."""
    return write_png(render_timeline(result, thumbnails), path)


def write_png(img: np.ndarray, path: str | Path) -> Path:
    """Write ``img`` (BGR uint8) as a PNG atomically: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", prefix=f".{path.stem}.", dir=path.parent)
    os.close(fd)
    try:
        if not cv2.imwrite(tmp, img):
            raise FvdeployError(f"{path}: could not write the PNG")
        mask = os.umask(0)  # mkstemp makes 0600; a picture is shared like any other file
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
