"""Small drawing helpers shared by every picture fvdeploy writes (classify's timeline, watch's
timeline, annotated videos): colours, axis steps, and PNGs written atomically."""

from __future__ import annotations

import colorsys
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from .errors import FvdeployError


def palette(n: int) -> list[tuple[int, int, int]]:
    """n well-separated BGR colours."""
    cols = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.61803398875) % 1.0, 0.65, 0.95)
        cols.append((int(b * 255), int(g * 255), int(r * 255)))
    return cols


def nice_step(raw: float) -> float:
    """The 1-2-5 step at or above ``raw``: axis ticks at round numbers."""
    if not raw > 0:
        return 1.0
    mag = 10 ** np.floor(np.log10(raw))
    for m in (1, 2, 5, 10):
        if m * mag >= raw:
            return float(m * mag)
    return float(10 * mag)


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
