"""TSM ResNets on torchvision backbones, and the full-video model of "No frame left behind".

Forward in named stages, so the runtime's chunking and the exported split pair reuse them:

    forward_frames  stem + layer1 on every frame, temporal shift over frames     [N, T, C, h, w]
    cluster         cluster ids + cluster means (ops.clustering)                  [N, G, C, h, w]
    forward_clips   layer2..4 with the shift over clusters, global pool          [N, G, D]
    forward_head    dropout + fc, per cluster                                      [N, G, classes]

Mode ``full`` runs all four on every frame of a video; mode ``tsm`` takes frames that were already
sampled (K per video, or all of them: TSM-all) and skips the clustering. With G = T both give the
same logits on the same weights.

The blocks are torchvision's own modules (so ImageNet and TSM weights load by name); the shift is
applied in :func:`shifted_block` on the residual branch before ``conv1``, never on the identity.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from ..config import ModelConfig
from ..ops.clustering import aggregate_clusters, cluster_ids, effective_lengths
from ..ops.halo import stream_with_halo
from ..ops.temporal_shift import temporal_shift


class ModelOutput(NamedTuple):
    logits: Tensor  # [N, classes], mean over clusters (or segments) of cluster_logits
    cluster_logits: Tensor  # [N, G, classes]
    cluster_ids: Tensor  # [N, T] long, -1 on padding


def shifted_block(block: Any, x: Tensor, num_frames: int, lengths: Tensor | None = None) -> Tensor:
    """A torchvision BasicBlock/Bottleneck with the residual shift (TSM "blockres").

    ``block`` is Any: the layers are ``nn.Sequential`` of those blocks, whose items type-check
    as plain ``nn.Module``."""
    return residual_block(block, temporal_shift(x, num_frames, lengths), x)


def residual_block(block: Any, shifted: Tensor, x: Tensor) -> Tensor:
    """The body of :func:`shifted_block` given the residual branch's input already shifted in time
    (``shifted``) and the unshifted input ``x`` that the identity/downsample path reads."""
    identity = x if block.downsample is None else block.downsample(x)
    out = block.relu(block.bn1(block.conv1(shifted)))
    out = block.bn2(block.conv2(out))
    if isinstance(block, Bottleneck):
        out = block.bn3(block.conv3(block.relu(out)))
    out += identity  # in place, as torchvision's blocks do: one map fewer to allocate and write
    return block.relu(out)


def repeat_last_valid(frames: Tensor, lengths: Tensor) -> Tensor:
    """Replace positions ``>= lengths[n]`` of ``frames: [N, T, ...]`` by video n's last valid frame."""
    n, t = frames.shape[:2]
    positions = torch.arange(t, device=frames.device)
    src = torch.minimum(positions[None, :], (lengths.to(frames.device) - 1)[:, None])
    flat = src + torch.arange(n, device=frames.device)[:, None] * t
    return frames.reshape(n * t, *frames.shape[2:])[flat.reshape(-1)].reshape(frames.shape)


def pad_frames(frames: Tensor, min_frames: int) -> Tensor:
    """Pad the time axis of ``[N, T, ...]`` to ``min_frames`` by repeating the last frame."""
    t = frames.shape[1]
    if t >= min_frames:
        return frames
    return torch.cat([frames, frames[:, -1:].expand(-1, min_frames - t, *frames.shape[2:])], 1)


