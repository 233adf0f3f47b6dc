"""A registry of architectures: ``arch`` name -> builder of a TSMResNet from a ModelConfig."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from ..config import ModelConfig
from ..errors import ModelError
from .tsm_resnet import TSMResNet, make_backbone

_ARCHS: dict[str, Callable[[ModelConfig], TSMResNet]] = {}


def register_model(name: str):
    def wrap(fn: Callable[[ModelConfig], TSMResNet]):
        if name in _ARCHS:
            raise ValueError(f"architecture {name!r} is already registered")
        _ARCHS[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(_ARCHS)


def create_model(config: ModelConfig, *, imagenet_weights: str | Path | None = None) -> TSMResNet:
    """Build the model a config describes (random init, or ImageNet init from a local file)."""
    if config.arch not in _ARCHS:
        raise ModelError(f"unknown arch {config.arch!r}; known: {', '.join(list_models())}")
    config.validate()
    model = _ARCHS[config.arch](config)
    if imagenet_weights is not None:
        load_imagenet_weights(model, imagenet_weights)
    return model


@register_model("resnet18")
def tsm_resnet18(config: ModelConfig) -> TSMResNet:
    return TSMResNet(make_backbone(BasicBlock, [2, 2, 2, 2], (64, 128, 256, 512)), config)


@register_model("resnet50")
def tsm_resnet50(config: ModelConfig) -> TSMResNet:
    return TSMResNet(make_backbone(Bottleneck, [3, 4, 6, 3], (64, 128, 256, 512)), config)


@register_model("tiny")
def tsm_tiny(config: ModelConfig) -> TSMResNet:
    """Width 16, one block per stage (two in layer1, so the halo logic is exercised): for tests."""
    return TSMResNet(make_backbone(BasicBlock, [2, 1, 1, 1], (16, 16, 32, 32)), config)


def load_imagenet_weights(model: TSMResNet, path: str | Path) -> None:
    """Load a local torchvision ImageNet ``.pth`` into the backbone (fc is new). Never unpickles code."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: ImageNet weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, truncated zip, disallowed globals: all one line
        raise ModelError(
            f"{path}: cannot read as a torch weights file ({type(e).__name__}: {str(e).splitlines()[0]})"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{path}: expected a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("fc.")}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    for key, value in own.items():
        if key not in state and key.endswith("num_batches_tracked"):
            continue  # older torchvision files predate this buffer
        if key not in state:
            raise ModelError(f"{path}: missing key {key!r} for arch {model.config.arch}")
        if tuple(state[key].shape) != tuple(value.shape):
            raise ModelError(f"{path}: {key} has shape {tuple(state[key].shape)}, expected {tuple(value.shape)}")
    extra = sorted(set(state) - set(own))
    if extra:
        raise ModelError(f"{path}: unexpected key {extra[0]!r} for arch {model.config.arch}")
    model.load_state_dict({**model.state_dict(), **state})


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
