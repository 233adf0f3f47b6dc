"""fvdeploy: full-video action recognition ("No frame left behind", CVPR 2021) you can deploy."""

__version__ = "0.1.0"

from .bundle import load_model, save_model  # noqa: E402
from .config import InputSpec, ModelConfig  # noqa: E402
from .errors import BackendError, ExportError, FvdeployError, ModelError, VideoError  # noqa: E402
from .models import create_model, list_models  # noqa: E402
from .runtime import Classifier, Segment, VideoResult  # noqa: E402

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
