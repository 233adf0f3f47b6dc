"""Real test videos written with OpenCV's VideoWriter: content that changes over time (a moving
square, a scene cut, noise), so the clustering has something to find."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def synthetic_frames(
    num_frames: int, height: int = 40, width: int = 48, seed: int = 0, cut_every: int = 37
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    palette = rng.integers(0, 255, (num_frames // cut_every + 2, 3))
    for t in range(num_frames):
        scene = t // cut_every
        base = (palette[scene][None, None, :] * 0.6 + ((xx + yy + 3 * t) % 64)[..., None] * 1.5).astype(np.float32)
        cy, cx = (t * 3) % max(1, height - 8), (t * 5) % max(1, width - 8)
        base[cy : cy + 8, cx : cx + 8] = (255, 255, 255) if scene % 2 else (0, 0, 0)
        base += rng.normal(0, 6, base.shape)
        frames[t] = np.clip(base, 0, 255).astype(np.uint8)
    return frames


def write_clip(path: str | Path, frames: np.ndarray, fps: float = 25.0, fourcc: str = "mp4v") -> Path:
    path = Path(path)
    gray = frames.ndim == 3
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h), isColor=not gray)
    assert writer.isOpened(), f"cannot write {path}"
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def write_h264(path: str | Path, width: int, height: int, frames: int = 3, fps: int = 25) -> Path:
    """An H.264 file (libx264, ultrafast, one grey colour) of ``frames`` frames of ``width`` x
    ``height``: tiny on disk whatever the size (8192x8192, 3 frames: 198 KB), so it is the memory
    bomb of issue 24 (one decoded 8192x8192 frame is 192 MiB as BGR). Needs ffmpeg with libx264 on
    the PATH: raises FileNotFoundError without ffmpeg and CalledProcessError when it fails."""
    import shutil
    import subprocess

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise FileNotFoundError("ffmpeg is not installed (apt-get install ffmpeg)")
    path = Path(path)
    subprocess.run(
        [
            ffmpeg,
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"color=c=gray:s={width}x{height}:r={fps}",
            "-frames:v",
            str(frames),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return path
