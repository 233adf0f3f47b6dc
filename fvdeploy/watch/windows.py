"""Where windows lie in a stream: two small types with one interface, so the watcher has no
``if timed`` branches.

Positions are the stream's frame positions (frames delivered to the watcher, counted from 0); a
*segment* is a run of positions without a drop (a live stream that dropped starts a new one at
its first frame after the gap). Window k of a segment:

- :class:`FrameWindows` (``--window-frames W --stride-frames S``): positions
  ``[s0 + k*S, s0 + k*S + W)``, ``s0`` the segment's first position;
- :class:`TimedWindows` (``--window`` / ``--stride`` in seconds): the frames whose presentation
  time is in ``[t0 + k*St, t0 + k*St + Wt)``, ``t0`` the segment's first time. A frame's windows are
  known when it arrives (:meth:`place`), a window's end when the first frame past it arrives; the
  ring bound ``cap`` (frames) closes a window early on a stream that runs far above its declared
  rate.

Frames that no window covers (a stride longer than the window) are decoded but never reach the
model; ``covered``/``run_start``/``run_end`` tell the watcher where the covered runs begin and end.
"""

from __future__ import annotations

import math


class FrameWindows:
    """Windows of ``window`` frames starting every ``stride`` frames."""

    def __init__(self, window: int, stride: int) -> None:
        self.W, self.S = window, stride
        self.reset(0)

    def reset(self, start: int) -> None:
        """A new segment starts at position ``start``."""
        self.s0 = start
        self.next_k = 0  # windows before this one have been opened

    def place(self, pos: int, t: float) -> None:
        """Frame ``pos`` arrived at time ``t`` (frame windows do not read times)."""

    def covered(self, pos: int, t: float) -> bool:
        """Whether a window holds frame ``pos`` (at time ``t``)."""
        return self.S <= self.W or (pos - self.s0) % self.S < self.W

    def run_start(self, pos: int) -> bool:
        return pos == self.s0 or (self.S > self.W and (pos - self.s0) % self.S == 0)

    def run_end(self, pos: int) -> bool:
        """Whether a covered run ends with ``pos`` (known as soon as ``pos`` arrives)."""
        return self.S > self.W and (pos - self.s0) % self.S == self.W - 1

    def start(self, k: int) -> int | None:
        return self.s0 + k * self.S

    def stop(self, k: int) -> int | None:
        """One past window k's last position, once known (frame windows: always)."""
        return self.s0 + k * self.S + self.W

    def opening(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """``(k, start)`` of the windows not opened yet that start in ``[lo, hi)``; every window
        starting before ``hi`` counts as opened from now on."""
        out = []
        while (a := self.s0 + self.next_k * self.S) < hi:
            if a >= lo:
                out.append((self.next_k, a))
            self.next_k += 1
        return out

    def previous_stop(self, k: int) -> int:
        """Where the windows before window k end (a last window is reported only with frames past it)."""
        return self.s0 + (k - 1) * self.S + self.W if k > 0 else self.s0

    def whole(self, k: int, end_s: float | None) -> bool:
        """Whether a last window cut by the segment's end (at ``end_s`` seconds) still counts as
        whole: a frame window cut short never does."""
        return False

    def partial(self, frames: int) -> bool:
        """Whether a closed window of ``frames`` frames is shorter than a window."""
        return frames < self.W

    def closed(self, k: int, stop: int) -> None:
        """Window k closed at ``stop``: forget it."""

    def nominal_frames(self, fps: float | None) -> int:
        """The window length in frames reported at the end of a stream."""
        return self.W


class TimedWindows:
    """Windows of ``window_s`` seconds starting every ``stride_s`` seconds of presentation time;
    ``cap`` frames at most per window (the ring's size)."""

    def __init__(self, window_s: float, stride_s: float, cap: int) -> None:
        self.Wt, self.St, self.cap = window_s, stride_s, cap
        self.reset(0)

    def reset(self, start: int) -> None:
        self.s0 = start
        self.next_k = 0
        self.t0: float | None = None  # the segment's first presentation time
        self.starts: dict[int, int] = {}  # window k -> its first position ...
        self.stops: dict[int, int] = {}  # ... and one past its last, once a later frame (or the cap) ends it
        self.last_stop = start

    def _at(self, t: float) -> range:
        """The windows whose time range holds time ``t``."""
        if self.t0 is None or math.isnan(t):
            return range(0)
        x = t - self.t0 + 1e-9
        return range(max(0, math.floor((x - self.Wt) / self.St) + 1), math.floor(x / self.St) + 1)

    def place(self, pos: int, t: float) -> None:
        """Frame ``pos`` at time ``t`` starts, joins or ends windows."""
        if self.t0 is None:
            self.t0 = t
        ks = self._at(t)
        for k, start in self.starts.items():
            # a window ends when its time is over, or when the ring is full
            if k not in self.stops and (k < ks.start or pos - start >= self.cap):
                self.stops[k] = pos
        for k in ks:
            if k not in self.starts and k >= self.next_k:
                self.starts[k] = pos

    def covered(self, pos: int, t: float) -> bool:
        return self._at(t) != range(0)

    def run_start(self, pos: int) -> bool:
        return pos == self.s0 or (self.St > self.Wt and pos in self.starts.values())

    def run_end(self, pos: int) -> bool:
        """Known only when the next frame arrives: the watcher ends the run then."""
        return False

    def start(self, k: int) -> int | None:
        return self.starts.get(k)

    def stop(self, k: int) -> int | None:
        return self.stops.get(k)

    def opening(self, lo: int, hi: int) -> list[tuple[int, int]]:
        out = []
        for k in sorted(k for k in self.starts if k >= self.next_k):
            a = self.starts[k]
            if a >= hi:
                break
            if a >= lo:
                out.append((k, a))
            self.next_k = k + 1
        return out

    def previous_stop(self, k: int) -> int:
        return self.last_stop

    def whole(self, k: int, end_s: float | None) -> bool:
        """A last window whose time range the segment covered to its end is whole."""
        return self.t0 is not None and end_s is not None and end_s >= self.t0 + k * self.St + self.Wt - 1e-6

    def partial(self, frames: int) -> bool:
        return False  # a window in seconds is partial only when the segment's end cut it (see whole)

    def closed(self, k: int, stop: int) -> None:
        self.starts.pop(k, None)
        self.stops.pop(k, None)
        self.last_stop = max(self.last_stop, stop)

    def nominal_frames(self, fps: float | None) -> int | None:
        """Windows in seconds: their length at the declared rate (``cap`` only bounds the ring)."""
        return max(1, round(self.Wt * fps)) if fps else None


Windows = FrameWindows | TimedWindows
