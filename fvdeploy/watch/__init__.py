"""Windowed classification of long recordings and live streams (``Classifier.watch``): windows,
events, gaps and stream ends over any frame source (``fvdeploy.io.sources``).

Names import lazily (torch loads with the first use); ``watch.rules`` is torch-free."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Event": ".results",
        "EventRules": ".rules",
        "Gap": ".results",
        "StreamEnd": ".results",
        "WatchItem": ".results",
        "WindowResult": ".results",
        "StreamSpec": ".watcher",
        "Watcher": ".watcher",
        "WatchOptions": ".watcher",
        "resolve_sources": ".watcher",
        "watch": ".watcher",
        "watch_many": ".watcher",
    },
)

if TYPE_CHECKING:
    from .results import Event, Gap, StreamEnd, WatchItem, WindowResult
    from .rules import EventRules
    from .watcher import StreamSpec, Watcher, WatchOptions, resolve_sources, watch, watch_many

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
