"""fvdeploy: full-video action recognition ("No frame left behind", CVPR 2021) you can deploy.

The public names import lazily: ``import fvdeploy`` costs nothing until one of them is used
(the command line's ``--help`` never loads torch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

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
    "Segment": ".runtime",
    "VideoResult": ".runtime",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .bundle import load_model, save_model
    from .config import InputSpec, ModelConfig
    from .errors import BackendError, ExportError, FvdeployError, ModelError, VideoError
    from .models import create_model, list_models
    from .runtime import Classifier, Segment, VideoResult

__all__ = [
    "BackendError",
    "Classifier",
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
