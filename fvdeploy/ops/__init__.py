"""Pure tensor ops: temporal clustering and the TSM shift. No I/O, no logging."""

from .clustering import (
    METHODS,
    TemporalClustering,
    aggregate_clusters,
    cluster_ids,
    cluster_ids_from_distances,
    cluster_segments,
    cluster_weights,
    effective_lengths,
    frame_distances,
)
from .halo import rechunk, stream_with_halo
from .sampling import segment_bounds, tsm_indices
from .temporal_shift import TemporalShift, temporal_shift

__all__ = [
    "METHODS",
    "TemporalClustering",
    "TemporalShift",
    "aggregate_clusters",
    "cluster_ids",
    "cluster_ids_from_distances",
    "cluster_segments",
    "cluster_weights",
    "effective_lengths",
    "frame_distances",
    "temporal_shift",
    "rechunk",
    "segment_bounds",
    "stream_with_halo",
    "tsm_indices",
]
