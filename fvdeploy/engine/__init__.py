"""The engine under every driver: one loaded model, the frame pipeline, the sign distance, the
cluster-mean sums, scoring and the memory model (see ``core``). Drivers: ``runtime`` (classify),
``watch`` (windows), ``serve`` (the HTTP service). Names import lazily (torch loads on first use)."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Engine": ".core",
        "FrameCosts": ".plan",
        "FrameTooLarge": ".plan",
        "MemoryPlan": ".plan",
        "Scored": ".scoring",
    },
)

if TYPE_CHECKING:
    from .core import Engine
    from .plan import FrameCosts, FrameTooLarge, MemoryPlan
    from .scoring import Scored

__all__ = ["Engine", "FrameCosts", "FrameTooLarge", "MemoryPlan", "Scored"]