class TSMResNet(nn.Module):
    """The full-video model (mode ``full``) and TSM (mode ``tsm``) on one ResNet.

    ``backbone``: a torchvision-layout ResNet (``make_backbone``; its ``fc`` is replaced by one of
    ``config.num_classes`` outputs). ``config``: arch, G (``num_clusters``), clustering method,
    mode, dropout, labels. Inputs are float frames ``[N, T, 3, S, S]``, normalised with
    ``config.input`` mean/std, S = ``config.input.crop`` (224 for the paper's models);
    ``lengths`` (int64 ``[N]``) marks the valid frames of a padded batch. :meth:`forward` returns
    a :class:`ModelOutput`: logits ``[N, classes]`` (mean of the per-cluster logits), cluster
    logits ``[N, G, classes]`` and cluster ids ``[N, max(T, G)]`` (-1 on padding). The stages
    below are what the runtime and the exported split pair call.

    In inference (eval mode, no gradient recorded: see ``models.inference.frozen``) :meth:`forward`
    runs an inference copy of the module instead (BatchNorm folded, ``channels_last``, on CPU stem +
    ``layer1`` a few frames at a time): the same outputs within docs/design.md#equality's fp32 tolerance, made
    once and kept until a weight changes (a second set of weights in memory; set
    ``fast_inference = False`` on the instance for the plain forward). Training (train mode, or
    gradients) always runs the plain forward.

    No input validation here (the runtime and the bundle loader give the one-line errors): a wrong
    shape or dtype is torch's ``RuntimeError``; ``forward_frames_chunked`` raises ``ValueError``
    for a chunk size below 1.
    """

    fast_inference: bool = True  # forward runs the inference copy where the module is frozen
    _is_inference_copy: bool = False
    _stepper: Any = None  # an inference copy's models.inference.StepBuffers (CPU)

    def __init__(self, backbone: nn.Module, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        bb: Any = backbone  # nn.Module attributes type-check as Tensor | Module
        self.conv1: nn.Conv2d = bb.conv1
        self.bn1: nn.BatchNorm2d = bb.bn1
        self.relu: nn.Module = bb.relu
        self.maxpool: nn.Module = bb.maxpool
        self.layer1: nn.Sequential = bb.layer1
        self.layer2: nn.Sequential = bb.layer2
        self.layer3: nn.Sequential = bb.layer3
        self.layer4: nn.Sequential = bb.layer4
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(bb.fc.in_features, config.num_classes)
        # How training runs the frames stage with gradients (``frames_runner(stage, frames,
        # lengths)``), e.g. activation checkpointing: None runs it directly. Not a module, not saved.
        self.frames_runner: Callable[..., Tensor] | None = None

    # -- properties ---------------------------------------------------------------------------
    @property
    def num_clusters(self) -> int:
        return self.config.num_clusters

    @property
    def frame_halo(self) -> int:
        """Frames of context each side that stem + layer1 need: one per shifted block."""
        return len(self.layer1)

    @property
    def feature_channels(self) -> int:
        """Channels of a layer1 output map."""
        last: Any = self.layer1[-1]  # conv, not bn: an inference copy has its BatchNorms folded away
        return (last.conv3 if isinstance(last, Bottleneck) else last.conv2).out_channels

    # -- stages -------------------------------------------------------------------------------
    def forward_frames(self, frames: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Stem + layer1 on every frame. ``frames: [N, T, 3, H, W]`` -> ``[N, T, C, h, w]``.

        ``lengths`` (effective, i.e. already ``>= G`` where the caller padded) ends each video's
        shift at its own length.
        """
        if self.frames_runner is not None and torch.is_grad_enabled():
            return self.frames_runner(self._frames, frames, lengths)
        return self._frames(frames, lengths)

    def _frames(self, frames: Tensor, lengths: Tensor | None = None) -> Tensor:
        n, t = frames.shape[:2]
        x = self.forward_stem(frames.reshape(n * t, *frames.shape[2:]))
        return self.forward_layer1(x.reshape(n, t, *x.shape[1:]), lengths)

    def forward_stem(self, frames: Tensor) -> Tensor:
        """The stem (conv1, bn1, relu, maxpool), per frame: ``[k, 3, H, W]`` -> ``[k, 64, H/4, W/4]``."""
        return self.maxpool(self.relu(self.bn1(self.conv1(frames))))

    def forward_layer1(self, maps: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``layer1`` over N sequences of consecutive stem maps ``[N, T, C, h, w]`` (the shift over
        frames, zero padding at both ends; ``lengths`` ends each sequence early) -> ``[N, T, C', h, w]``."""
        n, t = maps.shape[:2]
        x = maps.reshape(n * t, *maps.shape[2:])
        for block in self.layer1:
            x = shifted_block(block, x, t, lengths)
        return x.reshape(n, t, *x.shape[1:])

    def cluster(self, features: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Cluster means ``[N, G, C, h, w]`` (with gradient) and cluster ids ``[N, T]`` (int64, no
        gradient, -1 beyond ``lengths``) of layer1 features ``[N, T, C, h, w]``; T >= G."""
        g = self.config.num_clusters
        if self._is_inference_copy and lengths is None and features.device.type == "cpu":
            from .inference import flat_cluster

            return flat_cluster(features, g, self.config.method)
        with torch.no_grad():
            ids = cluster_ids(features.detach(), g, self.config.method, lengths)
        return aggregate_clusters(features, ids, g, lengths), ids

    def forward_clips(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """layer2..4 over S maps per video (clusters or sampled frames) -> pooled ``[N, S, D]``.
        ``lengths`` only for TSM-all on a padded batch (clusters are never padding)."""
        n, s = x.shape[:2]
        x = x.reshape(n * s, *x.shape[2:])
        for layer in (self.layer2, self.layer3, self.layer4):
            for block in layer:
                x = shifted_block(block, x, s, lengths)
        return x.mean((2, 3)).reshape(n, s, -1)

    def forward_head(self, features: Tensor) -> Tensor:
        """Dropout + fc: pooled features ``[..., D]`` -> logits ``[..., classes]``."""
        return self.fc(self.dropout(features))

    # -- whole model --------------------------------------------------------------------------
    def forward(self, frames: Tensor, lengths: Tensor | None = None) -> ModelOutput:
        """``frames: [N, T, 3, H, W]`` normalised; ``lengths: LongTensor[N]`` valid frames per video.

        Mode ``full``: every frame, G clusters (a video shorter than G is padded by repeating its
        last frame). Mode ``tsm``: the frames given are the sampled segments (K, or all).
        Frozen (eval, no gradient), it runs the inference copy (see the class docstring).
        """
        if self.fast_inference and not self._is_inference_copy:
            from .inference import frozen, inference_copy

            if frozen(self, frames):
                return inference_copy(self)(frames, lengths)
        if self.config.mode == "tsm":
            return self.forward_tsm(frames, lengths)
        g = self.config.num_clusters
        frames = pad_frames(frames, g)
        if lengths is not None:
            frames = repeat_last_valid(frames, lengths)
            lengths = effective_lengths(lengths.to(frames.device), g)
        means, ids = self.cluster(self._frame_features(frames, lengths), lengths)
        cluster_logits = self.forward_head(self.forward_clips(means))
        return ModelOutput(cluster_logits.mean(1), cluster_logits, ids)

    def forward_tsm(self, frames: Tensor, lengths: Tensor | None = None) -> ModelOutput:
        """TSM: every given frame through the whole network, logits averaged over frames."""
        n, t = frames.shape[:2]
        positions = torch.arange(t, device=frames.device)
        if lengths is not None:
            frames = repeat_last_valid(frames, lengths)
        x = self._frame_features(frames, lengths)
        seg_logits = self.forward_head(self.forward_clips(x, lengths))
        if lengths is None:
            return ModelOutput(seg_logits.mean(1), seg_logits, positions.expand(n, t))
        valid = positions[None, :] < lengths.to(frames.device)[:, None]
        w = valid.to(seg_logits.dtype)
        logits = (seg_logits * w[:, :, None]).sum(1) / w.sum(1, keepdim=True)
        return ModelOutput(logits, seg_logits, torch.where(valid, positions, -1))

    def _frame_features(self, frames: Tensor, lengths: Tensor | None) -> Tensor:
        """``forward_frames``; an inference copy on CPU runs it in steps, video by video (where no
        video of the batch ends early: a padded batch runs whole)."""
        t = frames.shape[1]
        if self._stepper is None or (lengths is not None and bool((lengths < t).any())):
            return self.forward_frames(frames, lengths)
        if frames.shape[0] == 1:
            return self._stepper(frames[0])[None]
        return torch.stack([self._stepper(video) for video in frames])

    # -- bounded-memory stem + layer1 -----------------------------------------------------------
    def iter_frame_features(self, chunks: Iterable[Tensor], min_frames: int = 1) -> Iterator[Tensor]:
        """Stream stem + layer1 over one video given as chunks ``[k, 3, H, W]`` of consecutive frames.

        Concatenated, the yielded ``[m, C, h, w]`` chunks equal ``forward_frames`` on the whole video
        (padded to ``min_frames`` by repeating its last frame); memory is bounded by the chunk size
        plus ``frame_halo`` frames of context each side (see ``ops.halo``).
        """
        return stream_with_halo(lambda x: self.forward_frames(x[None])[0], chunks, self.frame_halo, min_frames)

    def forward_frames_chunked(self, frames: Tensor, chunk_size: int) -> Tensor:
        """``forward_frames`` on one video ``[T, 3, H, W]`` in chunks of ``chunk_size`` frames."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        return torch.cat(list(self.iter_frame_features(frames.split(chunk_size))))


def make_backbone(
    block: type[BasicBlock] | type[Bottleneck], layers: list[int], widths: tuple[int, int, int, int]
) -> nn.Module:
    """A torchvision-layout ResNet (same attribute names, so the same state-dict keys) of any width."""
    from torchvision.models.resnet import ResNet

    if widths == (64, 128, 256, 512):
        return ResNet(block, layers)
    net = nn.Module()
    stem = widths[0]
    net.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(stem)
    net.relu = nn.ReLU(inplace=True)
    net.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    inplanes = stem
    for i, (planes, n) in enumerate(zip(widths, layers)):
        stride = 1 if i == 0 else 2
        downsample = None
        if stride != 1 or inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        blocks = [block(inplanes, planes, stride, downsample)]
        inplanes = planes * block.expansion
        blocks += [block(inplanes, planes) for _ in range(1, n)]
        setattr(net, f"layer{i + 1}", nn.Sequential(*blocks))
    net.fc = nn.Linear(inplanes, 1000)
    return net
