"""The runtime: classify videos of any length (files, arrays, streams) in bounded memory."""

from .classifier import Classifier
from .results import Segment, VideoResult

__all__ = ["Classifier", "Segment", "VideoResult"]
