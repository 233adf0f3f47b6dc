"""Classify videos of any length end to end: decode, preprocess, model, results.

    clf = Classifier.load()                      # bundled default model, best device
    result = clf.classify("video.mp4")           # or a uint8 array [T, H, W, 3], or an iterator
    for r in clf.classify_many(paths): ...       # in order; bad inputs come back with .error set

Mode ``full`` (the method): every frame through stem + layer1 in chunks, neighbour distances,
G clusters, cluster means through layer2..4. Mode ``tsm``: TSM's test sampling, the centre frame of
K equal segments (``segments=0``: every frame, TSM-all). Memory is bounded by ``max_memory_mib``
whatever the length (see ``engine/clusters.py``); decoding runs in a background thread.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..backends import create_backend, resolve_device, resolve_precision
from ..backends.base import Backend
from ..backends.names import default_features_precision
from ..bundle import read_config, resolve_model_path
from ..engine.clusters import ClusterAccumulator, MemoryBudgetExceeded
from ..engine.core import Engine
from ..engine.plan import MemoryPlan
from ..errors import FvdeployError, InputError, ModelError, VideoError
from ..io.sources import FrameReader, FrameSource
from ..io.staging import HostStager
from ..io.urls import redact
from ..malloc import bound_heap_growth
from ..ops.clustering import cluster_segments
from ..ops.halo import rechunk, stream_with_halo
from ..ops.sampling import segment_bounds, tsm_indices
from ..records import VideoResult
from .options import REQUEST_FIELDS as REQUEST_FIELDS_ALLOWED
from .options import ClassifyOptions

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]  # (frames decoded so far, frames announced or 0)
# Classifier.load's keyword arguments before ClassifyOptions, and the option each one sets.
LEGACY_NAMES = {"num_clusters": "clusters", "max_memory_mib": "max_memory", "topk": "top_k"}


class Classifier:
    """A loaded model that classifies whole videos of any length in bounded memory.

    Build it with :meth:`load` (a model folder, a device, a backend: a :class:`ClassifyOptions`
    or its fields as keywords) or around a loaded backend or :class:`~fvdeploy.engine.Engine`.
    Inputs: a path or URL of a finite video, a ``uint8`` array ``[T, H, W, 3]`` (or grey
    ``[T, H, W]``), or an iterator of ``[H, W, 3]`` frames; BGR by default (``color="rgb"``
    accepted). Every frame is read; frames are resized and centre-cropped to the model's
    ``input.crop`` square inside. Each call returns a :class:`VideoResult` (label, top-k softmax
    scores, segments in frames ``[start, end)`` and presentation seconds). Memory held beyond the
    loaded model stays within ``max_memory_mib`` MiB whatever T, decoded frames included. Live
    sources (cameras, rtsp...) have no end: use ``fvdeploy.watch`` for them.

    The engine (``self.engine``) runs the frames; this driver owns the whole-video strategy: the
    memory path (features kept verbatim, else slot sums plus recomputing the chunks that straddle
    a boundary), TSM sampling, and several videos decoding ahead (``classify_many``).
    ``config`` is the model's :class:`ModelConfig` (labels, G, method, mode); ``last_stats`` holds
    the last call's re-decoded frames and memory path (benchmarks read it).
    """

    def __init__(
        self,
        backend: Backend | None = None,
        *,
        engine: Engine | None = None,
        max_memory_mib: int | None = None,
        chunk_size: int | None = None,
        topk: int = 5,
        model_path: str | None = None,
        memory_plan: MemoryPlan | None = None,
        decoder: str = "opencv",
        decode_workers: int = 1,
        concurrent_finish: bool | None = None,
        fast_resize: bool | None = None,
    ) -> None:
        """``backend``: a loaded backend (``fvdeploy.backends``), or ``engine``: a loaded engine
        (then ``max_memory_mib``, ``chunk_size``, ``topk`` and ``decoder`` are the engine's).
        ``max_memory_mib``: MiB the runtime may hold beyond the model (default 1024 on the CPU,
        2048 on CUDA; at least 16). ``chunk_size``: frames per stem + layer1 call (default: from
        the budget). ``memory_plan`` fixes how the budget is split (for tests and benchmarks of
        the bounded-memory path); by default it is derived from the budget per video.
        ``decode_workers``: videos decoded ahead (and in parallel) by ``classify_many``;
        ``concurrent_finish``: whether those videos also compute at once (default: on CUDA).
        ``fast_resize`` is accepted and ignored (frames are resized in uint8 everywhere).

        Raises ``FvdeployError`` for an unknown decoder, ``decode_workers < 1`` or a budget under
        16 MiB, and ``BackendError`` for ``decoder="nvdec"`` where NVDEC cannot run."""
        if fast_resize is not None:
            warnings.warn("fast_resize has no effect (frames are resized in uint8)", DeprecationWarning, stacklevel=2)
        if decode_workers < 1:
            raise FvdeployError(f"--decode-workers must be >= 1, got {decode_workers}")
        if engine is None:
            if backend is None:
                raise TypeError("Classifier needs a backend or an engine")
            engine = Engine(backend, max_memory_mib=max_memory_mib, decoder=decoder, top_k=topk, chunk_size=chunk_size)
        self.engine = engine
        self.memory_plan = memory_plan
        self.decode_workers = decode_workers
        self.concurrent_finish = engine.device.type == "cuda" if concurrent_finish is None else concurrent_finish
        self.model_path = model_path
        self.last_stats: dict = {}

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        model: str | Path | None = None,
        device: str | None = None,
        backend: str | None = None,
        *,
        options: ClassifyOptions | None = None,
        concurrent_finish: bool | None = None,
        fast_resize: bool | None = None,
        bound_heap: bool = False,
        **fields: Any,
    ) -> Classifier:
        """Load a model folder (default: the bundled model) onto a device with a backend.

        ``options``: a :class:`ClassifyOptions`; its fields may also be given as keywords
        (``device="cpu", backend="onnxruntime", precision="bf16", mode="tsm", segments=8,
        clusters=16, method="slope", top_k=3, max_memory=512, chunk_size=32, decoder="opencv",
        decode_workers=2, features_precision="fp32"``; the older spellings ``num_clusters``,
        ``max_memory_mib`` and ``topk`` still work). Keywords override ``options``.
        ``device``: auto | cpu | cuda | cuda:N. ``backend``: one of ``backends.names.BACKENDS``
        (the exported ones read ``MODEL/export/``). ``precision``: default fp16 on CUDA, fp32 on
        the CPU. ``mode``/``segments``/``clusters``/``method`` override how the checkpoint was
        trained (the weights are the same for every mode). ``decoder``: default auto on CUDA,
        opencv on the CPU. ``features_precision``: the precision of stem + layer1 (default: the
        precision). ``concurrent_finish``: see the constructor. ``bound_heap``: fix glibc's mmap
        threshold for this process (``fvdeploy.malloc``: peak RSS stays flat over long videos, at a
        cost in page faults; a process-wide change, so the library makes it only when asked; the
        CLI asks).

        Raises ``OptionsError`` (a value out of range), ``ModelError`` (missing or corrupt model
        folder, an override the model cannot take), ``BackendError`` (backend, device, provider or
        precision not available here, never a silent fallback) and ``FvdeployError``."""
        opts = _options(options, model=model, device=device, backend=backend, **fields)
        if bound_heap:
            bound_heap_growth()
        path = resolve_model_path(opts.model)
        config = read_config(path)
        changes = {
            k: v
            for k, v in dict(
                mode=opts.mode, segments=opts.segments, num_clusters=opts.clusters, method=opts.method
            ).items()
            if v is not None
        }
        if changes:
            try:
                config = config.replace(**changes)
            except ModelError as e:
                raise ModelError(f"{path}: {e}") from None
        dev = resolve_device(opts.device)
        prec = resolve_precision(opts.precision, dev)
        feat_prec = (
            resolve_precision(opts.features_precision, dev)
            if opts.features_precision
            else default_features_precision(prec)  # int8: fp32 (backends.names.FEATURES_PRECISION_RULE)
        )
        impl = create_backend(
            opts.backend,
            path,
            dev,
            prec,
            config=config,
            features_precision=feat_prec,
            requested_device=opts.device,
            requested_precision=opts.precision,
        )
        engine = Engine(
            impl,
            config=config,
            max_memory_mib=opts.max_memory,
            decoder=opts.decoder or ("auto" if dev.type == "cuda" else "opencv"),
            top_k=opts.top_k,
            chunk_size=opts.chunk_size,
            clusters_given=opts.clusters is not None,
        )
        return cls(
            engine=engine,
            model_path=str(path),
            decode_workers=opts.decode_workers or default_decode_workers(dev),
            concurrent_finish=concurrent_finish,
            fast_resize=fast_resize,
        )

    def with_options(self, **fields: Any) -> Classifier:
        """This classifier with other per-request options (``ClassifyOptions.REQUEST_FIELDS``:
        mode, segments, clusters, method, top_k), sharing the loaded model: nothing loads again.
        Raises ``OptionsError``/``ModelError`` for values the model cannot take."""
        data = dict(fields)
        if data.get("segments") is not None and data.get("mode") is None:
            data["mode"] = self.config.mode  # segments on a model already in mode tsm
        opts = ClassifyOptions.from_mapping(data, allowed=REQUEST_FIELDS_ALLOWED)
        changes = {
            k: v
            for k, v in dict(
                mode=opts.mode, segments=opts.segments, num_clusters=opts.clusters, method=opts.method
            ).items()
            if v is not None
        }
        engine = self.engine.with_config(**changes) if changes else self.engine
        if "top_k" in fields:
            engine = engine.derive(top_k=opts.top_k)
        other = Classifier(
            engine=engine,
            model_path=self.model_path,
            decode_workers=self.decode_workers,
            concurrent_finish=self.concurrent_finish,
        )
        other.memory_plan = self.memory_plan
        return other

    # what the engine holds, read through the driver (older callers and the watcher)
    @property
    def backend(self) -> Backend:
        return self.engine.backend

    @property
    def config(self):
        return self.engine.config

    @property
    def decoder(self) -> str:
        return self.engine.decoder

    @property
    def max_memory_mib(self) -> int:
        return self.engine.max_memory_mib

    @property
    def topk(self) -> int:
        return self.engine.top_k

    @property
    def run_info(self) -> dict:
        return self.engine.run_info

    # -- public API -----------------------------------------------------------------------------
    def classify(
        self,
        source,
        *,
        fps: float | None = None,
        color: str = "bgr",
        progress: ProgressFn | None = None,
        visualize: str | Path | None = None,
    ) -> VideoResult:
        """Classify one video: a path or URL, a uint8 array ``[T, H, W, 3]`` (BGR by default, as
        OpenCV gives; ``color="rgb"`` accepted) or an iterator of ``[H, W, 3]`` frames.

        ``fps``: for arrays and iterators, frame i is at ``i / fps`` seconds (None: the seconds of
        the result are null); for files it overrides the declared rate. ``progress(done, total)``
        is called after each decoded chunk (frames so far, frames the container announces or 0).
        ``visualize``: also write the timeline PNG there.

        Returns a :class:`VideoResult` (``partial`` with ``warnings`` when frames were lost to
        damage). Raises ``VideoError`` for an input that cannot be opened or decoded (missing,
        unreadable, not a video, zero frames, a malformed array, a live source) and
        ``FvdeployError`` when an iterator longer than the memory budget allows would need a
        second pass (use windowed classification: ``fvdeploy watch``)."""
        return self._finish(self._start(source, fps=fps, color=color, progress=progress, visualize=visualize))

    def classify_many(self, sources: Iterable, *, decode_workers: int | None = None, **kwargs) -> Iterator[VideoResult]:
        """Classify each source; results come in input order, and a bad source yields a result with
        ``error`` set (no raise).

        Up to ``decode_workers`` videos are open at once, each decoding in its own thread (OpenCV and
        NVDEC release the GIL). On CUDA, where the host rather than the network is the bottleneck,
        they are also finished at once (``concurrent_finish``), each in its own thread with its own
        share of ``max_memory_mib``, so that every decoder stays busy; on the CPU the network needs
        the cores, so one video computes while the next ones decode ahead. Keyword arguments go to
        :meth:`classify`; ``visualize`` may be a callable ``source -> png path``.

        A generator: one :class:`VideoResult` per source as it finishes; it never raises for a
        bad input (the result's ``error`` holds the one-line message; an internal error in one
        item is that item's ``internal error ...`` record, logged in one line, with the traceback
        at debug level only). Stopping early (``break``) stops the decoding of what was not read.
        Raises ``InputError`` (also a ``TypeError``) at once when ``sources`` is not iterable."""
        if isinstance(sources, (str, Path)):  # one path is one input, not an iterable of characters
            sources = [sources]
        try:
            it = iter(sources)
        except TypeError:
            raise InputError(
                f"classify_many takes an iterable of sources (paths, URLs, arrays, frame iterators), "
                f"not a {type(sources).__name__}"
            ) from None
        return self._classify_many(it, decode_workers=decode_workers, **kwargs)

    def _classify_many(self, it: Iterator, *, decode_workers: int | None = None, **kwargs) -> Iterator[VideoResult]:
        workers = decode_workers or self.decode_workers
        concurrent = workers if self.concurrent_finish else 1
        pending: deque = deque()  # (name, _Job | VideoResult | Future), in input order

        def start(source):
            name = redact(str(source)) if isinstance(source, (str, Path)) else None
            args = dict(kwargs)
            if callable(args.get("visualize")):
                args["visualize"] = args["visualize"](source)
            try:
                return name, self._start(source, parallel=workers, share=concurrent, **args)
            except FvdeployError as e:
                return name, VideoResult.failed(name, str(e))
            except Exception as e:  # a bug must not stop a batch of thousands; it is logged
                return name, _internal_error(name, e)

        def finish(name, job) -> VideoResult:
            if pool is not None and self.backend.device.type == "cuda":
                torch.cuda.set_device(self.backend.device)  # a pool thread starts on device 0
            try:
                return self._finish(job)
            except FvdeployError as e:
                return VideoResult.failed(name, str(e))
            except Exception as e:
                return _internal_error(name, e)

        pool = ThreadPoolExecutor(concurrent, thread_name_prefix="fvdeploy-video") if concurrent > 1 else None
        try:
            while True:
                while len(pending) < workers:
                    source = next(it, _DONE)
                    if source is _DONE:
                        break
                    name, job = start(source)
                    if pool is not None and isinstance(job, _Job):
                        job = pool.submit(finish, name, job)
                    pending.append((name, job))
                if not pending:
                    return
                name, job = pending.popleft()
                if isinstance(job, VideoResult):
                    yield job
                elif isinstance(job, _Job):
                    yield finish(name, job)
                else:
                    yield job.result()
        finally:  # the caller may stop early: stop decoding what it will not read
            for _, job in pending:
                if isinstance(job, _Job):
                    job.decoded.close()
                elif not isinstance(job, VideoResult):
                    job.cancel()
            if pool is not None:
                pool.shutdown(wait=True)

    def _start(
        self, source, *, fps=None, color="bgr", progress=None, visualize=None, parallel: int = 1, share: int = 1
    ) -> _Job:
        """Open the source and start decoding (in a background thread for files). ``parallel``:
        videos decoding at once; ``share``: videos computing at once (each gets 1/share of the budget)."""
        t0 = time.perf_counter()
        threads = max(1, (os.cpu_count() or 1) // parallel) if parallel > 1 else 0
        budget = self.engine.budget // share
        src = self.engine.open(
            source, budget=budget, whole_frames=visualize is not None, fps=fps, color=color, threads=threads
        )
        try:
            if src.live:
                raise VideoError(
                    f"{src.describe()}: a live source has no end to classify up to; watch it instead "
                    "(fvdeploy watch / fvdeploy.watch.watch)"
                )
            src.record = True  # every frame's time (segments' seconds) and checksum (re-reading)
            # the timeline picture wants whole frames for its thumbnails: then the model thread resizes
            shrunk = visualize is None and self.engine.shrinks(src)
            self.engine.check_frames_fit(src, budget, shrunk)
            plan = self.plan(src.frame_bytes or 3 * 1920 * 1080, parallel, share, shrunk)
            reader = self.engine.reader(
                src,
                whole_frames=not shrunk,
                batch_frames=plan.decode_frames,
                queue_frames=src.queue_batches * plan.decode_frames,
                drop=False,
            )
        except BaseException:
            src.close()
            raise
        thumbs = Thumbnails() if visualize is not None else None
        return _Job(src, plan, reader, progress, visualize, thumbs, t0, shrunk=shrunk)

    def _finish(self, job: _Job) -> VideoResult:
        src = job.src
        with self.engine.staging() as stager:
            job.stager = stager
            try:
                with job.decoded as decoded:
                    if self.config.mode == "full":
                        out = self._classify_full(job, decoded)
                    else:
                        out = self._classify_tsm(job, decoded)
            finally:
                job.decoded.close()
        result = self._result(src, *out)
        # diagnostics of the last call (benchmarks read them): re-decoded frames, memory path taken
        self.last_stats = {"extra_decoded_frames": src.extra_decoded, "memory_path": job.memory_path}
        result.timings = {
            "decode": round(src.decode_seconds, 4),
            "model": round(job.model_seconds, 4),
            "total": round(time.perf_counter() - job.t0, 4),
        }
        if job.visualize is not None:
            from .visualize import plot_timeline

            plot_timeline(result, job.thumbs, job.visualize, self.config.labels)
        return result

    # -- planning -------------------------------------------------------------------------------
    def plan(self, frame_bytes: int, parallel: int = 1, share: int = 1, shrunk: bool = False) -> MemoryPlan:
        """The split of the budget for one video (``engine.plan.plan_video``), or the fixed
        ``memory_plan``. ``parallel`` videos decoding at once share the decode part; ``share``
        videos computing at once share all of it. ``shrunk``: the decode thread shrinks each
        batch to crop size, so only the batch being read is whole-frame."""
        if self.memory_plan is not None:
            return self.memory_plan
        return self.engine.plan(frame_bytes, parallel, share, shrunk)

    # -- full mode ------------------------------------------------------------------------------
    def _prepared(
        self,
        job: _Job,
        chunks: Iterable,
        thumbs: Thumbnails | None,
        progress: ProgressFn | None,
        hint: int,
        shrunk: bool = False,
    ) -> Iterator[Tensor]:
        done, color = 0, job.src.color
        for batch in chunks:
            chunk = batch.frames
            t = time.perf_counter()
            if thumbs is not None:
                thumbs.add(done, chunk, color)
            x = self.engine.prepare(job.staged, chunk, color, shrunk)
            job.model_seconds += time.perf_counter() - t
            done += len(chunk)
            if progress is not None:
                progress(done, hint)
            yield x

    def _timed(self, job: _Job, fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
        def call(x: Tensor) -> Tensor:
            t = time.perf_counter()
            out = fn(x)
            job.model_seconds += time.perf_counter() - t
            return out

        return call

    def _classify_full(self, job: _Job, decoded):
        src, plan, thumbs, engine = job.src, job.plan, job.thumbs, self.engine
        g, halo = self.config.num_clusters, engine.halo
        acc = ClusterAccumulator(plan.store_bytes, plan.slot_bytes, can_recompute=src.rereadable)
        job.memory_path = "stored"
        features = self._timed(job, engine.features)
        prepared = self._prepared(job, decoded, thumbs, job.progress, src.frame_count_hint, job.shrunk)
        for feats in stream_with_halo(features, rechunk(prepared, plan.chunk_frames), halo, min_frames=g):
            acc.add(feats)
        num_frames = src.frames_read

        def recompute(start: int, stop: int) -> Iterator[Tensor]:
            lo, hi = max(0, start - halo), min(num_frames, stop + halo)
            prepared = self._prepared(job, src.read_range(lo, hi, plan.decode_frames), None, None, 0)
            pos = lo  # the halo frames on either side only give the shifts their context
            for feats in stream_with_halo(features, rechunk(prepared, plan.chunk_frames), halo):
                first, last = max(pos, start), min(pos + feats.shape[0], stop)
                if last > first:
                    yield feats[first - pos : last - pos]
                pos += feats.shape[0]

        t, before = time.perf_counter(), job.model_seconds
        if acc.streaming_sums:
            job.memory_path = f"sums ({len(acc.slots)} slots)"
        means, ids = acc.finish(g, self.config.method, recompute if src.rereadable else None)
        cluster_logits = engine.logits(means[None])[0]
        # the recomputed chunks were timed inside finish: count its whole time once
        job.model_seconds = before + time.perf_counter() - t
        # A video shorter than G was padded by repeating its last frame: clusters of padding alone
        # are part of the video's mean logits (as the model computes it) but not reported as segments.
        spans = cluster_segments(ids[None])[0]
        real = [i for i, (s, _) in enumerate(spans) if s < num_frames]
        units = [(s, min(e, num_frames)) for s, e in (spans[i] for i in real)]
        return num_frames, _Units(cluster_logits.mean(0), cluster_logits[real], units), thumbs

    # -- tsm mode -------------------------------------------------------------------------------
    def _classify_tsm(self, job: _Job, decoded):
        src, plan, thumbs, progress = job.src, job.plan, job.thumbs, job.progress
        job.memory_path = "tsm"
        k = self.config.segments
        if k == 0:
            return self._classify_tsm_all(job, decoded)
        hint = src.frame_count_hint
        wanted = set(tsm_indices(hint, k).tolist()) if hint > 0 else None
        kept: dict[int, Tensor] = {}
        kept_bytes, limit = 0, plan.store_bytes
        index = 0
        for batch in decoded:
            chunk = batch.frames
            if thumbs is not None:
                thumbs.add(index, chunk, src.color)
            for j in range(len(chunk)):
                if wanted is None or index + j in wanted:
                    kept[index + j] = self._prepare_one(job, chunk[j], job.shrunk)
                    kept_bytes += kept[index + j].numel() * kept[index + j].element_size()
                    if wanted is None and kept_bytes > limit:
                        if not src.rereadable:
                            raise MemoryBudgetExceeded(
                                "this stream is longer than the memory budget allows for TSM sampling and cannot "
                                "be read twice; use windowed classification (fvdeploy watch) or raise --max-memory"
                            )
                        wanted, kept = set(), {}  # re-read the K frames once the length is known
            index += len(chunk)
            if progress is not None:
                progress(index, hint)
        num_frames = src.frames_read
        indices = tsm_indices(num_frames, k).tolist()
        for i in sorted(set(indices) - set(kept)):  # the container's count was wrong: fetch the rest
            kept[i] = self._prepare_one(job, next(iter(src.read_range(i, i + 1, 1))).frames[0])
        frames = torch.stack([kept[i] for i in indices])
        t = time.perf_counter()
        seg_logits = self.engine.logits(self.engine.features(frames)[None])[0]
        job.model_seconds += time.perf_counter() - t
        # Each segment's frames (a video shorter than K has segments that share a frame: one unit each)
        spans: dict[tuple[int, int], list[int]] = {}
        for j, (s, e) in enumerate(segment_bounds(num_frames, k)):
            s = min(s, num_frames - 1)
            spans.setdefault((s, min(max(e, s + 1), num_frames)), []).append(j)
        units = torch.stack([seg_logits[rows].mean(0) for rows in spans.values()])
        return num_frames, _Units(seg_logits.mean(0), units, list(spans)), thumbs

    def _prepare_one(self, job: _Job, frame, shrunk: bool = False) -> Tensor:
        t = time.perf_counter()
        x = self.engine.prepare(job.staged, frame[None], job.src.color, shrunk)[0]
        job.model_seconds += time.perf_counter() - t
        return x

    def _classify_tsm_all(self, job: _Job, decoded):
        """TSM-all: every frame through the whole network, streamed with the whole network's halo."""
        src, plan, thumbs, progress = job.src, job.plan, job.thumbs, job.progress
        b = self.backend

        def per_frame_logits(x: Tensor) -> Tensor:
            return b.clip_logits(b.frame_features(x)[None])[0].float()

        logits = []
        prepared = self._prepared(job, decoded, thumbs, progress, src.frame_count_hint, job.shrunk)
        for out in stream_with_halo(
            self._timed(job, per_frame_logits), rechunk(prepared, plan.chunk_frames), b.network_halo
        ):
            logits.append(out.cpu())
        frame_logits = torch.cat(logits)
        # Units: runs of consecutive frames with the same top label (one entry per frame would be T long).
        top = frame_logits.argmax(1).tolist()
        segments, start = [], 0
        for i in range(1, len(top) + 1):
            if i == len(top) or top[i] != top[start]:
                segments.append((start, i))
                start = i
        seg_logits = torch.stack([frame_logits[s:e].mean(0) for s, e in segments])
        return src.frames_read, _Units(frame_logits.mean(0), seg_logits, segments), thumbs

    # -- results --------------------------------------------------------------------------------
    def _result(self, src: FrameSource, num_frames: int, units: _Units, thumbs) -> VideoResult:
        """Scores and segments from the engine (``engine.scoring``); seconds are presentation
        timestamps (``start_s`` of ``start_frame``, ``end_s`` of ``end_frame``, the last frame's end)."""
        scored = self.engine.score(units.video, units.units, units.spans, lambda pos, end: (pos, src.seconds(pos)))
        start, end = src.seconds(0), src.seconds(num_frames)
        return VideoResult(
            path=src.path,
            label=scored.label,
            score=scored.score,
            topk=scored.topk,
            num_frames=num_frames,
            fps=src.fps,
            duration_s=None if start is None or end is None else round(end - start, 6),
            segments=scored.segments,
            partial=src.partial,
            warnings=list(src.warnings),
            error=None,
            run={**self.run_info, "decoder": src.decoder},
        )


def _options(options: ClassifyOptions | None, **fields: Any) -> ClassifyOptions:
    """``options`` (default: all defaults) with the keywords that are not None applied, older
    spellings mapped (``num_clusters`` -> ``clusters``...); validated. An unknown keyword is a
    ``TypeError``, as for any function."""
    opts = options or ClassifyOptions()
    names = {f for f in ClassifyOptions.__dataclass_fields__}
    given: dict[str, Any] = {}
    for key, value in fields.items():
        key = LEGACY_NAMES.get(key, key)
        if key not in names:
            raise TypeError(f"Classifier.load() got an unexpected keyword argument {key!r}")
        if value is not None:
            given[key] = str(value) if key == "model" else value
    return opts.replace(**given).validate()


@dataclass
class _Job:
    """A video whose decoding has started (so several can decode ahead of the model)."""

    src: FrameSource
    plan: MemoryPlan
    decoded: FrameReader  # iterates decoded chunks (in its own thread where the source decodes in one)
    progress: ProgressFn | None
    visualize: str | Path | None
    thumbs: Thumbnails | None
    t0: float
    # per-video state, so that several videos can be finished at once (classify_many's threads)
    model_seconds: float = 0.0
    memory_path: str = ""
    shrunk: bool = False  # the decode thread resized and cropped the frames (io.transforms.shrink)
    stager: HostStager | None = None  # from the engine's pool while the video computes

    @property
    def staged(self) -> HostStager:
        if self.stager is None:
            raise RuntimeError("frames were uploaded before _finish gave the video its staging buffers")  # a bug
        return self.stager


_DONE = object()


def _internal_error(name: str | None, e: Exception) -> VideoResult:
    """A bug met on one input of ``classify_many``: that input's error record and one log line;
    the traceback only at debug level (a batch of thousands must not fill the log with them)."""
    first = str(e).splitlines()[0] if str(e) else ""
    log.error("internal error on %s: %s: %s", name or "an input", type(e).__name__, first)
    log.debug("the internal error on %s", name or "an input", exc_info=True)
    return VideoResult.failed(name, f"internal error {type(e).__name__}: {first}")


def default_decode_workers(device: torch.device) -> int:
    """On the CPU the model needs the cores: one video at a time (FFmpeg threads it). On CUDA the
    host only decodes: one video per 4 cores, at most 8."""
    if device.type != "cuda":
        return 1
    return max(1, min(8, (os.cpu_count() or 1) // 4))


@dataclass
class _Units:
    """What the model saw as units: the video's logits ``[classes]`` (mean over all units, padding
    included, as the model computes them) and the reported units' logits ``[U, classes]`` and spans."""

    video: Tensor
    units: Tensor
    spans: list[tuple[int, int]]


class Thumbnails:
    """At most ``limit`` small frames kept at a regular stride that doubles when full, so a
    timeline picture costs bounded memory on any length."""

    def __init__(self, limit: int = 128, height: int = 72) -> None:
        self.limit, self.height, self.stride = limit, height, 1
        self.frames: dict[int, np.ndarray] = {}

    def add(self, start: int, chunk, color: str) -> None:
        import cv2

        for j in range(len(chunk)):
            i = start + j
            if i % self.stride:
                continue
            frame = chunk[j]
            if isinstance(frame, Tensor):  # decoded on the GPU: copy just this frame
                frame = frame.cpu().numpy()
            h, w = frame.shape[:2]
            small = cv2.resize(frame, (max(1, round(w * self.height / h)), self.height), interpolation=cv2.INTER_AREA)
            self.frames[i] = small if color == "bgr" else small[:, :, ::-1]
            if len(self.frames) > self.limit:
                self.stride *= 2
                self.frames = {k: v for k, v in self.frames.items() if k % self.stride == 0}

    def nearest(self, index: int) -> np.ndarray | None:
        if not self.frames:
            return None
        return self.frames[min(self.frames, key=lambda k: abs(k - index))]
