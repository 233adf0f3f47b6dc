"""Windowed classification of long recordings and live streams (:func:`watch`, :func:`watch_many`):
the watch driver on the engine (``fvdeploy.engine``): the ring buffer, window edges and events.

A window of W frames is classified by the full-video method over all its frames (G clusters), and
windows start every S frames (the stride). Per frame, the stem and ``layer1`` run once: their
output goes into a ring buffer that holds one window (plus one device step), and overlapping
windows share it. Per window, only the clustering and ``layer2..4`` on G cluster means run.

**A window's result equals classifying that window's frames as a clip** (``Classifier.classify``
on the same frames, within the tolerances of docs/design.md#equality). The catch is the temporal shift in
``layer1``: in a clip the first and last frames see zero padding, in the stream they see their real
neighbours. So a frame's stream output is used only where the two agree, at least ``halo`` frames
(the number of ``layer1`` blocks) inside the window; for the ``halo`` frames at each edge, the
``layer1`` blocks are rerun on the cached stem outputs of the ``2 * halo`` frames at that edge with
the window's zero padding (the stem does not run again). Neighbour distances inside the window come
from the stream (computed once per frame pair), those that touch the edges from the rerun maps.

Definitions (docs/watch.md has pictures):

- window k of a segment covers positions ``[s0 + k*S, s0 + k*S + W)``; frames that no window covers
  (S > W) are decoded but never reach the model;
- the last window of a segment (the stream ended or dropped) may be *partial*: it starts at the next
  stride position and runs to the segment's end, and it is classified only when it holds frames no
  full window covered. A window shorter than G frames is padded by repeating its last frame, as a
  clip is;
- a live source's frames may be dropped before the model when the device falls behind (counted);
  windows then span the frames that were kept.

Many streams: each source decodes in its own thread (``io.sources.FrameReader``); each device step takes the
frames every stream has ready and runs the stem on all of them in one batch, ``layer1`` on all
streams at once (a padded batch with per-stream lengths), the edge reruns in one batch and
``layer2..4`` for every window that closed in one batch. Per-stream state (ring, open events) is
separate, and bounded: nothing grows with the length of a stream.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..engine.clusters import cluster_means
from ..engine.core import Engine
from ..errors import FvdeployError, VideoError
from ..io.sources import Dropped, End, FrameBatch, FrameReader, Resumed
from ..io.staging import HostStager
from ..ops.clustering import cluster_ids_from_distances, frame_distances, sign_changes
from ..records import Event, Gap, StreamEnd, WatchItem, WindowResult
from .clips import StreamClips
from .clips import frame_bytes as clip_frame_bytes
from .events import EventTracker, WindowSpan
from .options import TIME_WINDOW_RATE_MIN, StreamSpec, WatchOptions, clusters_for, resolve_sources
from .rules import CLUSTER_VOTE
from .windows import FrameWindows, TimedWindows

log = logging.getLogger(__name__)

MAX_STEP_FRAMES = 32
FILE_BATCH = 8  # frames per queue item for sources read as fast as they decode


class _Window:
    __slots__ = ("k", "start", "left", "right", "partial")

    def __init__(self, k: int, start: int) -> None:
        self.k, self.start = k, start
        self.partial = False  # closed by the end of its segment before its length
        self.left: Tensor | None = None  # layer1 maps of the first `halo` frames, with the window's padding
        self.right: Tensor | None = None


@dataclass
class _Job:
    """One row of a batched ``layer1`` call: stem maps of consecutive frames and what to keep."""

    stream: "_Stream"
    maps: Tensor  # [L, ...]
    keep: slice  # rows of the output to keep
    first: int  # position of the first kept row (stream rows) or the window (edge rows)
    kind: str  # "stream" | "left" | "right" | "direct"
    window: _Window | None = None


class _Stream:
    """Everything one stream needs between device steps; memory bounded by the window length."""

    def __init__(
        self, watcher: Watcher, spec: StreamSpec, reader: FrameReader, window: int, stride: int, clusters: int
    ) -> None:
        self.w, self.spec, self.reader, self.name = watcher, spec, reader, spec.name
        self.source = reader.source
        self.W, self.S = window, stride
        self.g = clusters  # G of this stream's windows (options.clusters_for)
        self.short = max(clusters, 4 * watcher.halo)  # windows shorter than this are rerun whole from stem maps
        o = watcher.options
        # windows in seconds are placed by presentation time (W then only bounds the ring)
        self.windows = (
            FrameWindows(window, stride)
            if o.window_frames is not None
            else TimedWindows(o.window_s, o.stride_s, window)
        )
        self.fps, self.basis = self.source.fps, self.source.time_basis
        self.color = self.source.color
        self.shrunk = reader.transform is not None  # frames arrive resized and cropped (io.transforms.shrink)
        self.reserved = 0
        self.dt = 1.0 / self.fps if self.fps else 0.0
        k, h = watcher.step_frames, watcher.halo
        self.cap = window + k + 1  # ring slots: the oldest frame a closing window reads .. the newest written
        self.ts_cap = window + stride + 2 * k + 4 * h + 8  # also the previous window, for event boundaries
        self.hist_cap = max(4 * h, clusters) + k + 1  # stem maps kept for edge reruns and short windows
        self.ring: Tensor | None = None
        self.dist = torch.zeros(self.cap, dtype=torch.long, device=watcher.device)
        self.seconds = np.full(self.ts_cap, np.nan)
        self.source_index = np.zeros(self.ts_cap, np.int64)
        self.arrival = np.zeros(self.ts_cap)
        self.history: deque[tuple[int, Tensor]] = deque(maxlen=self.hist_cap)
        self.pos = 0  # frames taken so far
        self.windows_done = 0
        self.events_done = 0
        self.latency_upto = 0
        self.tracker = self._tracker()
        clip_args = (self.tracker, self.fps, self.color, self.basis, watcher.clip_frames(self.fps, window, stride))
        self.clips = None if o.clips is None else StreamClips(o.clips, self.name, *clip_args)
        self._new_segment(0)

    def _tracker(self) -> EventTracker:
        o = self.w.options
        return EventTracker(self.name, o.rules(), self.basis, self.boundary, self.fps, self.w.labels)

    def _new_segment(self, start: int) -> None:
        self.seg_start = start
        self.windows.reset(start)
        self.prev_covered = False
        self.pending: dict[int, _Window] = {}
        self.ctx: Tensor | None = None  # stem maps not yet final in the stream (halo context)
        self.ctx_first = start
        self.left = 0  # rows at the start of ctx that were already emitted
        self.prev_sign: Tensor | None = None
        self.history.clear()

    def covered(self, pos: int) -> bool:
        return self.windows.covered(pos, self.seconds[pos % self.ts_cap])

    def locate(self, pos: int, end: bool) -> tuple[int, float | None]:
        """``boundary`` as (source frame number, seconds): how the engine's scoring reads positions."""
        seconds, frame = self.boundary(pos, end)
        return frame, seconds

    # -- times ----------------------------------------------------------------------------------
    def boundary(self, pos: int, end: bool) -> tuple[float | None, int]:
        """Seconds and source frame number of a boundary: the start of frame ``pos``, or (``end``)
        the end of frame ``pos - 1``: the presentation time of frame ``pos`` when it has arrived (and
        is the next frame of the source), else frame ``pos - 1``'s time plus its duration."""
        if end:
            i = (pos - 1) % self.ts_cap
            frame = int(self.source_index[i]) + 1
            if pos < self.pos and int(self.source_index[pos % self.ts_cap]) == frame:
                s = self.seconds[pos % self.ts_cap]
            else:
                prev = self.seconds[(pos - 2) % self.ts_cap] if pos >= 2 else math.nan
                step = self.seconds[i] - prev if pos >= 2 and self.seconds[i] > prev else self.dt
                s = self.seconds[i] + step
        else:
            i = pos % self.ts_cap
            s, frame = self.seconds[i], int(self.source_index[i])
        return (None if math.isnan(s) else round(float(s), 6)), frame

    def record(self, batch: FrameBatch) -> None:
        idx = np.arange(self.pos, self.pos + len(batch.frames)) % self.ts_cap
        self.seconds[idx], self.source_index[idx], self.arrival[idx] = batch.pts, batch.index, batch.arrival
        for j, t in enumerate(batch.pts.tolist()):
            self.windows.place(self.pos + j, t)
        self.pos += len(batch.frames)

    # -- the streamed layer1 ----------------------------------------------------------------------
    def stream_job(self, maps: Tensor | None, first: int, flush: bool) -> _Job | None:
        """Add the stem maps of positions ``first..`` to the stream; the job that emits every frame
        whose right context has arrived (all of them on ``flush``, the end of a run)."""
        h = self.w.halo
        if maps is not None and maps.shape[0]:
            if self.ctx is None:
                self.ctx, self.ctx_first, self.left = maps, first, 0
            else:
                self.ctx = torch.cat([self.ctx, maps])
        if self.ctx is None:
            return None
        buf, left = self.ctx, self.left
        ready = buf.shape[0] - left - (0 if flush else h)
        job = _Job(self, buf, slice(left, left + ready), self.ctx_first + left, "stream") if ready > 0 else None
        if flush:  # the run ends: the next one starts without context (emit() knows a run's first row)
            self.ctx, self.left = None, 0
        elif ready > 0:
            keep = min(h, left + ready)
            self.ctx = buf[left + ready - keep :]
            self.ctx_first += left + ready - keep
            self.left = keep
        return job

    def emit(self, first: int, feats: Tensor, run_first: bool) -> None:
        """Store stream layer1 maps of positions ``first..`` and their neighbour distances."""
        if self.ring is None:
            self.ring = feats.new_empty((self.cap, *feats.shape[1:]))
        idx = torch.arange(first, first + feats.shape[0], device=feats.device) % self.cap
        self.ring.index_copy_(0, idx, feats)
        signs = feats > 0
        d = sign_changes(signs[1:], signs[:-1])
        head = torch.zeros(1, dtype=torch.long, device=feats.device)
        if self.prev_sign is not None and not run_first:
            head = sign_changes(signs[:1], self.prev_sign[None])
        self.dist.index_copy_(0, idx, torch.cat([head, d]))
        self.prev_sign = signs[-1]

    def stem_maps(self, start: int, stop: int) -> Tensor:
        got = {p: m for p, m in self.history if start <= p < stop}
        if len(got) != stop - start:
            raise RuntimeError(f"stem maps {start}..{stop} are no longer cached")  # a bug, not bad input
        return torch.stack([got[p] for p in range(start, stop)])

    def ring_rows(self, start: int, stop: int) -> list[Tensor]:
        """Ring rows of positions ``[start, stop)`` as at most two slices (the ring wraps)."""
        if stop <= start:
            return []
        a, n, ring = start % self.cap, stop - start, self.filled_ring
        if a + n <= self.cap:
            return [ring[a : a + n]]
        return [ring[a:], ring[: n - (self.cap - a)]]

    @property
    def filled_ring(self) -> Tensor:
        """The ring of ``layer1`` maps (allocated by the first ``emit``, when their shape is known)."""
        if self.ring is None:
            raise RuntimeError("a window was read before any layer1 map reached the ring")  # a bug
        return self.ring


