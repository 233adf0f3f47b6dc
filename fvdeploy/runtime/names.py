"""The runtime's decoders (``--decoder``), torch-free so the command line can offer them without
loading torch. Inference modes are ``fvdeploy.config.MODES``."""

from __future__ import annotations

DECODERS: tuple[str, ...] = ("opencv", "nvdec", "auto")
