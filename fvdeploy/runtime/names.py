"""The runtime's decoders (``--decoder``), torch-free so the command line can offer them without
loading torch. Inference modes are ``fvdeploy.config.MODES``."""

from __future__ import annotations

from ..io.names import DECODERS

__all__ = ["ANNOTATE_EXTENSIONS", "DECODERS"]

# Containers ``--annotate`` writes (OpenCV's own encoders: mp4v, MJPG).
ANNOTATE_EXTENSIONS: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".avi", ".mkv")