class Watcher:
    """Runs the device steps for any number of streams; ``run(specs)`` yields results in order per stream."""

    def __init__(self, engine: Engine | Any, options: WatchOptions, *, collect_latency: bool = False) -> None:
        """``engine``: a loaded :class:`~fvdeploy.engine.Engine`, or a ``Classifier`` (its
        engine is used). Raises ``FvdeployError`` for options out of range or a model loaded in
        mode tsm."""
        options.validate()
        engine = getattr(engine, "engine", engine)
        cfg = engine.config
        if cfg.mode != "full":
            raise FvdeployError(
                "watch classifies each window with the full-video method; this model is loaded in "
                "mode tsm (load it with mode='full')"
            )
        self.engine, self.options = engine, options
        self.rules = options.rules()
        self.backend, self.device = engine.backend, engine.device
        self.stages = engine.stages
        self.stager: HostStager | None = None  # the engine's, while the watch runs
        self.halo, self.g, self.method, self.labels = engine.halo, cfg.num_clusters, cfg.method, cfg.labels
        self.trained_clip_frames = _int_or_none(cfg.trained.get("clip_frames"))  # frames per training clip, if known
        self.budget = engine.budget
        self.step_frames = options.step_frames or MAX_STEP_FRAMES
        self.clock0 = time.perf_counter()
        self.wake = threading.Event()
        self.busy_s = 0.0
        self.reserved = 0
        self.collect_latency = collect_latency
        self.frame_latency: list[float] = []
        self.stem_frames = 0
        self._streams: list[_Stream] = []
        self._waiting: list[StreamSpec] = []

    # -- memory (engine.plan's costs per frame) ---------------------------------------------------
    def _plan_steps(self, live_streams: int) -> None:
        if self.options.step_frames is not None:
            return
        k = int(0.2 * self.budget) // max(1, self.engine.costs.work * max(1, live_streams))
        self.step_frames = max(1, min(MAX_STEP_FRAMES, k))

    def _reserve(self, source, window: int, stride: int, shrunk: bool, g: int) -> tuple[int, int]:
        """Reserve this stream's share of the budget: its ring of ``layer1`` maps, the stem maps kept
        for edge reruns, and its decoded frames (the batch being read whole, the queue as crops
        where the reader shrinks them). Returns (bytes, queue frames)."""
        costs, k = self.engine.costs, self.step_frames
        frame_bytes = max(1, source.frame_bytes)
        waiting = costs.crop if shrunk else frame_bytes
        batch = 1 if source.live or self.options.realtime else FILE_BATCH
        # decoded frames waiting: a live source about a second (enough to ride out a slow step; more
        # would only add delay before it drops), a file two device steps, at most ~64 MiB of them
        if source.live or self.options.realtime:
            queue = min(2 * k, max(4, round(source.fps or 30.0)))
        else:
            queue = max(4, min(2 * k, (64 << 20) // waiting))
        decoded = batch * frame_bytes + queue * waiting
        need = (window + k + 1) * costs.feature + (max(g, 4 * self.halo) + k) * costs.feature + decoded
        if self.options.clips is not None:  # frames kept for evidence clips (watch.clips)
            need += self.clip_frames(source.fps, window, stride) * clip_frame_bytes(source.width, source.height)
        if self.reserved + need > self.budget:
            raise FvdeployError(
                f"{source.name}: a window of {window} frames needs {need / 2**20:.0f} MiB for this stream "
                f"({self.reserved / 2**20:.0f} MiB already held by other streams), beyond the memory budget of "
                f"{self.budget / 2**20:.0f} MiB; shorten the window, watch fewer streams, or raise --max-memory"
            )
        self.reserved += need
        return need, queue

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, sources: Iterable, *, raise_errors: bool = False) -> Iterator[WatchItem]:
        """Open the sources now (with ``raise_errors`` a source that cannot be opened raises, for
        ``watch()``; else it becomes a StreamEnd with ``error``) and return the generator
        that watches them all until every one has ended. Closing it stops the readers."""
        specs = resolve_sources(sources)
        raise_errors = raise_errors and len(specs) == 1  # a directory's files report their errors as results
        o = self.options
        files = [s for s in specs if s.is_file]
        starting = [s for s in specs if not s.is_file] + files[: o.max_open_files]
        self._waiting = files[o.max_open_files :]
        self._plan_steps(len(starting))
        streams: list[_Stream] = []
        initial: list[WatchItem] = []
        try:
            for spec in starting:
                item = self._open(spec, streams, raise_errors)
                if item is not None:
                    initial.append(item)
        except BaseException:
            for s in streams:
                s.reader.stop()
            raise
        return self._loop(streams, initial)

    def counters(self) -> list[dict[str, Any]]:
        """What each stream being watched has done so far (safe to read from another thread):
        ``stream``, ``frames`` read (delivered to the watcher or dropped), ``dropped_frames``
        (live frames dropped before the model), ``windows`` and ``events`` reported."""
        return [
            {
                "stream": s.name,
                "frames": s.reader.delivered + s.reader.dropped,
                "dropped_frames": s.reader.dropped,
                "windows": s.windows_done,
                "events": s.events_done,
            }
            for s in list(self._streams)
        ]

    def finish(self) -> None:
        """Wind the watch down (Ctrl-C in the CLI): every source stops reading, what it delivered is
        classified, partial windows and open events close, each stream ends; waiting files never start."""
        self._waiting = []
        for s in self._streams:
            s.reader.finish()

    def _loop(self, streams: list[_Stream], initial: list[WatchItem]) -> Iterator[WatchItem]:
        with self.engine.staging() as self.stager:
            yield from self._watch(streams, initial)

    def _watch(self, streams: list[_Stream], initial: list[WatchItem]) -> Iterator[WatchItem]:
        self._streams = streams
        try:
            for s in streams:
                s.reader.start()
            yield from initial
            yield from self._fill(streams)
            last_step = 0.0
            while streams:
                if not any(s.reader.has_items for s in streams):
                    self.wake.wait(0.05)
                if all(s.source.live for s in streams):
                    # live frames trickle in one by one: gathering them for a moment amortises the fixed
                    # cost of a step (many small kernels) over more frames, for a little latency
                    wait = last_step + self.options.live_step_s - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                last_step = time.perf_counter()
                self.wake.clear()
                work = [(s, *s.reader.take(self.step_frames)) for s in streams]
                work = [(s, batches, marker) for s, batches, marker in work if batches or marker is not None]
                if not work:
                    continue
                yield from self._step(work)
                for s in [s for s, _, m in work if isinstance(m, End)]:
                    streams.remove(s)
                    self.reserved -= s.reserved
                    s.reader.stop()
                yield from self._fill(streams)
        finally:
            for s in streams:
                s.reader.stop()
                if s.clips is not None:
                    s.clips.close()

    def _fill(self, streams: list["_Stream"]) -> Iterator[WatchItem]:
        """Start waiting files while fewer than ``max_open_files`` are being watched."""
        while self._waiting and sum(1 for x in streams if x.spec.is_file) < self.options.max_open_files:
            before = len(streams)
            item = self._open(self._waiting.pop(0), streams, raise_errors=False)
            if len(streams) > before:
                streams[-1].reader.start()
            if item is not None:
                yield item

    def _open(self, spec: StreamSpec, streams: list["_Stream"], raise_errors: bool) -> StreamEnd | None:
        o = self.options
        source = None
        try:
            if spec.error:
                raise VideoError(spec.error)
            source = self.engine.open(
                spec.target,
                fps=o.fps,
                color=o.color,
                live=o.live,
                retries=o.retries,
                retry_delay_s=o.retry_delay_s,
                open_timeout_s=o.open_timeout_s,
                loops=spec.loops,
                decoder=self.engine.decoder if spec.loops == 1 else "opencv",  # benchmarks loop files through OpenCV
            )
            source.name = spec.name
            # as in classify: on the CPU the reader thread resizes, so the model thread gets small frames
            # (not with clips: they are cut from the frames as decoded)
            shrunk = self.engine.shrinks(source, threaded=True) and o.clips is None
            self.engine.check_frames_fit(source, shrunk=shrunk)
            window, stride = self.options.geometry(source.fps, spec.name)
            nominal = o.window_frames or max(1, round(o.window_s * (source.fps or 0)))
            given = o.clusters if o.clusters is not None else (self.g if self.engine.clusters_given else None)
            g = clusters_for(nominal, self.g, self.trained_clip_frames, given)
            try:
                need, queue = self._reserve(source, window, stride, shrunk, g)
            except FvdeployError:
                if self.options.window_frames is not None:
                    raise
                window = max(1, math.ceil(self.options.window_s * (source.fps or 0) * TIME_WINDOW_RATE_MIN))
                need, queue = self._reserve(source, window, stride, shrunk, g)
        except FvdeployError as e:
            if source is not None:
                source.close()
            if raise_errors:
                raise
            fps = source.fps if source is not None else None
            basis = source.time_basis if source is not None else None
            return StreamEnd(spec.name, 0, 0, 0, 0, 0, fps, None, None, basis, error=str(e))
        live = source.live or o.realtime
        reader = self.engine.reader(
            source,
            whole_frames=not shrunk,
            threaded=True,  # take() needs the thread, whatever the source
            batch_frames=1 if live else FILE_BATCH,
            queue_frames=queue,
            drop=live,
            pace=o.realtime,
            wake=self.wake,
        )
        stream = _Stream(self, spec, reader, window, stride, g)
        stream.reserved = need
        streams.append(stream)
        log.info(
            "%s: window %d frames, stride %d frames (%s fps), time basis %s",
            spec.name,
            window,
            stride,
            source.fps,
            source.time_basis,
        )
        return None

    # -- one device step --------------------------------------------------------------------------
    def _step(self, work) -> list[WatchItem]:
        t0 = time.perf_counter()
        out: list[WatchItem] = []
        # 1. frames -> positions, and the covered runs that reach the model
        pieces = []  # (stream, first position, uint8 frames, ends a run)
        for s, batches, _ in work:
            for batch in batches:
                first = s.pos
                s.record(batch)
                if s.clips is not None:
                    s.clips.feed(first, batch.frames, batch.index, batch.pts)
                run: list[int] = []
                for j in range(len(batch.frames)):
                    p = first + j
                    covered = s.covered(p)
                    if covered:
                        run.append(j)
                        if s.windows.run_end(p):
                            pieces.append((s, first + run[0], batch.frames[run[0] : j + 1], True))
                            run = []
                    elif run:
                        pieces.append((s, first + run[0], batch.frames[run[0] : run[-1] + 1], True))
                        run = []
                    elif s.prev_covered and j == 0:  # a run (in seconds) ended with the previous batch
                        pieces.append((s, p, None, True))
                    s.prev_covered = covered
                if run:
                    pieces.append((s, first + run[0], batch.frames[run[0] : run[-1] + 1], False))
        # 2. the stem, once per frame, all streams in one batch
        stems: list[Tensor | None] = [None] * len(pieces)
        framed = [i for i, (_, _, f, _) in enumerate(pieces) if f is not None]
        stager = self.stager
        if framed:
            if stager is None:
                raise RuntimeError("a step ran outside Watcher.run's staging")  # a bug, not bad input
            x = torch.cat(
                [self.engine.prepare(stager, pieces[i][2], pieces[i][0].color, pieces[i][0].shrunk) for i in framed]
            )
            self.stem_frames += x.shape[0]
            for i, maps in zip(framed, self.stages.stem(x).split([len(pieces[i][2]) for i in framed])):
                stems[i] = maps
        # 3. the streamed layer1: which rows can be emitted
        jobs: list[_Job] = []
        for (s, first, _, ends), maps in zip(pieces, stems):
            if maps is None:  # flush the run that ended before this step's first frame
                job = s.stream_job(None, first, flush=True)
                if job is not None:
                    jobs.append(job)
                continue
            if s.windows.run_start(first):
                s.ctx = None
            s.history.extend((first + i, maps[i]) for i in range(maps.shape[0]))
            self._open_windows(s, first, first + maps.shape[0])
            job = s.stream_job(maps, first, flush=ends)
            if job is not None:
                jobs.append(job)
        segment_ends = {id(s) for s, _, m in work if isinstance(m, (Dropped, End))}
        for s, _, _m in work:
            if id(s) in segment_ends:
                job = s.stream_job(None, s.pos, flush=True)
                if job is not None:
                    jobs.append(job)
        for job, feats in zip(jobs, self._layer1([j.maps for j in jobs])):
            job.stream.emit(job.first, feats[job.keep], run_first=job.stream.windows.run_start(job.first))
        # 4. windows: the edge reruns, then the windows that closed
        closing: list[tuple[_Stream, _Window, int]] = []
        edges: list[_Job] = []
        for s, _, _m in work:
            closing += self._due(s, edges, segment_end=id(s) in segment_ends)
        for job, feats in zip(edges, self._layer1([j.maps for j in edges])):
            win = job.window
            assert win is not None  # edge jobs always belong to a window
            if job.kind == "left":
                win.left = feats[job.keep]
            elif job.kind == "right":
                win.right = feats[job.keep]
            else:
                win.right = feats  # a short window, rerun whole
        results = self._classify(closing)
        # 5. results, events, and what the markers say
        by_stream: dict[int, list] = {}
        for (s, _, _), (res, span) in zip(closing, results):
            by_stream.setdefault(id(s), []).append((res, span))
        for s, _, m in work:
            for res, span in by_stream.get(id(s), []):
                if not self.options.events_only:
                    out.append(res)
                out += self._events(s, s.tracker.add(span))
            if isinstance(m, (Dropped, End)):
                out += self._events(s, s.tracker.close())
                if s.clips is not None:
                    s.clips.segment_end()
                s._new_segment(s.pos)
                s.drop_at = s.boundary(s.pos, end=True)[0] if s.pos else None
            if isinstance(m, Resumed):
                # one time basis: the source places a live stream's times on its own clock, as it does m.pts
                start = getattr(s, "drop_at", None)
                end = round(max(m.pts, start if start is not None else m.pts), 6) if s.basis is not None else None
                out.append(Gap(s.name, start, end, s.pos, m.attempts, "the stream dropped and was reopened"))
            if isinstance(m, End):
                src = s.source
                out.append(
                    StreamEnd(
                        s.name,
                        src.frames_read,
                        s.windows_done,
                        s.events_done,
                        s.reader.dropped,
                        src.reconnects,
                        s.fps,
                        s.windows.nominal_frames(s.fps),
                        s.S,
                        s.basis,
                        partial=src.partial,
                        warnings=list(src.warnings),
                        error=m.error,
                    )
                )
        self.busy_s += time.perf_counter() - t0
        return out

    def _events(self, s: _Stream, events: list[Event]) -> list[Event]:
        s.events_done += len(events)
        if s.clips is not None:
            s.clips.update()
        return events

    def clip_frames(self, fps: float | None, window: int, stride: int) -> int:
        """Frames a stream's clips may hold undecided (``watch.clips``): the window, the stride and a
        device step behind the newest frame, plus the merge gap or the minimum duration (while an
        event may still be joined by a later run of its label). Windows in seconds: their length at
        1.25x the declared rate (a faster stream's clips lose frames, with a warning)."""
        o, r, rate = self.options, self.rules, fps or 30.0
        if o.window_frames is None:
            window = min(window, math.ceil(o.window_s * rate * TIME_WINDOW_RATE_MIN))
        return window + stride + self.step_frames + math.ceil(max(r.merge_gap_s, r.min_duration_s) * rate) + 1

    def _layer1(self, rows: list[Tensor]) -> list[Tensor]:
        """``layer1`` on sequences of different lengths in one padded batch (lengths end each)."""
        if not rows:
            return []
        longest = max(r.shape[0] for r in rows)
        if all(r.shape[0] == longest for r in rows):
            return list(self.stages.layer1(torch.stack(rows)).unbind(0))
        padded = torch.stack(
            [
                torch.cat([r, r.new_zeros((longest - r.shape[0], *r.shape[1:]))]) if r.shape[0] < longest else r
                for r in rows
            ]
        )
        lengths = torch.tensor([r.shape[0] for r in rows], device=padded.device)
        out = self.stages.layer1(padded, lengths)
        return [out[i, : r.shape[0]] for i, r in enumerate(rows)]

    def _open_windows(self, s: _Stream, start: int, stop: int) -> None:
        for k, a in s.windows.opening(start, stop):
            s.pending[k] = _Window(k, a)

    def _due(self, s: _Stream, edges: list[_Job], segment_end: bool) -> list[tuple[_Stream, _Window, int]]:
        """Queue the edge reruns whose stem maps have all arrived; the windows that close now."""
        h, last = self.halo, s.pos  # positions < last have arrived
        closing = []
        partial_taken = False
        for k in sorted(s.pending):
            win = s.pending[k]
            stop = s.windows.stop(k)
            if stop is None or stop > last:
                if not segment_end:
                    if s.W >= s.short and win.left is None and win.start + 2 * h <= last:
                        edges.append(
                            _Job(s, s.stem_maps(win.start, win.start + 2 * h), slice(0, h), win.start, "left", win)
                        )
                    continue
                if partial_taken or last <= s.windows.previous_stop(k):
                    continue  # only the first unfinished window, and only with frames no full window had
                partial_taken = True
                stop = last
                # in seconds, a last window whose time range the stream covered to its end is whole
                end_s = s.boundary(last, end=True)[0] if last > s.seg_start else None
                win.partial = not s.windows.whole(k, end_s)
            n = stop - win.start
            if n < s.short:
                maps = s.stem_maps(win.start, stop)
                if n < s.g:  # a clip shorter than G is padded by repeating its last frame
                    maps = torch.cat([maps, maps[-1:].expand(s.g - n, *maps.shape[1:])])
                edges.append(_Job(s, maps, slice(None), win.start, "direct", win))
            else:
                if win.left is None:
                    edges.append(
                        _Job(s, s.stem_maps(win.start, win.start + 2 * h), slice(0, h), win.start, "left", win)
                    )
                edges.append(_Job(s, s.stem_maps(stop - 2 * h, stop), slice(h, 2 * h), win.start, "right", win))
            closing.append((s, win, stop))
        for _, win, stop in closing:
            del s.pending[win.k]
            s.windows.closed(win.k, stop)
        if segment_end:
            s.pending.clear()
        return closing

    # -- clustering and layer2..4 for the windows that closed ---------------------------------------
    def _window_means(self, s: _Stream, win: _Window, stop: int) -> tuple[Tensor, list[tuple[int, int]]]:
        """Cluster means ``[G, C, h, w]`` of a window and its cluster spans (window-relative)."""
        a, n, h, g = win.start, stop - win.start, self.halo, s.g
        if n < s.short:
            feats = win.right  # the whole window (padded to G) rerun from stem maps
            assert feats is not None  # _due queued its rerun
            d = frame_distances(feats[None])[0]

            def parts(lo: int, hi: int) -> list[Tensor]:
                return [feats[lo:hi]]

        else:
            left, right, ring = win.left, win.right, s.filled_ring
            assert left is not None and right is not None  # _due queued both edge reruns
            first_inner, last_inner = ring[(a + h) % s.cap], ring[(stop - h - 1) % s.cap]
            lsig = torch.cat([left, first_inner[None]]) > 0
            rsig = torch.cat([last_inner[None], right]) > 0
            inner = s.dist[torch.arange(a + h + 1, stop - h, device=s.dist.device) % s.cap]
            d = torch.cat([sign_changes(lsig[1:], lsig[:-1]), inner, sign_changes(rsig[1:], rsig[:-1])])

            def parts(lo: int, hi: int) -> list[Tensor]:
                out = []
                if lo < h:
                    out.append(left[lo : min(hi, h)])
                out += s.ring_rows(a + max(lo, h), a + min(hi, n - h))
                if hi > n - h:
                    out.append(right[max(lo, n - h) - (n - h) : hi - (n - h)])
                return out

        ids = cluster_ids_from_distances(d[None], g, self.method)[0]
        return cluster_means(ids, g, parts)

    def _logits(self, means: list[Tensor]) -> list[Tensor]:
        """``layer2..4`` + head on every closing window's cluster means ``[G, ...]``, one batch per G
        (streams may have windows of different lengths, so different G) -> ``[G, classes]`` each."""
        out: list[Tensor | None] = [None] * len(means)
        for g in sorted({m.shape[0] for m in means}):
            rows = [i for i, m in enumerate(means) if m.shape[0] == g]
            for i, logits in zip(rows, self.engine.logits(torch.stack([means[i] for i in rows]))):
                out[i] = logits
        return [x for x in out if x is not None]

    def _classify(self, closing: list[tuple[_Stream, _Window, int]]) -> list[tuple[WindowResult, WindowSpan]]:
        if not closing:
            return []
        prepared = [self._window_means(s, win, stop) for s, win, stop in closing]
        cluster_logits = self._logits([m for m, _ in prepared])
        now = time.perf_counter()
        results = []
        threshold = CLUSTER_VOTE
        for (s, win, stop), (_, spans), per_cluster in zip(closing, prepared, cluster_logits):
            n = stop - win.start
            # a cluster of padding alone (a window shorter than G) is not reported, as in classify
            real = [i for i, (lo, _) in enumerate(spans) if lo < n]
            units = [(win.start + lo, win.start + min(hi, n)) for lo, hi in (spans[i] for i in real)]
            row = per_cluster.mean(0)
            scored = self.engine.score(row, per_cluster[real], units, s.locate)
            hits = [u for u, seg in zip(units, scored.segments) if seg.label == scored.label and seg.score >= threshold]
            start_frame, start_s = s.locate(win.start, False)
            end_frame, end_s = s.locate(stop, True)
            arrival = s.arrival[(stop - 1) % s.ts_cap]
            if self.collect_latency:
                first = max(s.latency_upto, win.start)
                self.frame_latency += [now - s.arrival[p % s.ts_cap] for p in range(first, stop)]
                s.latency_upto = max(s.latency_upto, stop)
            result = WindowResult(
                stream=s.name,
                index=s.windows_done,
                start_frame=start_frame,
                end_frame=end_frame,
                start_s=start_s,
                end_s=end_s,
                label=scored.label,
                score=scored.score,
                topk=scored.topk,
                partial=win.partial or s.windows.partial(n),
                segments=scored.segments,
                time_basis=s.basis,
                latency_s=round(float(now - arrival), 4),
                logits=row,
            )
            span = WindowSpan(
                win.start,
                stop,
                result.label,
                result.score,
                hits[0][0] if hits else None,
                hits[-1][1] if hits else None,
                probs=tuple(scored.probs.tolist()),
            )
            results.append((result, span))
            s.windows_done += 1
        return results


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def watch(classifier, source, options: WatchOptions | None = None, **fields: Any) -> Iterator[WatchItem]:
    """Watch one source with ``classifier`` (a ``runtime.Classifier`` loaded in mode full): yields
    window results, events, gaps and a stream end as they happen. Options: a ``WatchOptions`` or
    its fields as keywords (``window_s=8, stride_s=2, threshold=0.5, ...``). A source that cannot be
    opened raises a one-line FvdeployError here, before anything is yielded (a directory: its files,
    each bad one reported as a StreamEnd with ``error``)."""
    return Watcher(classifier, options or WatchOptions(**fields)).run([source], raise_errors=True)


def watch_many(
    classifier, sources: Iterable, options: WatchOptions | None = None, **fields: Any
) -> Iterator[WatchItem]:
    """``watch`` for several sources at once, their frames batched together on the device; a bad
    source yields a StreamEnd with ``error`` and the others go on."""
    return Watcher(classifier, options or WatchOptions(**fields)).run(list(sources))
