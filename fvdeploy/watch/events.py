"""Merge consecutive window results into action events.

An event opens with a window whose top score reaches the threshold, grows while the following
windows keep that label above it, and closes (is emitted) at the first window that does not, or at
the end of the segment (a drop, the end of the stream): a live source reports it about one stride
after it ended. Events shorter than ``min_duration_s`` are dropped (flickers).

Where it starts and ends: windows overlap, so the union of its windows would overshoot by up to a
window on each side. The full-video method already says which frames carry the label: each window
is split into G clusters of similar consecutive frames, and each cluster is classified on its own
(before the window's logits are averaged). An event starts at the first cluster of its first
window whose own top label is the event's label with a probability at or above the threshold, and
ends at the end of the last such cluster of its last window. Where a window has no such cluster,
its *share* is used instead: the frames nearer its centre than any neighbouring window's centre,
cut to the window (with a regular stride S the S frames around its centre; the first window of a
segment reaches back to its start, the last one to its end). An event never starts before the
previous event of the stream ended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..records import Event


@dataclass
class WindowSpan:
    """What the tracker needs of a window: positions are the stream's frame positions."""

    start: int
    stop: int  # exclusive
    label: str
    score: float
    first_hit: int | None = None  # start of the first cluster carrying ``label`` (above the threshold)
    last_hit: int | None = None  # end of the last such cluster

    @property
    def centre2(self) -> int:  # twice the centre, to stay in integers
        return self.start + self.stop


def shared_boundary(prev: WindowSpan, nxt: WindowSpan) -> tuple[int, int]:
    """Where ``prev``'s share ends and ``nxt``'s begins: the midpoint of their centres, cut to each
    window (so windows that do not overlap keep their own extent)."""
    mid = (prev.centre2 + nxt.centre2) // 4
    return min(max(mid, prev.start), prev.stop), min(max(mid, nxt.start), nxt.stop)


@dataclass
class _Open:
    label: str
    start: int
    score_sum: float
    windows: int


Boundary = Callable[[int, bool], tuple[float | None, int]]


class EventTracker:
    """Feed windows in order with ``add``; call ``close`` at the end of a segment. Both return the
    events that closed. ``boundary(pos, end)`` gives the seconds (or None) and source frame number
    of the start of position ``pos``, or with ``end`` of the end of position ``pos - 1``."""

    def __init__(
        self,
        stream: str,
        threshold: float,
        min_duration_s: float,
        time_basis: str | None,
        boundary: Boundary,
        fps: float | None,
    ) -> None:
        self.stream, self.threshold, self.min_duration_s = stream, threshold, min_duration_s
        self.time_basis, self.boundary, self.fps = time_basis, boundary, fps
        self.prev: WindowSpan | None = None
        self.last_end: int | None = None  # where the previous event of this segment ended
        self.open: _Open | None = None
        self.open_start_s: float | None = None
        self.open_start_frame = 0
        self.count = 0

    def add(self, w: WindowSpan) -> list[Event]:
        out: list[Event] = []
        start = w.start
        if self.prev is not None:
            prev_end, start = shared_boundary(self.prev, w)
            if self.open is not None and (w.label != self.open.label or w.score < self.threshold):
                out += self._close(prev_end if self.prev.last_hit is None else self.prev.last_hit)
        if w.score >= self.threshold:
            if self.open is None:
                if w.first_hit is not None:
                    start = w.first_hit
                if self.last_end is not None:
                    start = max(start, self.last_end)
                self.open = _Open(w.label, start, 0.0, 0)
                self.open_start_s, self.open_start_frame = self.boundary(start, False)
            self.open.score_sum += w.score
            self.open.windows += 1
        self.prev = w
        return out

    def close(self) -> list[Event]:
        """End of the segment: an open event ends with its last window."""
        out = []
        if self.open is not None and self.prev is not None:
            out = self._close(self.prev.stop if self.prev.last_hit is None else self.prev.last_hit)
        self.prev = self.last_end = None
        return out

    def _close(self, stop: int) -> list[Event]:
        o, self.open = self.open, None
        assert o is not None  # only called with an event open
        stop = max(stop, o.start + 1)
        self.last_end = stop
        start_s, start_frame = self.open_start_s, self.open_start_frame
        end_s, end_frame = self.boundary(stop, True)
        if start_s is not None and end_s is not None:
            duration = end_s - start_s
        elif self.fps:
            duration = (end_frame - start_frame) / self.fps
        else:
            duration = None
        if duration is not None and duration < self.min_duration_s:
            return []
        self.count += 1
        return [
            Event(
                self.stream,
                o.label,
                round(o.score_sum / o.windows, 6),
                start_s,
                end_s,
                start_frame,
                end_frame,
                o.windows,
                self.time_basis,
            )
        ]
