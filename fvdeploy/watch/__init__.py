"""Windowed classification of long recordings and live streams: windows, events, gaps and stream
ends over any frame source (``fvdeploy.io.sources``), on the engine (``fvdeploy.engine``).

Names import lazily (torch loads with the first use); ``watch.rules`` is torch-free, so the command
line shows the event rules' defaults without loading torch."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Event": "..records",
        "Gap": "..records",
        "StreamEnd": "..records",
        "WatchItem": "..records",
        "WindowResult": "..records",
        "EventRules": ".rules",
        "StreamSpec": ".options",
        "WatchOptions": ".options",
        "resolve_sources": ".options",
        "Watcher": ".watcher",
        "watch": ".watcher",
        "watch_many": ".watcher",
    },
)

if TYPE_CHECKING:
    from ..records import Event, Gap, StreamEnd, WatchItem, WindowResult
    from .options import StreamSpec, WatchOptions, resolve_sources
    from .rules import EventRules
    from .watcher import Watcher, watch, watch_many

__all__ = [
    "Event",
    "EventRules",
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
