"""The engine: one loaded model and everything that runs frames through it, for every driver.

The drivers (``runtime.Classifier`` for whole videos, ``watch.Watcher`` for windows over streams,
the service on top of both) own only their strategy: which frames go in when, and what is kept
between calls. Everything else happens here, once:

- opening a source with the decoder policy, and reading it (a reader thread where the source
  decodes on its own, frames shrunk to the crop in that thread where they arrive on the host and
  the model runs on the CPU);
- staging (pinned host buffers to CUDA, reused), preprocessing, stem + ``layer1``
  (:meth:`Engine.features`, or split in two for windows: :attr:`Engine.stages`);
- the sign distance (``ops.clustering.sign_changes``) and the cluster-mean sums
  (``engine.clusters``), ``layer2..4`` and the head (:meth:`Engine.logits`);
- scoring (``engine.scoring``) and the memory model (``engine.plan``).
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..backends.base import Backend
from ..config import ModelConfig
from ..errors import BackendError, FvdeployError
from ..io.names import DECODERS
from ..io.sources import FrameReader, FrameSource, open_source
from ..io.staging import HostStager
from ..io.transforms import preprocess, shrink_in_reader, to_input
from .plan import FrameCosts, MemoryPlan, check_frame_fits, frame_costs, plan_video
from .scoring import Locate, Scored, score
from .stages import FrameStages, frame_stages

DEFAULT_MAX_MEMORY_MIB = {"cpu": 1024, "cuda": 2048}
MIN_MEMORY_MIB = 16


class Engine:
    """A loaded backend ready to run frames (see the module docstring).

    ``backend``: a loaded backend (``fvdeploy.backends``); ``config``: the model config the
    drivers follow (mode, G, method may differ from the backend's: the weights are the same);
    ``max_memory_mib``: MiB held beyond the model, decoded frames included (default 1024 on the
    CPU, 2048 on CUDA; at least 16); ``decoder``: opencv | nvdec | auto for files; ``top_k``:
    labels per result; ``clusters_given``: ``config.num_clusters`` was chosen for this load
    (``--clusters``), so drivers keep it as it is (see ``watch.options.clusters_for``).

    Raises ``FvdeployError`` for an unknown decoder, a budget under 16 MiB or ``top_k < 1``, and
    ``BackendError`` for ``decoder="nvdec"`` where NVDEC cannot run."""

    def __init__(
        self,
        backend: Backend,
        *,
        config: ModelConfig | None = None,
        max_memory_mib: int | None = None,
        decoder: str = "opencv",
        top_k: int = 5,
        chunk_size: int | None = None,
        clusters_given: bool = False,
    ) -> None:
        if decoder not in DECODERS:
            raise FvdeployError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
        if decoder == "nvdec":
            from ..io.nvdec import probe_nvdec

            missing = probe_nvdec() if backend.device.type == "cuda" else "it needs a CUDA device"
            if missing is not None:
                raise BackendError(f"--decoder nvdec: {missing}")
        if top_k < 1:
            raise FvdeployError(f"--top-k must be >= 1, got {top_k}")
        if chunk_size is not None and chunk_size < 1:
            raise FvdeployError(f"--chunk-size must be >= 1, got {chunk_size}")
        self.backend = backend
        self.config: ModelConfig = config or backend.config
        self.device: torch.device = backend.device
        self.decoder = decoder
        self.top_k = top_k
        self.chunk_size = chunk_size
        # G was chosen for this load (--clusters), not trained: drivers must not rescale it
        self.clusters_given = clusters_given
        self.max_memory_mib = int(max_memory_mib or DEFAULT_MAX_MEMORY_MIB.get(self.device.type, 1024))
        if self.max_memory_mib < MIN_MEMORY_MIB:
            raise FvdeployError(f"--max-memory {self.max_memory_mib} MiB is too small (at least {MIN_MEMORY_MIB})")
        # On the CPU the decode thread shrinks frames to the crop (uint8), so the model thread gets
        # small frames; on CUDA the GPU resizes and the host only decodes.
        self.shrink_on_host = self.device.type == "cpu"
        self._stagers: queue.SimpleQueue[HostStager] = queue.SimpleQueue()
        self._stages: FrameStages | None = None
        precision = getattr(backend, "features_precision", backend.precision)
        stepped = getattr(backend, "stepper", None) is not None
        self.costs: FrameCosts = frame_costs(backend.feature_shape, self.config.input.crop, precision, stepped)

    def derive(self, **changes: Any) -> Engine:
        """The same loaded backend (and staging buffers) with other settings: ``config`` (mode, G,
        method), ``top_k``, ``max_memory_mib``, ``chunk_size``. Cheap: nothing is loaded again."""
        other = object.__new__(Engine)
        other.__dict__.update(self.__dict__)
        for name, value in changes.items():
            if name not in ("config", "top_k", "max_memory_mib", "chunk_size", "clusters_given"):
                raise TypeError(f"derive() got an unexpected setting {name!r}")
            setattr(other, name, value)
        if other.top_k < 1:
            raise FvdeployError(f"--top-k must be >= 1, got {other.top_k}")
        if other.max_memory_mib < MIN_MEMORY_MIB:
            raise FvdeployError(f"--max-memory {other.max_memory_mib} MiB is too small (at least {MIN_MEMORY_MIB})")
        return other

    # -- facts -----------------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        return self.config.labels

    @property
    def halo(self) -> int:
        """Frames of context per side that stem + ``layer1`` need (one per shifted block)."""
        return self.backend.halo

    @property
    def budget(self) -> int:
        return self.max_memory_mib * 2**20

    @property
    def run_info(self) -> dict[str, Any]:
        b = self.backend
        return {
            "backend": b.name,
            "provider": b.provider,
            "device": str(b.device),
            "precision": b.precision,
            "mode": self.config.mode,
        }

    # -- sources ---------------------------------------------------------------------------------
    def open(
        self, source: Any, *, budget: int | None = None, whole_frames: bool = False, **options: Any
    ) -> FrameSource:
        """``io.sources.open_source`` with this engine's decoder for files and its GPU. A decoder
        that reads a file's frame size first refuses a frame that cannot fit ``budget`` bytes
        (default: the engine's) before decoding one (``engine.plan.FrameTooLarge``);
        ``whole_frames``: the frames will not be shrunk where they are decoded."""
        gpu = self.device.index or 0 if self.device.type == "cuda" else 0
        options.setdefault("decoder", self.decoder)
        shrunk = self.shrink_on_host and not whole_frames

        def frame_check(width: int, height: int, name: str) -> None:
            check_frame_fits(
                3 * width * height, self.costs, budget or self.budget, shrunk, width=width, height=height, name=name
            )

        if isinstance(source, (str, Path, int)) and not isinstance(source, bool):
            options.setdefault("frame_check", frame_check)
        return open_source(source, gpu_id=gpu, **options)

    def shrinks(self, src: FrameSource, threaded: bool | None = None) -> bool:
        """Whether a reader of ``src`` shrinks frames to the crop in its own thread."""
        return self.shrink_on_host and src.host_frames and (src.threaded if threaded is None else threaded)

    def reader(self, src: FrameSource, *, whole_frames: bool = False, **options: Any) -> FrameReader:
        """A :class:`FrameReader` of ``src`` (``options``: its arguments) that shrinks frames in
        the reader thread where :meth:`shrinks` says so, unless ``whole_frames`` are wanted."""
        shrunk = not whole_frames and self.shrinks(src, options.get("threaded"))
        transform = partial(shrink_in_reader, spec=self.config.input) if shrunk else None
        return FrameReader(src, transform=transform, **options)

    def check_frames_fit(self, src: FrameSource, budget: int | None = None, shrunk: bool = True) -> None:
        """One decoded frame of ``src`` must fit ``budget`` bytes (default: the engine's) with room
        for the model: else ``engine.plan.FrameTooLarge``, one line naming its size and the budget."""
        if src.frame_bytes:
            check_frame_fits(
                src.frame_bytes,
                self.costs,
                budget or self.budget,
                shrunk,
                width=src.width,
                height=src.height,
                name=src.describe(),
            )

    def plan(self, frame_bytes: int, parallel: int = 1, share: int = 1, shrunk: bool = False) -> MemoryPlan:
        """Classify's split of the budget for one video (``engine.plan.plan_video``)."""
        return plan_video(
            self.budget,
            self.costs,
            self.halo,
            frame_bytes,
            parallel=parallel,
            share=share,
            shrunk=shrunk,
            chunk_size=self.chunk_size,
        )

    # -- compute ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def staging(self) -> Iterator[HostStager]:
        """Staging buffers for one video or watch at a time: allocated once, then reused
        (pinned allocation is slow); several concurrent users each get their own."""
        try:
            stager = self._stagers.get_nowait()
        except queue.Empty:
            stager = HostStager(self.device)
        try:
            yield stager
        finally:
            self._stagers.put(stager)

    def prepare(self, stager: HostStager, frames: Any, color: str, shrunk: bool) -> Tensor:
        """uint8 frames ``[k, H, W, 3]`` (``[k, crop, crop, 3]`` when the reader ``shrunk`` them)
        -> the model's float input ``[k, 3, crop, crop]`` on the device."""
        x = stager.upload(frames)
        return to_input(x, self.config.input, color) if shrunk else preprocess(x, self.config.input, color)

    def features(self, x: Tensor) -> Tensor:
        """Stem + ``layer1`` over ``[k, 3, S, S]`` consecutive frames (zero shift padding at both
        ends) -> ``layer1`` maps ``[k, C, h, w]`` on the device."""
        return self.backend.frame_features(x)

    @property
    def stages(self) -> FrameStages:
        """Stem and ``layer1`` as two calls (windows rerun ``layer1`` at their edges)."""
        if self._stages is None:
            self._stages = frame_stages(self.backend)
        return self._stages

    def logits(self, maps: Tensor) -> Tensor:
        """``layer2..4`` + head over ``[N, M, C, h, w]`` (M cluster means or sampled frames per
        clip) -> float32 ``[N, M, classes]`` on the CPU."""
        return self.backend.clip_logits(maps.to(self.device)).float().cpu()

    def score(
        self, video_logits: Tensor, unit_logits: Tensor, spans: Sequence[tuple[int, int]], locate: Locate
    ) -> Scored:
        """``engine.scoring.score`` with this model's labels and ``top_k``."""
        return score(video_logits, unit_logits, spans, self.labels, self.top_k, locate)

    def with_config(self, **changes: Any) -> Engine:
        """:meth:`derive` with ``config.replace(**changes)`` (mode, num_clusters, method, segments)."""
        if not changes:
            return self
        given = self.clusters_given or "num_clusters" in changes
        return self.derive(config=self.config.replace(**changes), clusters_given=given)
