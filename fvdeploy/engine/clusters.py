"""Cluster means: the one sum policy, for a whole video of any length and for a window.

Every cluster mean fvdeploy computes is a sum of ``layer1`` maps taken chunk by chunk in the maps'
own precision by torch's pairwise reduction, widened to float64 between chunks, divided by the
count and returned as float32 (:func:`chunk_sum`, :func:`cluster_means`): classify and watch give
the same means for the same frames.

Cluster means of a video of any length in bounded memory (:class:`ClusterAccumulator`).

Clustering needs every neighbour distance before it can place a boundary, and only then can the
cluster means be taken. The accumulator receives layer1 feature chunks in order and:

1. keeps every frame's neighbour distance (8 bytes a frame, on the device) and, while they fit the memory budget,
   the features themselves: short and medium videos are decoded once and averaged exactly;
2. beyond the budget, keeps per-chunk *sums* instead, in a bounded number of slots (neighbouring
   slots merge when full), so what it holds no longer grows with T;
3. at the end, cluster ids come from the distances; a cluster mean is the sum of the slots inside
   it plus, for the at most G-1 slots that straddle a boundary, the frames recomputed from the
   source (``recompute(start, stop)`` yields their features in chunks: the caller seeks, decodes and
   reruns stem + layer1 on just those frames). The result equals the whole-video forward.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import FvdeployError
from ..ops.clustering import cluster_ids_from_distances, sign_changes

# (start, stop) -> the layer1 maps of frames [start, stop) in order, in chunks: a straddling slot can
# hold thousands of frames, so it is never materialised whole (nor in float64).
Recompute = Callable[[int, int], Iterable[Tensor]]


SLOT_PIECE = 8  # frames per slot as it is added (merges make slots longer)


class MemoryBudgetExceeded(FvdeployError):
    pass


@dataclass
class Slot:
    start: int
    stop: int
    total: Tensor  # sum of the layer1 maps of frames [start, stop), float64, flat in memory order


def memory_order(x: Tensor) -> tuple[int, ...]:
    """The permutation of ``x``'s dims that lists them from outermost to innermost in memory
    (``(0, 2, 3, 1)`` for a channels_last map, the identity for a contiguous one)."""
    strides = x.stride()
    return tuple(sorted(range(x.dim()), key=lambda d: (-strides[d], d)))


class ClusterAccumulator:
    def __init__(self, store_budget: int, slot_budget: int, can_recompute: bool) -> None:
        """``store_budget``: bytes of features kept verbatim; ``slot_budget``: bytes of slot sums
        (float64) once the features no longer fit."""
        self.store_budget = store_budget
        self.slot_budget = slot_budget
        self.max_slots = 2  # set from the first chunk: a slot holds one map in float64
        self.can_recompute = can_recompute
        self.features: list[Tensor] | None = []
        self.stored = 0
        self.slots: list[Slot] = []
        self.distances: list[Tensor] = []
        self.prev_signs: Tensor | None = None
        self.num_frames = 0
        self.order: tuple[int, ...] | None = None  # of the first chunk's maps; later chunks follow it
        self.map_shape: tuple[int, ...] | None = None

    @property
    def streaming_sums(self) -> bool:
        return self.features is None

    def _rows(self, feats: Tensor) -> Tensor:
        """``[m, C, h, w]`` -> ``[m, C*h*w]`` in memory order: a view, not a copy, whatever the
        layout (a channels_last map reduced as [m, C, h, w] runs 4x slower than its flat view)."""
        if self.order is None:
            self.order, self.map_shape = memory_order(feats), tuple(feats.shape[1:])
        x = feats.permute(self.order)
        return (x if x.is_contiguous() else x.contiguous()).reshape(feats.shape[0], -1)

    def _unflatten(self, flat: Tensor) -> Tensor:
        """``[G, C*h*w]`` in memory order -> ``[G, C, h, w]`` (in the maps' own layout)."""
        assert self.order is not None and self.map_shape is not None  # set by the first add()
        shape = [self.map_shape[d - 1] for d in self.order[1:]]
        inverse = [self.order.index(d) for d in range(len(self.order))]
        return flat.reshape(flat.shape[0], *shape).permute(inverse)

    def add(self, feats: Tensor) -> None:
        """Add the layer1 maps ``[m, C, h, w]`` of the next m frames."""
        if feats.shape[0] == 0:
            return
        if self.num_frames == 0:  # -1: a merge makes one more sum before it frees two
            self.max_slots = max(2, self.slot_budget // (8 * feats[0].numel()) - 1)
        rows = self._rows(feats)
        signs = rows > 0
        d = sign_changes(signs[1:], signs[:-1])
        if self.prev_signs is not None:
            d = torch.cat([sign_changes(signs[:1], self.prev_signs[None]), d])
        self.distances.append(d)  # stays on the device: a copy here would stall the GPU every chunk
        self.prev_signs = signs[-1].clone()
        start = self.num_frames
        self.num_frames += feats.shape[0]
        if self.features is not None:
            if self.stored + feats.numel() * feats.element_size() <= self.store_budget:
                self.features.append(rows)
                self.stored += feats.numel() * feats.element_size()
                return
            if not self.can_recompute:
                raise MemoryBudgetExceeded(
                    "this stream is longer than the memory budget allows for whole-video classification, "
                    "and a stream cannot be read twice; use windowed classification (fvdeploy watch / "
                    "fvdeploy.watch.watch) or raise --max-memory"
                )
            self._to_slots()
        self._add_slots(rows, start)

    def _add_slots(self, rows: Tensor, start: int) -> None:
        # A chunk goes in as slots of SLOT_PIECE frames, which merges then make about T / max_slots
        # long: a slot that straddles a boundary is recomputed whole at the end, so slots shorter
        # than a chunk recompute fewer frames (3,000 frames at 224 px, 64-frame chunks, 7 straddling
        # slots: ~450 frames recomputed as chunks, ~150 as pieces).
        for a in range(0, rows.shape[0], SLOT_PIECE):
            piece = rows[a : a + SLOT_PIECE]
            self.slots.append(Slot(start + a, start + a + piece.shape[0], chunk_sum(piece)))
            self._merge()

    def _to_slots(self) -> None:
        # stored chunks are freed as they become slot sums, so the two budgets are not held at once
        features, self.features, self.stored = self.features or [], None, 0
        features.reverse()
        start = 0
        while features:
            f = features.pop()
            self._add_slots(f, start)
            start += f.shape[0]
            del f

    def _merge(self) -> None:
        # Merge the neighbouring pair with the fewest frames: slots stay about equally long, so
        # the frames recomputed at the end (those of straddling slots) stay about T / max_slots each.
        while len(self.slots) > self.max_slots:
            sizes = [self.slots[i + 1].stop - self.slots[i].start for i in range(len(self.slots) - 1)]
            i = min(range(len(sizes)), key=sizes.__getitem__)
            a, b = self.slots[i], self.slots.pop(i + 1)
            a.stop, a.total = b.stop, a.total + b.total

    def finish(self, num_clusters: int, method: str, recompute: Recompute | None = None) -> tuple[Tensor, Tensor]:
        """Cluster means ``[G, C, h, w]`` (float32) and ids ``[T]`` over all frames added."""
        if self.num_frames < num_clusters:
            raise ValueError(f"need at least {num_clusters} frames, got {self.num_frames} (pad before streaming)")
        d = torch.cat(self.distances).cpu()  # num_frames - 1 neighbour distances
        ids = cluster_ids_from_distances(d[None], num_clusters, method)[0]
        counts = torch.bincount(ids, minlength=num_clusters).to(torch.float64)
        if self.features is None and recompute is None:
            raise MemoryBudgetExceeded("the video outgrew the memory budget and its frames cannot be recomputed")
        device = (self.features[0] if self.features is not None else self.slots[0].total).device
        width = self.slots[0].total.numel() if self.features is None else self.features[0].shape[1]
        sums = torch.zeros((num_clusters, width), dtype=torch.float64, device=device)

        def add_runs(rows: Tensor, pos: int) -> None:
            # Clusters are runs of consecutive frames: each run in a chunk is one reduction of
            # contiguous rows (no float64 copy of the features, no concatenation).
            runs, lengths = torch.unique_consecutive(ids[pos : pos + rows.shape[0]], return_counts=True)
            start = 0
            for k, n in zip(runs.tolist(), lengths.tolist()):
                sums[k] += chunk_sum(rows[start : start + n])
                start += n

        if self.features is not None:
            pos = 0
            for rows in self.features:
                add_runs(rows, pos)
                pos += rows.shape[0]
        elif recompute is not None:
            for slot in self.slots:
                first, last = int(ids[slot.start]), int(ids[slot.stop - 1])
                if first == last:
                    sums[first] += slot.total
                    continue
                pos = slot.start
                for feats in recompute(slot.start, slot.stop):
                    add_runs(self._rows(feats), pos)
                    pos += feats.shape[0]
                if pos != slot.stop:
                    raise RuntimeError(f"recomputing frames [{slot.start}, {slot.stop}) gave {pos - slot.start} frames")
        means = sums / counts.to(device)[:, None]
        return self._unflatten(means.to(torch.float32)), ids


def chunk_sum(rows: Tensor) -> Tensor:
    """Sum of ``rows [n, ...]`` over n (any layout), float64 ``[...]``. A chunk (at most a few hundred frames) is summed in
    its own precision by torch's pairwise reduction, then widened: converting every element to
    float64 first costs 5x the time for no accuracy that survives the float32 mean."""
    return rows.sum(0, dtype=torch.float32).to(torch.float64)  # fp16/bf16 maps: accumulated and kept in fp32


def cluster_means(
    ids: Tensor, num_clusters: int, rows: Callable[[int, int], Iterable[Tensor]]
) -> tuple[Tensor, list[tuple[int, int]]]:
    """Means ``[G, ...]`` (float32) of consecutive clusters and their spans ``[(start, stop)]``.

    ``ids``: ``[T]`` non-decreasing cluster ids of T frames; ``rows(start, stop)``: the maps
    ``[m, ...]`` of frames ``[start, stop)`` in one or more pieces (a ring buffer that wraps, edge
    frames rerun with a window's padding). Each piece is summed by :func:`chunk_sum`."""
    counts = torch.bincount(ids, minlength=num_clusters).tolist()
    spans, means, lo = [], [], 0
    for c in counts:
        hi = lo + c
        total = sum(chunk_sum(p) for p in rows(lo, hi))
        means.append((total / c).to(torch.float32))
        spans.append((lo, hi))
        lo = hi
    return torch.stack(means), spans
