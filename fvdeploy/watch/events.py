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
centre; the first window of a segment reaches back to its start, the last one to its end).

- Where one label hands over to another (a run ends at the window that starts the next), the
  boundary is where the windows' majority changed: the end of the share of the last window that had
  the old label on top, which is where the new run starts.
- Where a run starts from, or ends into, no action (or a segment's edge), the full-video method
  says which frames carry the label: each window is split into G clusters of similar consecutive
  frames and each cluster is classified on its own, so the run starts at the first cluster of its
  first window that votes for the label (its top label, with at least ``CLUSTER_VOTE``) and ends at
  the last such cluster of its last window with the label on top; the share where none votes.

The merge gap and the minimum duration measure how long a label *held the floor*: from its first
window's share to its last top window's share, not the reported span (so that a single window
whose clusters vote over its whole length does not pass for an action). Runs, and so events, never
overlap. Measured on the recordings of docs/watch.md: shares alone put 63 of 64 boundaries within a
stride at 8-s windows but 44 of 64 on short actions between distractors (32-frame windows); the
first version's clusters alone 46 of 64 and 56 of 64; the two together 64 of 64 and 56 of 64.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..records import Event
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
    """A run of one label, or several merged."""

    label: str
    start: int  # stream positions, ``stop`` exclusive
    stop: int
    start_at: tuple[float | None, int]  # seconds and source frame of ``start`` (``boundary``), read when
    stop_at: tuple[float | None, int]  # the positions were fresh: the watcher keeps recent times only
    # how long the label held the floor: from its first window's share to its last top window's share
    # (what the merge gap and the minimum duration measure; start/stop are where it is reported)
    held_from: tuple[float | None, int] = (None, 0)
    held_to: tuple[float | None, int] = (None, 0)
    held_stop: int = 0
    score_sum: float = 0.0
    windows: int = 0
    tail: int = 0  # the share end of the last window that had the run's label on top
    tail_hit: int | None = None  # ... and the end of that window's last cluster voting for the label
    sure: int = 0  # the run surely reaches this far, whatever comes (claim() relies on it)
    share_start: int = 0  # where its first window's share starts


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
                and self._within_gap(p, run.share_start, run.held_from)
                and all(self._short(b) for b in self.between)
                and pos < run.sure
            ):
                return id(p)
            return WAIT
        if run is not None:
            if pos < run.start:
                return None
            return id(run) if pos < run.sure else WAIT
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
        d = self._seconds(p.held_from, p.held_to)
        return d is not None and d < self.rules.min_duration_s - 1e-9

    def _within_gap(self, p: _Piece, start: int, start_at: tuple[float | None, int]) -> bool:
        """Whether a run whose label starts holding at ``start`` may join ``p``."""
        if start <= p.held_stop:
            return True
        d = self._seconds(p.held_to, start_at)
        return d is not None and d <= self.rules.merge_gap_s + 1e-9

    # -- feeding -------------------------------------------------------------------------------------
    def add(self, w: WindowSpan) -> list[Event]:
        out: list[Event] = []
        prev, start = self.prev, w.start
        label, score = self._top(w)
        starts = score >= self.rules.enter
        handover = False  # a run ends here and another label's starts at once
        if prev is not None:
            prev_end, start = shared_boundary(prev, w)
            run = self.run
            if run is not None:
                if self._top(prev)[0] == run.label:
                    run.tail = prev_end
                    run.tail_hit = prev.last_hit if prev.label == run.label else None
                    run.sure = max(run.sure, min(prev_end, prev_end if run.tail_hit is None else run.tail_hit))
                if self._prob(w, run.label) < self.rules.exit_p:
                    handover = starts
                    out += self._closed(self._end(run, handover))
        if self.run is not None:
            self.run.score_sum += self._prob(w, self.run.label)
            self.run.windows += 1
        elif starts:
            share = start
            if not handover and w.first_hit is not None and w.label == label:
                start = w.first_hit  # from no action: where the window's clusters start voting for it
            if self.last_end is not None:
                start, share = max(start, self.last_end), max(share, self.last_end)
            if start < w.stop:  # else the previous run took all of this window
                at = self.boundary(start, False)
                held = self.boundary(share, False)
                self.run = _Piece(label, start, start + 1, at, at, held, held, share, score, 1)
                self.run.tail = self.run.sure = start
                self.run.share_start = share
        self.prev = w
        out += self._settle(w)
        return out

    def close(self) -> list[Event]:
        """End of the segment: the run under way ends with its last window; every candidate is final."""
        out: list[Event] = []
        if self.run is not None and self.prev is not None:
            if self._top(self.prev)[0] == self.run.label:
                self.run.tail = self.prev.stop
            out += self._closed(max(self.run.tail, self.run.sure))
        while self.pending is not None:
            out += self._finish()
        self._reset()
        return out

    def _end(self, run: _Piece, handover: bool) -> int:
        """Where a run that ends now stops: at a handover to another label, where the windows'
        majority changed (the share); into no action, where the last window with its label on top
        stopped voting for it (its last such cluster), else the share. Never short of ``sure``."""
        if handover or run.tail_hit is None:
            return max(run.tail, run.sure)
        return max(run.tail_hit, run.sure)

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
        run.held_stop = max(run.tail, run.sure)
        run.held_to = self.boundary(run.held_stop, True)
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
            and self._within_gap(p, run.share_start, run.held_from)
            and all(self._short(b) for b in self.between)
        ):
            p.stop, p.stop_at, p.held_stop, p.held_to = run.stop, run.stop_at, run.held_stop, run.held_to
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
                return not self._within_gap(p, run.share_start, run.held_from)
            if w is not None:  # the run so far: to the centre of its latest window
                mid = max(run.start + 1, (w.start + w.stop) // 2)
                so_far = _Piece(run.label, run.start, mid, run.start_at, run.start_at, held_from=run.held_from)
                so_far.held_to = self.boundary(mid, True)
                if not self._short(so_far):
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
