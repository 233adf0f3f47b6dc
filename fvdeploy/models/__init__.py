from .registry import count_parameters, create_model, list_models, load_imagenet_weights, register_model
from .tsm_resnet import ModelOutput, TSMResNet, pad_frames, repeat_last_valid

__all__ = [
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
