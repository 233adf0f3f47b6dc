"""Windowed classification of long recordings and live streams (``Classifier.watch``): windows,
events, gaps and stream ends over any frame source (``fvdeploy.io.sources``)."""

from ..records import Event, Gap, StreamEnd, WatchItem, WindowResult
from .watcher import StreamSpec, Watcher, WatchOptions, resolve_sources, watch, watch_many

__all__ = [
    "Event",
    "Gap",
    "StreamEnd",
    "StreamSpec",
    "WatchItem",
    "WatchOptions",
    "Watcher",
    "WindowResult",
    "resolve_sources",
    "watch",
    "watch_many",
]
