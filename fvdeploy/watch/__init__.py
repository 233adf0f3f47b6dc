"""Windowed classification of long recordings and live streams: windows, events, gaps and stream
ends over any frame source (``fvdeploy.io.sources``), on the engine (``fvdeploy.engine``)."""

from ..records import Event, Gap, StreamEnd, WatchItem, WindowResult
from .options import StreamSpec, WatchOptions, resolve_sources
from .watcher import Watcher, watch, watch_many

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
