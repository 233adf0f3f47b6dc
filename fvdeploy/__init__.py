"""fvdeploy: full-video action recognition ("No frame left behind", CVPR 2021) you can deploy.

The public names import lazily: ``import fvdeploy`` costs nothing until one of them is used
(the command line's ``--help`` never loads torch)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from ._lazy import lazy_exports

# torch's OpenMP threads share the cores with the decoder's threads (FFmpeg's, the reader's). An
# OpenMP thread that spins at a barrier while the thread it waits for is descheduled stalls the
# model: on 2 busy cores its stage took 0.5-1.2 s instead of 0.2 s for the same frames (docs/runtime.md).
# Passive waiting sleeps instead. libgomp reads this once, when torch loads, so it is set only
# before torch is imported and never over the user's own value.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": ".bundle",
    "save_model": ".bundle",
    "InputSpec": ".config",
    "ModelConfig": ".config",
    "BackendError": ".errors",
    "ExportError": ".errors",
    "FvdeployError": ".errors",
    "ModelError": ".errors",
    "VideoError": ".errors",
    "create_model": ".models",
    "list_models": ".models",
    "Classifier": ".runtime",
    "ClassifyOptions": ".runtime",
    "Segment": ".records",
    "VideoResult": ".records",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .bundle import load_model, save_model
    from .config import InputSpec, ModelConfig
    from .errors import BackendError, ExportError, FvdeployError, ModelError, VideoError
    from .models import create_model, list_models
    from .records import Segment, VideoResult
    from .runtime import Classifier, ClassifyOptions

__all__ = [
    "BackendError",
    "Classifier",
    "ClassifyOptions",
    "Segment",
    "VideoResult",
    "ExportError",
    "FvdeployError",
    "InputSpec",
    "ModelConfig",
    "ModelError",
    "VideoError",
    "__version__",
    "create_model",
    "list_models",
    "load_model",
    "save_model",
]
