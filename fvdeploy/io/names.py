"""The decoders behind the frame source (``--decoder``), torch- and OpenCV-free so the command line
can offer them without loading either."""

from __future__ import annotations

DECODERS: tuple[str, ...] = ("opencv", "nvdec", "auto")

# Browser-playable outputs (``fvdeploy.io.encode``): extension -> (container, FFmpeg encoder).
VIDEO_OUTPUTS: dict[str, tuple[str, str]] = {
    ".mp4": ("mp4", "libx264"),
    ".m4v": ("mp4", "libx264"),
    ".webm": ("webm", "libvpx-vp9"),
}
