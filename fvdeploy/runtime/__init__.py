"""The runtime: classify videos of any length (files, arrays, streams) in bounded memory.

Names import lazily (torch loads with the first use); ``runtime.names`` is torch-free."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__, {"Classifier": ".classifier", "Segment": ".results", "VideoResult": ".results"}
)

if TYPE_CHECKING:
    from .classifier import Classifier
    from .results import Segment, VideoResult

__all__ = ["Classifier", "Segment", "VideoResult"]
