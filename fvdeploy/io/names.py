"""The decoders behind the frame source (``--decoder``), torch- and OpenCV-free so the command line
can offer them without loading either."""

from __future__ import annotations

DECODERS: tuple[str, ...] = ("opencv", "nvdec", "auto")
