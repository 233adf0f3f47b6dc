"""Generated test content for the benchmarks: videos of any length with the same moving content."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def looped_clip(
    path: str | Path,
    num_frames: int,
    width: int = 320,
    height: int = 180,
    fps: float = 25.0,
    base_frames: int = 50,
    seed: int = 0,
) -> Path:
    """A video of ``num_frames`` that loops the same ``base_frames`` of moving content, so videos
    of different lengths have the same content (mp4v: OpenCV's own writer)."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = []
    for t in range(base_frames):
        img = np.empty((height, width, 3), np.uint8)
        for c in range(3):
            img[..., c] = ((xx * (c + 1) + yy * (3 - c) + 7 * t * (c + 1)) % 256).astype(np.uint8)
        cy, cx = int((height - 40) * (0.5 + 0.5 * np.sin(t / 5))), int((width - 40) * t / base_frames)
        img[cy : cy + 40, cx : cx + 40] = rng.integers(0, 255, 3)
        base.append(img)
    path = Path(path)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    for i in range(num_frames):
        writer.write(base[i % base_frames])
    writer.release()
    return path
