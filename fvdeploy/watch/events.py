"""Turn consecutive window results into action events: hysteresis, a merge gap, a minimum
duration, and a "no action" state.

The rules (``EventRules``; docs/watch.md has the measurements behind the defaults):

1. **Hysteresis.** With no event under way the stream is in the *no action* state. A window whose
   top label has a probability of at least ``enter`` starts a *run* of that label; the run goes on
   while each next window gives the same label at least ``exit`` (``exit <= enter``), whatever that
   window's top label, and stops at the first window that does not. That window may start a run of
   its own top label (at ``enter``); else the stream is back to no action. Windows in which no label
   reaches ``enter`` never start anything: a model without a "nothing happens" class reports its
   guesses on empty scenes with low, spread probabilities, and those stay no action.
2. **Merge gap.** A run that starts at most ``merge_gap_s`` after the previous run of the same
   label ended joins it into one event, provided everything in between (no action, or runs of other
   labels) is shorter than ``min_duration_s`` each: a few confused windows inside an action do not
   cut it in two, and a real action in between is never swallowed.
3. **Minimum duration.** An event (after merging) shorter than ``min_duration_s`` is dropped:
   flickers of a label on a distractor, or a confused stretch between two actions.

An event is emitted once nothing can change it any more: no later run of its label can join it
(a window that starts more than ``merge_gap_s`` after its end has been classified, or a run of
another label reached ``min_duration_s`` in between), or the segment ended (end of stream, stop,
drop). A live source therefore reports an event about ``merge_gap_s`` plus a window and a stride
after it ended.

**Where it starts and ends.** Windows overlap, so the union of a run's windows would overshoot by up
to a window each side. Each window stands for its *share*: the frames nearer its centre than any
neighbouring window's centre, cut to the window (with a regular stride S, the S frames around its
centre; the first window of a segment reaches back to its start, the last one to its end). A run
starts where its first window's share starts and ends where the share of its last window that had
its label on top ends: a transition is placed where the windows' majority changes, half-way between
the centres of the last window of one label and the first of the next. Runs, and so events, never
overlap. (The previous rule placed the ends at the first and last cluster of the edge windows that
voted for the label: on the recordings of docs/watch.md it put 46 of 64 boundaries within a stride
against 63 of 64 for the shares, as a cluster of a few frames often votes for another label.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .results import Event
from .rules import EventRules


@dataclass
class WindowSpan:
    """What the tracker needs of a window: positions are the stream's frame positions.

    ``probs`` (the window's probability of every label, in the tracker's label order) lets the
    tracker follow a label that is not the window's top one (hysteresis); without it the tracker
    knows only ``label`` and ``score``. ``first_hit``/``last_hit`` (where the window's clusters
    voting for ``label`` begin and end) are kept for callers; the tracker places boundaries by the
    windows' shares (module docstring)."""

    start: int
    stop: int  # exclusive
    label: str
    score: float
    first_hit: int | None = None  # start of the first cluster carrying ``label`` (above the threshold)
    last_hit: int | None = None  # end of the last such cluster
    probs: tuple[float, ...] | None = None  # every label's probability, in the model's label order

    @property
    def centre2(self) -> int:  # twice the centre, to stay in integers
        return self.start + self.stop


def shared_boundary(prev: WindowSpan, nxt: WindowSpan) -> tuple[int, int]:
    """Where ``prev``'s share ends and ``nxt``'s begins: the midpoint of their centres, cut to each
    window (so windows that do not overlap keep their own extent)."""
    mid = (prev.centre2 + nxt.centre2) // 4
    return min(max(mid, prev.start), prev.stop), min(max(mid, nxt.start), nxt.stop)


@dataclass
class _Piece:
    """A run of one label (open while ``closed`` is False), or several merged."""

    label: str
    start: int  # stream positions, ``stop`` exclusive
    stop: int
    start_at: tuple[float | None, int]  # seconds and source frame of ``start`` (``boundary``), read when
    stop_at: tuple[float | None, int]  # the positions were fresh: the watcher keeps recent times only
    score_sum: float = 0.0
    windows: int = 0
    tail: int = 0  # where the run ends if it ends now: the end of the last window that had its label on top


