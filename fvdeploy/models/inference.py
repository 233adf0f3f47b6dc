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
import itertools
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models.resnet import BasicBlock, Bottleneck

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


# Bytes of stem output per stem + layer1 step on CPU, so that a step's maps stay in L2/L3 instead of
# RAM: 7 frames at 224 px in fp32. Measured (bench model's stem + layer1 on 128 frames, resnet18, a
# 2-core Zen 5 with 1 MiB L2 per core and 32 MiB L3): at 224 px, 1 thread, 4/7/10/16 frames per
# step took 0.89/0.83/0.83/0.90 s against 1.36 s whole; 2 threads, 7 frames 0.45 s, 16 frames 0.59 s,
# whole 0.81 s; at 112 px 8..32 frames are alike (0.19-0.20 s against 0.28 s whole).
BLOCK_BYTES = 24 << 20


def default_block_frames(device: torch.device, crop: int, dtype: torch.dtype, stem_channels: int = 64) -> int:
    """Frames per stem + layer1 step: 0 (whole chunks) on GPUs, which want big batches; on CPU as
    many frames as keep one step's stem output (``stem_channels`` at half the crop) within
    :data:`BLOCK_BYTES`."""
    if device.type != "cpu":
        return 0
    stem_bytes = stem_channels * ((crop + 1) // 2) ** 2 * torch.finfo(dtype).bits // 8
    return max(1, BLOCK_BYTES // stem_bytes)


# -- cache blocking in buffers reused from step to step ------------------------------------------------
def _inplace_conv_ok(x: Tensor) -> bool:
    return (
        x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16) and torch.backends.mkldnn.is_available()
    )


def steppable(model: TSMResNet) -> bool:
    """Whether :class:`StepBuffers` can run ``model``'s stem + ``layer1``: an inference copy
    (BatchNorm folded away, see :func:`fold_batchnorm`) of the torchvision stem and blocks."""
    if has_batchnorm(model) or not isinstance(model.maxpool, nn.MaxPool2d) or not torch.backends.mkldnn.is_available():
        return False
    return all(isinstance(b, (BasicBlock, Bottleneck)) for b in model.layer1)


class StepBuffers:
    """Stem + ``layer1`` of a folded model (:func:`steppable`) on one video ``[T, 3, H, W]``, ``step``
    frames at a time, as :func:`frames_blocked`, but every intermediate map of a step is written into
    a buffer kept from step to step (and from call to call, per thread and input shape).

    Why: a step allocates ~10 maps of 5-23 MB (224 px, 7 frames). Where glibc serves them from its
    heap that costs nothing, but under a fixed mmap threshold (``fvdeploy.malloc``) each is a fresh
    mapping, a page fault per 4 KiB, and the steps lost to whole chunks. Here a step allocates
    nothing: convolutions write through oneDNN's in-place fused kernels
    (``mkldnn::_convolution_pointwise_.binary``: ``relu(conv(x) + other)`` into ``other``, the
    block's identity or a zeroed buffer), max-pool through its ``out=`` kernel, the shift through
    :func:`temporal_shift`'s ``out``. The same arithmetic as the unfused ops (oneDNN's kernels both
    ways); the only allocation per call is the returned ``[T, C, h, w]`` (``channels_last``).

    Held: about ``step`` frames of each stem and ``layer1`` map (R18 at 224 px, 7 frames: 75 MiB),
    per thread that calls it and input shape, for the life of the object. CPU only, fp32 or bf16.
    """

    def __init__(self, model: TSMResNet, step: int) -> None:
        if step < 1:
            raise ValueError(f"step must be >= 1, got {step}")
        self.model, self.step = model, step
        self.blocks: list = list(model.layer1)
        self._local = threading.local()

    # -- buffers ---------------------------------------------------------------------------------
    def _buffers(self, frames: Tensor) -> dict:
        key = (tuple(frames.shape[1:]), frames.dtype)
        cache = getattr(self._local, "cache", None)
        if cache is None or cache[0] != key:
            self._local.cache = cache = (key, self._allocate(frames))
        return cache[1]

    def _allocate(self, frames: Tensor) -> dict:
        m, k = self.model, self.step
        cl = torch.channels_last

        def empty(n: int, shape, dtype=frames.dtype) -> Tensor:
            return torch.empty(n, *shape, dtype=dtype, device=frames.device).to(memory_format=cl)

        with torch.inference_mode():  # shapes from one frame
            probe = frames[:1].to(memory_format=cl)
            conv = m.relu(m.conv1(probe))
            pooled = m.maxpool(conv)
        cap = k + len(self.blocks) + 2  # a block's input: 2 frames of context + what the block before emitted
        bufs: dict = {
            "input": empty(k, probe.shape[1:]),
            "conv": empty(k, conv.shape[1:]),
            "pool": empty(k, pooled.shape[1:]),
            "index": empty(k, pooled.shape[1:], torch.long),
            "blocks": [],
        }
        x = pooled
        for block in self.blocks:
            with torch.inference_mode():
                shifted = torch.zeros_like(x)
                mid1 = block.relu(block.conv1(shifted))
                mid2 = block.relu(block.conv2(mid1)) if isinstance(block, Bottleneck) else None
                out = residual_block(block, shifted, x)
            b = {
                "in": empty(cap, x.shape[1:]),
                "shift": empty(cap, x.shape[1:]),
                "mid1": empty(cap, mid1.shape[1:]),
                "mid2": empty(cap, mid2.shape[1:]) if mid2 is not None else None,
                "down": empty(cap, out.shape[1:]) if block.downsample is not None else None,
                "context": empty(2, x.shape[1:]),
                "pending": 0,
            }
            if b["down"] is None and out.shape != x.shape:
                raise ValueError("a layer1 block without downsample changes the map's shape")
            bufs["blocks"].append(b)
            x = out
        return bufs

    # -- the step ----------------------------------------------------------------------------------
    @staticmethod
    def _conv(out: Tensor, x: Tensor, conv: nn.Conv2d, relu: bool, add: bool) -> Tensor:
        """``relu?(conv(x) (+ out))`` written into ``out``."""
        if not add:
            out.zero_()
        return torch.ops.mkldnn._convolution_pointwise_.binary(
            out,
            x,
            conv.weight,
            conv.bias,
            list(conv.padding),  # type: ignore[arg-type]
            list(conv.stride),
            list(conv.dilation),
            conv.groups,
            "add",
            None,
            "relu" if relu else None,
            [],
            "",
        )

    def _stem(self, bufs: dict, frames: Tensor) -> Tensor:
        m, n = self.model, frames.shape[0]
        x = bufs["input"][:n]
        x.copy_(frames)
        conv = self._conv(bufs["conv"][:n], x, m.conv1, relu=True, add=False)
        pool: Any = m.maxpool
        out, index = bufs["pool"][:n], bufs["index"][:n]
        torch.ops.aten.max_pool2d_with_indices.out(
            conv,
            _pair(pool.kernel_size),
            _pair(pool.stride),
            _pair(pool.padding),
            _pair(pool.dilation),
            pool.ceil_mode,
            out=out,
            indices=index,
        )
        return out

    def _block(self, block: Any, b: dict, shifted: Tensor, x: Tensor) -> Tensor:
        """``residual_block(block, shifted, x)`` in the block's buffers; overwrites ``x`` (the
        identity) unless the block has a downsample path."""
        n = x.shape[0]
        if block.downsample is not None:
            identity = self._conv(b["down"][:n], x, block.downsample[0], relu=False, add=False)
        else:
            identity = x
        out = self._conv(b["mid1"][:n], shifted, block.conv1, relu=True, add=False)
        if isinstance(block, Bottleneck):
            out = self._conv(b["mid2"][:n], out, block.conv2, relu=True, add=False)
            return self._conv(identity, out, block.conv3, relu=True, add=True)
        return self._conv(identity, out, block.conv2, relu=True, add=True)

    def __call__(self, frames: Tensor) -> Tensor:
        """``[T, 3, H, W]`` -> ``[T, C, h, w]`` (``channels_last``), as ``forward_frames(frames[None])[0]``."""
        if not _inplace_conv_ok(frames):
            return frames_blocked(self.model, frames, self.step)
        bufs = self._buffers(frames)
        t = frames.shape[0]
        nb = len(self.blocks)
        start = [0] * nb
        done = [0] * nb
        for b in bufs["blocks"]:
            b["pending"] = 0
        result: Tensor | None = None
        for a in range(0, t, self.step):
            x: Tensor | None = self._stem(bufs, frames[a : a + self.step])
            restore: list[tuple[Tensor, Tensor]] = []  # (context, where it goes) once the step is done
            for j, (block, b) in enumerate(zip(self.blocks, bufs["blocks"])):
                assert x is not None
                p, m = b["pending"], x.shape[0]
                buf = b["in"][: p + m]
                buf[p:].copy_(x)
                end = start[j] + p + m
                stop = end if end == t else end - 1
                lo, n = done[j] - start[j], stop - done[j]
                keep = max(stop - 1, 0)
                q = end - keep  # frames kept as the next step's context (at most 2)
                ctx = b["context"][:q]
                ctx.copy_(buf[keep - start[j] :])
                restore.append((ctx, b["in"][:q]))
                b["pending"], start[j], done[j] = q, keep, stop
                if n == 0:
                    x = None
                    break
                shifted = temporal_shift(buf, p + m, out=b["shift"][: p + m])
                x = self._block(block, b, shifted[lo : lo + n], buf[lo : lo + n])
            if x is not None:
                if result is None:
                    result = torch.empty(t, *x.shape[1:], dtype=x.dtype, device=x.device).to(
                        memory_format=torch.channels_last
                    )
                lo = done[-1] - x.shape[0]
                result[lo : done[-1]].copy_(x)
            for ctx, dst in restore:
                dst.copy_(ctx)
        assert result is not None
        return result


def _pair(v) -> list[int]:
    return list(v) if isinstance(v, (tuple, list)) else [int(v), int(v)]


# -- the module's own forward in inference ------------------------------------------------------------
_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (weights key, inference copy)
_COPIES_LOCK = threading.Lock()


def frozen(model: nn.Module, frames: Tensor) -> bool:
    """Whether a forward of ``model`` on ``frames`` may run on an inference copy: eval mode, no
    gradient recorded (``torch.no_grad``/``inference_mode``, or no parameter and no input that
    requires one), not being traced, exported or compiled (those see the plain module)."""
    if model.training or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
        return False
    if torch.is_grad_enabled() and (frames.requires_grad or any(p.requires_grad for p in model.parameters())):
        return False
    return True


def _weights_key(model: nn.Module) -> tuple:
    """Changes whenever a weight or statistic does: in place (optimizer steps, ``load_state_dict``
    bump the tensor's version counter) or by replacement (``.to()``, ``assign=True``)."""
    return tuple(
        (t.data_ptr(), t._version, t.dtype, t.device) for t in itertools.chain(model.parameters(), model.buffers())
    )


def inference_copy(model: TSMResNet) -> TSMResNet:
    """The copy :meth:`TSMResNet.forward` runs when the module is frozen (:func:`frozen`): BatchNorm
    folded (:func:`fold_batchnorm`), ``channels_last``, and on CPU stem + ``layer1`` in
    :class:`StepBuffers` steps. Made on first use and kept (one per model, in the model's device and
    dtype) until a weight changes; :func:`drop_inference_copy` frees it."""
    key = _weights_key(model)
    with _COPIES_LOCK:
        cached = _COPIES.get(model)
        if cached is not None and cached[0] == key:
            copy_ = cached[1]
        else:
            _COPIES.pop(model, None)  # free the stale copy before making the next
            copy_ = fold_batchnorm(model).to(memory_format=torch.channels_last)
            copy_._is_inference_copy = True
            weight = copy_.conv1.weight
            step = default_block_frames(weight.device, model.config.input.crop, weight.dtype, weight.shape[0])
            if weight.device.type == "cpu" and step and steppable(copy_):
                copy_._stepper = StepBuffers(copy_, step)
            _COPIES[model] = (key, copy_)
    copy_.config = model.config  # mode, G, method may be changed on the model between calls
    return copy_


def drop_inference_copy(model: TSMResNet) -> None:
    """Free the inference copy of ``model`` (the memory of a second set of weights)."""
    with _COPIES_LOCK:
        _COPIES.pop(model, None)


def flat_cluster(features: Tensor, num_clusters: int, method: str) -> tuple[Tensor, Tensor]:
    """``TSMResNet.cluster`` for an inference copy (no ``lengths``): cluster means ``[N, G, C, h, w]``
    and ids ``[N, T]``, the same function, on each map flattened in its memory order (a view of a
    ``channels_last`` map, where the logical flatten copies it) and with the runtime's word-wise
    sign-change count. Measured (R18, 224 px, 64 frames, 1 thread): 0.83 s -> see docs/runtime.md."""
    from ..ops.clustering import cluster_ids_from_distances, cluster_weights, sign_changes

    n, t = features.shape[:2]
    order = (0, 1, *(2 + d - 1 for d in _memory_order(features[0, 0:1])[1:]))
    x = features.permute(order)
    rows = (x if x.is_contiguous() else x.contiguous()).reshape(n, t, -1)
    signs = rows > 0
    d = torch.stack([sign_changes(s[1:], s[:-1]) for s in signs])
    ids = cluster_ids_from_distances(d, num_clusters, method)
    weights = cluster_weights(ids, num_clusters, None, dtype=rows.dtype)  # [N, T, G]
    means = torch.matmul(weights.transpose(1, 2), rows)  # [N, G, K] in memory order
    inverse = [order.index(k) for k in range(len(order))]
    return means.reshape(n, num_clusters, *x.shape[2:]).permute(inverse), ids


def _memory_order(x: Tensor) -> tuple[int, ...]:
    return tuple(sorted(range(x.dim()), key=lambda d: (-x.stride(d), d)))
