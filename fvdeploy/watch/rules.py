"""The rules that turn windows into events (``fvdeploy.watch.events`` applies them): torch-free, so
the command line can show their defaults without loading torch."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import FvdeployError

EXIT = 0.7  # the exit probability when none is given (or enter, if lower)
# A cluster votes for a label when that is its own top label with at least this probability; an
# event that starts or ends in no action starts at the first and ends at the last vote of its edge
# windows (fvdeploy.watch.events)
CLUSTER_VOTE = 0.5


@dataclass
class EventRules:
    """How windows become events; the defaults were chosen on generated Move4 recordings
    (docs/watch.md, "Events").

    - ``enter``: the probability a window's top label needs to start an event;
    - ``exit``: the probability its label needs in each next window for the event to go on
      (hysteresis; ``<= enter``; None: 0.7, or ``enter`` if lower);
    - ``merge_gap_s``: seconds: a run of a label that starts at most this long after the previous
      run of that label ended joins it (when nothing in between lasted ``min_duration_s``);
    - ``min_duration_s``: seconds: shorter events are dropped.

    ``validate()`` raises ``FvdeployError`` (one line) for values outside those ranges."""

    enter: float = 0.8
    exit: float | None = None
    merge_gap_s: float = 2.0
    min_duration_s: float = 4.0

    @property
    def exit_p(self) -> float:
        """``exit`` as applied."""
        return min(EXIT, self.enter) if self.exit is None else self.exit

    def validate(self) -> None:
        for name, v in (("enter", self.enter), ("exit", self.exit_p)):
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise FvdeployError(f"{name} must be a probability in [0, 1], got {v}")
        if self.exit_p > self.enter:
            raise FvdeployError(
                f"exit ({self.exit_p}) must not exceed enter ({self.enter}): an event goes on while its label "
                "keeps at least the exit probability"
            )
        for name, v in (("merge_gap", self.merge_gap_s), ("min_duration", self.min_duration_s)):
            if not (isinstance(v, (int, float)) and v >= 0 and math.isfinite(v)):
                raise FvdeployError(f"{name} must be a number of seconds >= 0, got {v}")
