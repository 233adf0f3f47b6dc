"""The runtime: classify videos of any length (files, arrays, streams) in bounded memory.

Names import lazily (torch loads with the first use); ``runtime.names`` is torch-free."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {"Classifier": ".classifier", "ClassifyOptions": ".options", "Segment": "..records", "VideoResult": "..records"},
)

if TYPE_CHECKING:
    from ..records import Segment, VideoResult
    from .classifier import Classifier
    from .options import ClassifyOptions

__all__ = ["Classifier", "ClassifyOptions", "Segment", "VideoResult"]
