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
    """An H.264 MP4 (libx264 through PyAV, ultrafast, one grey colour) of ``frames`` frames of
    ``width`` x ``height``: tiny on disk whatever the size (8192x8192, 3 frames: about 200 KB), so
    it is the memory bomb of issue 24 (one decoded 8192x8192 frame is 192 MiB as BGR). PyAV's
    wheels carry libx264, so no ffmpeg program is needed; encoding holds one grey frame (64 MiB at
    8192x8192) and its yuv420p copy."""
    import av
    import numpy as np

    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        grey = av.VideoFrame.from_ndarray(np.full((height, width), 128, np.uint8), format="gray")
        for i in range(frames):
            grey.pts = i
            for packet in stream.encode(grey):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def mp4_boxes(path: str | Path) -> list[str]:
    """The top-level boxes of an MP4 in file order (ISO/IEC 14496-12 §4.2: 32-bit size, type;
    size 1: a 64-bit size follows; size 0: to the end of the file)."""
    out, data = [], Path(path).read_bytes()
    pos = 0
    while pos + 8 <= len(data):
        size, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        elif size == 0:
            size = len(data) - pos
        out.append(kind)
        if size < 8:
            break
        pos += size
    return out


def probe_video(path: str | Path) -> dict:
    """What a player sees, read with PyAV (FFmpeg's demuxer and decoder): codec, size, the
    container's duration in seconds, and the frames decoded with their times."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        times = [float(f.time) for f in c.decode(s)]
        return {
            "codec": s.codec_context.name,
            "width": s.codec_context.width,
            "height": s.codec_context.height,
            "pix_fmt": s.codec_context.pix_fmt,
            "duration": c.duration / 1e6 if c.duration is not None else None,
            "frames": len(times),
            "times": times,
            "format": c.format.name,
        }
