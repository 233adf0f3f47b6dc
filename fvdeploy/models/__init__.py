"""TSM ResNets and their registry. Names import lazily (torch loads with the first use);
``models.names`` is torch-free."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from .names import ARCHS

_EXPORTS = {
    **{
        name: ".registry"
        for name in ("count_parameters", "create_model", "list_models", "load_imagenet_weights", "register_model")
    },
    **{name: ".tsm_resnet" for name in ("ModelOutput", "TSMResNet", "pad_frames", "repeat_last_valid")},
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .registry import count_parameters, create_model, list_models, load_imagenet_weights, register_model
    from .tsm_resnet import ModelOutput, TSMResNet, pad_frames, repeat_last_valid

__all__ = [
    "ARCHS",
    "ModelOutput",
    "TSMResNet",
    "count_parameters",
    "create_model",
    "list_models",
    "load_imagenet_weights",
    "pad_frames",
    "register_model",
    "repeat_last_valid",
]
