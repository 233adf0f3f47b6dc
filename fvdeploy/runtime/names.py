"""The runtime's decoders (``--decoder``), torch-free so the command line can offer them without
loading torch. Inference modes are ``fvdeploy.config.MODES``."""

from __future__ import annotations

from ..io.names import DECODERS, VIDEO_OUTPUTS

__all__ = ["ANNOTATE_EXTENSIONS", "DECODERS"]

# Containers ``--annotate`` writes: browser-playable (H.264 in MP4, VP9 in WebM; fvdeploy.io.encode).
ANNOTATE_EXTENSIONS: tuple[str, ...] = tuple(VIDEO_OUTPUTS)
