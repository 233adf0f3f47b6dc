"""The inference copy of a TSMResNet: BatchNorm folded into the convolution before it.

Every BatchNorm of a torchvision ResNet follows a bias-free convolution (``conv1/bn1`` of the stem
and of each block, ``conv2/bn2``, ``conv3/bn3``, ``downsample.0/.1``). In eval mode a BatchNorm is
a per-channel affine map, so it folds exactly into that convolution's weight and bias
(``torch.nn.utils.fusion.fuse_conv_bn_eval``); the BatchNorm becomes ``nn.Identity`` and one pass
over each activation map disappears. Folding changes the rounding of fp32 arithmetic, not the
function: outputs agree within the fp32 tolerances of docs/design.md#equality (tests/test_inference_graph.py).

Training never sees a folded model: :func:`fold_batchnorm` works on a deep copy.

:func:`frames_blocked` runs stem + ``layer1`` a few frames at a time (the torch backend does on CPU,
where their big maps would otherwise go through RAM between passes); the shift's context carries
from step to step, so it is the same function.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..ops.temporal_shift import temporal_shift
from .tsm_resnet import TSMResNet, residual_block


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


# -- cache blocking ----------------------------------------------------------------------------------
def wavefront(frames: Tensor, first: Callable[[Tensor], Tensor], blocks: Sequence[nn.Module], step: int) -> Tensor:
    """``blocks(first(frames))`` on one sequence ``frames: [T, ...]``, ``step`` frames at a time:
    ``first`` is per frame, each block a :func:`shifted_block` over all T frames (zeros at both ends).

    Why: on CPU, stem + ``layer1`` of a 64-frame chunk at 224 px make maps of 50-200 MB, so every
    elementwise pass (ReLU, max-pool, shift, residual add) streams them through RAM, and glibc maps
    each buffer over 32 MB afresh (a page fault per 4 KiB). A few frames at a time stay in cache.
    Exact: block j's output at frame t needs its input at t-1, t and t+1 only, so block j runs one
    frame behind block j-1 and keeps one frame of context; nothing is computed twice.
    """
    t = frames.shape[0]
    pending: list[Tensor | None] = [None] * len(blocks)  # block j's input frames start[j], start[j]+1, ...
    start = [0] * len(blocks)
    done = [0] * len(blocks)  # block j has emitted frames [0, done[j])
    outs = []
    for a in range(0, t, step):
        x: Tensor | None = first(frames[a : a + step])
        for j, block in enumerate(blocks):
            prev = pending[j]
            buf = x if prev is None else torch.cat([prev, x])
            end = start[j] + buf.shape[0]
            stop = end if end == t else end - 1  # frames whose two neighbours have arrived
            lo, n = done[j] - start[j], stop - done[j]
            keep = max(stop - 1, 0)
            pending[j], start[j], done[j] = buf[keep - start[j] :], keep, stop
            if n == 0:
                x = None
                break
            # The window's own zero padding reaches only its first frame (context, or frame 0) and
            # its last (not emitted, unless it is frame T-1): the emitted rows are exact.
            x = residual_block(block, temporal_shift(buf, buf.shape[0])[lo : lo + n], buf[lo : lo + n])
        if x is not None:
            outs.append(x)
    return torch.cat(outs)


def frames_blocked(model: TSMResNet, frames: Tensor, step: int) -> Tensor:
    """``model.forward_frames(frames[None])[0]`` on one video ``[T, 3, H, W]``, ``step`` frames at a time."""
    return wavefront(frames, model.forward_stem, list(model.layer1), step)