Boundary = Callable[[int, bool], tuple[float | None, int]]
WAIT = -1  # ``EventTracker.claim``: not known yet
# ``EventTracker.on_final(key, start, stop, event)``: the candidate ``key`` (positions ``[start,
# stop)``) is final; ``event`` is what was emitted for it, or None when it was dropped as too short.
OnFinal = Callable[[int, int, int, "Event | None"], None]


class EventTracker:
    """Feed windows in order with ``add``; call ``close`` at the end of a segment. Both return the
    events that became final. ``boundary(pos, end)`` gives the seconds (or None) and source frame
    number of the start of position ``pos``, or with ``end`` of the end of position ``pos - 1``.
    ``labels``: the model's labels, the order of ``WindowSpan.probs``. ``fps`` converts frames to
    seconds where the source has no times (None: durations unknown, nothing is dropped for being
    short, and only touching runs merge). Raises ``FvdeployError`` for invalid ``rules``."""

    def __init__(
        self,
        stream: str,
        rules: EventRules,
        time_basis: str | None,
        boundary: Boundary,
        fps: float | None,
        labels: Sequence[str] = (),
    ) -> None:
        rules.validate()
        self.stream, self.rules, self.time_basis = stream, rules, time_basis
        self.boundary, self.fps = boundary, fps
        self.index = {label: i for i, label in enumerate(labels)}
        self.count = 0
        self.on_final: OnFinal | None = None  # evidence clips (fvdeploy.watch.clips) follow candidates
        self._reset()

    def _reset(self) -> None:
        self.prev: WindowSpan | None = None
        self.run: _Piece | None = None  # the run under way
        self.pending: _Piece | None = None  # the last event candidate, while a later run may join it
        self.between: list[_Piece] = []  # runs after ``pending``, not (yet) part of an event
        self.last_end: int | None = None  # where the last emitted event (or closed run) ended

    # -- which candidate a frame belongs to (evidence clips) ------------------------------------------
    def claim(self, pos: int) -> int | None:
        """Which event candidate frame ``pos`` surely belongs to, as far as the windows so far tell:
        its key (as passed to ``on_final``), ``None`` when no event can ever contain it, or ``WAIT``.

        A candidate is a run, or runs already merged; its frames from its start to the end of the
        last window that had its label on top are sure. Frames after a closed candidate wait while a
        later run may still join it; frames of a run of the same label that will join it (it started
        within the merge gap and nothing long came in between) are its frames."""
        p, run = self.pending, self.run
        if p is not None:
            if pos < p.start:
                return None
            if pos < p.stop:
                return id(p)
            if (
                run is not None
                and run.label == p.label
                and self._within_gap(p, run.start, run.start_at)
                and all(self._short(b) for b in self.between)
                and pos < run.tail
            ):
                return id(p)
            return WAIT
        if run is not None:
            if pos < run.start:
                return None
            return id(run) if pos < run.tail else WAIT
        # no candidate: a later run starts in a later window, after the last run
        earliest = max(self.prev.start + 1 if self.prev is not None else 0, self.last_end or 0)
        return None if pos < earliest else WAIT

    # -- probabilities -------------------------------------------------------------------------------
    def _prob(self, w: WindowSpan, label: str) -> float:
        if w.probs is not None and label in self.index:
            return float(w.probs[self.index[label]])
        return w.score if w.label == label else 0.0

    # -- time ----------------------------------------------------------------------------------------
    def _seconds(self, a: tuple[float | None, int], b: tuple[float | None, int]) -> float | None:
        """Seconds from boundary ``a`` to boundary ``b`` (each ``(seconds or None, source frame)``)."""
        if a[0] is not None and b[0] is not None:
            return b[0] - a[0]
        return (b[1] - a[1]) / self.fps if self.fps else None

    def _short(self, p: _Piece) -> bool:
        d = self._seconds(p.start_at, p.stop_at)
        return d is not None and d < self.rules.min_duration_s - 1e-9

    def _within_gap(self, p: _Piece, start: int, start_at: tuple[float | None, int]) -> bool:
        """Whether a run starting at ``start`` may join ``p``."""
        if start <= p.stop:
            return True
        d = self._seconds(p.stop_at, start_at)
        return d is not None and d <= self.rules.merge_gap_s + 1e-9

    # -- feeding -------------------------------------------------------------------------------------
    def add(self, w: WindowSpan) -> list[Event]:
        out: list[Event] = []
        prev, start = self.prev, w.start
        if prev is not None:
            prev_end, start = shared_boundary(prev, w)
            run = self.run
            if run is not None:
                if self._top(prev)[0] == run.label:
                    run.tail = prev_end
                if self._prob(w, run.label) < self.rules.exit_p:
                    out += self._closed(run.tail)
        if self.run is not None:
            self.run.score_sum += self._prob(w, self.run.label)
            self.run.windows += 1
        else:
            label, score = self._top(w)
            if score >= self.rules.enter:
                if self.last_end is not None:
                    start = max(start, self.last_end)
                if start < w.stop:  # else the previous run took all of this window
                    at = self.boundary(start, False)
                    self.run = _Piece(label, start, start + 1, at, at, score, 1, tail=start)
        self.prev = w
        out += self._settle(w)
        return out

    def close(self) -> list[Event]:
        """End of the segment: the run under way ends with its last window; every candidate is final."""
        out: list[Event] = []
        if self.run is not None and self.prev is not None:
            if self._top(self.prev)[0] == self.run.label:
                self.run.tail = self.prev.stop
            out += self._closed(self.run.tail)
        while self.pending is not None:
            out += self._finish()
        self._reset()
        return out

    def _top(self, w: WindowSpan) -> tuple[str, float]:
        if w.probs is not None and self.index:
            labels = list(self.index)
            j = max(range(len(w.probs)), key=lambda i: w.probs[i])  # type: ignore[index]
            return labels[j], float(w.probs[j])
        return w.label, w.score

    def _closed(self, stop: int) -> list[Event]:
        """The run under way ends at position ``stop``."""
        run, self.run = self.run, None
        assert run is not None
        run.stop = max(stop, run.start + 1)
        run.stop_at = self.boundary(run.stop, True)
        self.last_end = run.stop
        return self._place(run)

    def _place(self, run: _Piece) -> list[Event]:
        """A closed run joins the pending candidate, or becomes one once the pending one is final."""
        p = self.pending
        if p is None:
            self.pending = run
            return []
        if (
            run.label == p.label
            and self._within_gap(p, run.start, run.start_at)
            and all(self._short(b) for b in self.between)
        ):
            p.stop, p.stop_at = run.stop, run.stop_at
            p.score_sum, p.windows = p.score_sum + run.score_sum, p.windows + run.windows
            self.between = []
            return []
        self.between.append(run)
        return self._settle(None)

    def _settle(self, w: WindowSpan | None) -> list[Event]:
        """Emit the pending candidate (and those after it) once no later run can join it."""
        out: list[Event] = []
        while self.pending is not None and self._final(self.pending, w):
            out += self._finish()
        return out

    def _final(self, p: _Piece, w: WindowSpan | None) -> bool:
        """Whether no later run can join ``p``; ``w`` is the window just added (None: not known)."""
        if not all(self._short(b) for b in self.between):
            return True  # an event of another label came in between
        run = self.run
        if run is not None:
            if run.label == p.label:
                return not self._within_gap(p, run.start, run.start_at)
            if w is not None:  # the run so far: to the centre of its latest window
                mid = max(run.start + 1, (w.start + w.stop) // 2)
                if not self._short(_Piece(run.label, run.start, mid, run.start_at, self.boundary(mid, True))):
                    return True
        if w is None:
            return False
        # a later run starts in a later window (at its first cluster at the earliest), after the last run
        earliest = max(w.start + 1, self.last_end or 0)
        return not self._within_gap(p, earliest, self.boundary(earliest, True))

    def _finish(self) -> list[Event]:
        """The pending candidate is final: emit it (unless short); the runs after it are re-placed."""
        p, rest = self.pending, self.between
        assert p is not None
        self.pending, self.between = None, []
        out = [] if self._short(p) else [self._event(p)]
        if self.on_final is not None:
            self.on_final(id(p), p.start, p.stop, out[0] if out else None)
        for r in rest:
            out += self._place(r)
        return out

    def _event(self, p: _Piece) -> Event:
        (start_s, start_frame), (end_s, end_frame) = p.start_at, p.stop_at
        self.count += 1
        return Event(
            self.stream,
            p.label,
            round(p.score_sum / max(1, p.windows), 6),
            start_s,
            end_s,
            start_frame,
            end_frame,
            p.windows,
            self.time_basis,
        )
