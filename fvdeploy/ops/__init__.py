"""Pure tensor ops: temporal clustering and the TSM shift. No I/O, no logging.

Names import lazily (torch loads with the first use); ``ops.names`` is torch-free."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from .names import METHODS

_EXPORTS = {
    **{
        name: ".clustering"
        for name in (
            "TemporalClustering",
            "aggregate_clusters",
            "cluster_ids",
            "cluster_ids_from_distances",
            "cluster_segments",
            "cluster_weights",
            "effective_lengths",
            "frame_distances",
            "sign_changes",
        )
    },
    "rechunk": ".halo",
    "stream_with_halo": ".halo",
    "segment_bounds": ".sampling",
    "tsm_indices": ".sampling",
    "TemporalShift": ".temporal_shift",
    "temporal_shift": ".temporal_shift",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .clustering import (
        TemporalClustering,
        aggregate_clusters,
        cluster_ids,
        cluster_ids_from_distances,
        cluster_segments,
        cluster_weights,
        effective_lengths,
        frame_distances,
        sign_changes,
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
    "sign_changes",
    "temporal_shift",
    "rechunk",
    "segment_bounds",
    "stream_with_halo",
    "tsm_indices",
]
