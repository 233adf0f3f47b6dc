"""The inference copy of a TSMResNet: BatchNorm folded into the convolution before it.

Every BatchNorm of a torchvision ResNet follows a bias-free convolution (``conv1/bn1`` of the stem
and of each block, ``conv2/bn2``, ``conv3/bn3``, ``downsample.0/.1``). In eval mode a BatchNorm is
a per-channel affine map, so it folds exactly into that convolution's weight and bias
(``torch.nn.utils.fusion.fuse_conv_bn_eval``); the BatchNorm becomes ``nn.Identity`` and one pass
over each activation map disappears. Folding changes the rounding of fp32 arithmetic, not the
function: outputs agree within DECISIONS.md's fp32 tolerances (tests/test_inference_graph.py).

Training never sees a folded model: :func:`fold_batchnorm` works on a deep copy.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .tsm_resnet import TSMResNet


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """Dotted names ``(conv, bn)`` of every BatchNorm2d that directly follows a Conv2d, found by
    the torchvision ResNet naming (``convK``/``bnK`` siblings, ``downsample.0``/``downsample.1``)."""
    pairs = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.BatchNorm2d):
            continue
        parent, _, leaf = name.rpartition(".")
        if leaf.startswith("bn"):
            conv = f"{parent}.conv{leaf[2:]}" if parent else f"conv{leaf[2:]}"
        elif leaf == "1" and parent.endswith("downsample"):
            conv = f"{parent}.0"
        else:
            continue
        if isinstance(model.get_submodule(conv), nn.Conv2d):
            pairs.append((conv, name))
    return pairs


def fold_batchnorm(model: TSMResNet) -> TSMResNet:
    """A deep copy of ``model`` in eval mode with every BatchNorm2d folded into its convolution
    (weights in the model's dtype; fold fp32 weights before casting to fp16/bf16). ``model`` itself
    is left untouched (its mode included)."""
    folded = copy.deepcopy(model).eval()
    for conv_name, bn_name in conv_bn_pairs(folded):
        conv, bn = folded.get_submodule(conv_name), folded.get_submodule(bn_name)
        _replace(folded, conv_name, fuse_conv_bn_eval(conv, bn))
        _replace(folded, bn_name, nn.Identity())
    return folded


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)
