"""Action events: the merging rules on their own, and on a generated recording of Move4 clips of
known classes between distractor stretches, classified by the bundled default model."""

from __future__ import annotations

import numpy as np
import pytest

from fvdeploy.assets import default_model_path
from fvdeploy.errors import FvdeployError
from fvdeploy.watch import watch
from fvdeploy.watch.events import WAIT, EventRules, EventTracker, WindowSpan, shared_boundary

LABELS = ("a", "b", "c")
FPS = 10.0


def tracker(enter=0.8, exit=0.5, merge_gap_s=0.0, min_duration_s=0.0, fps=FPS):
    def boundary(pos, end):
        return pos / fps, pos  # frame numbers equal positions; seconds from a 10-fps clock

    return EventTracker("s", EventRules(enter, exit, merge_gap_s, min_duration_s), "fps", boundary, fps, LABELS)


def feed(t, windows):
    out = []
    for w in windows:
        out += t.add(w)
    return out + t.close()


def probs(label, p):
    """A probability vector with ``p`` on ``label`` and the rest spread over the others."""
    rest = (1 - p) / (len(LABELS) - 1)
    return tuple(p if x == label else rest for x in LABELS)


def grid(spec, window=8, stride=2):
    """Windows ``i*stride .. i*stride + window``; ``spec`` is a list of (label, probability)."""
    out = []
    for i, (label, p) in enumerate(spec):
        v = probs(label, p)
        top = max(range(len(v)), key=v.__getitem__)
        out.append(WindowSpan(i * stride, i * stride + window, LABELS[top], v[top], probs=v))
    return out


def spans(events):
    return [(e.label, e.start_frame, e.end_frame) for e in events]


def test_consecutive_agreeing_windows_merge_and_close_on_change():
    events = feed(tracker(), grid([("a", 0.9), ("a", 0.8), ("a", 0.85), ("b", 0.9), ("b", 0.9), ("b", 0.95)]))
    assert [(e.label, e.windows) for e in events] == [("a", 3), ("b", 3)]
    a, b = events
    # shares: window i stands for [2i+3, 2i+5) between neighbours; the first reaches back to 0, the last to its end
    assert (a.start_frame, a.end_frame) == (0, 9) and (b.start_frame, b.end_frame) == (9, 18)
    assert a.score == pytest.approx(0.85) and a.start_s == 0.0 and a.end_s == pytest.approx(0.9)


def test_hysteresis_enter_starts_exit_keeps():
    # 0.7 never starts an event (enter 0.8) ...
    assert feed(tracker(), grid([("a", 0.7)] * 6)) == []
    # ... but keeps one going once started; 0.4 ends it
    windows = grid([("a", 0.9), ("a", 0.7), ("a", 0.6), ("a", 0.4), ("a", 0.7), ("a", 0.9), ("a", 0.6)])
    assert spans(feed(tracker(), windows)) == [("a", 0, 9), ("a", 13, 20)]
    # a run goes on through a window whose top label is another one while its own keeps >= exit
    # (it ends with the last window that had it on top)
    w = [WindowSpan(0, 8, "a", 0.9, probs=(0.9, 0.05, 0.05)), WindowSpan(2, 10, "a", 0.6, probs=(0.6, 0.3, 0.1))]
    w += [WindowSpan(4, 12, "b", 0.55, probs=(0.45, 0.55, 0.0)), WindowSpan(6, 14, "a", 0.9, probs=(0.9, 0.1, 0.0))]
    assert spans(feed(tracker(exit=0.45), w)) == [("a", 0, 14)]
    assert spans(feed(tracker(exit=0.5), w)) == [("a", 0, 7), ("a", 9, 14)]


def test_no_action_when_no_label_holds_the_floor():
    # a model without a "nothing" class guessing on an empty scene: spread, below enter
    windows = grid([("a", 0.6), ("b", 0.55), ("c", 0.7), ("a", 0.75), ("b", 0.5)] * 4)
    assert feed(tracker(), windows) == []


def test_min_duration_drops_flickers():
    windows = grid([("a", 0.9)] * 2 + [("c", 0.2)] * 4 + [("a", 0.9)] * 8)
    assert spans(feed(tracker(), windows)) == [("a", 0, 7), ("a", 15, 34)]
    # 0.7 s (frames 0-7) is shorter than 0.8 s: dropped
    assert spans(feed(tracker(min_duration_s=0.8), windows)) == [("a", 15, 34)]


def test_merge_gap_joins_runs_across_a_short_confusion():
    windows = grid([("a", 0.9)] * 5 + [("b", 0.9)] + [("a", 0.9)] * 5)
    assert spans(feed(tracker(), windows)) == [("a", 0, 13), ("b", 13, 15), ("a", 15, 28)]
    # the 'b' flicker (0.2 s) is shorter than min_duration; the gap it leaves is within merge_gap
    events = feed(tracker(merge_gap_s=0.3, min_duration_s=0.5), windows)
    assert spans(events) == [("a", 0, 28)] and events[0].windows == 10
    # a gap longer than merge_gap keeps them apart
    assert spans(feed(tracker(merge_gap_s=0.1, min_duration_s=0.5), windows)) == [("a", 0, 13), ("a", 15, 28)]


def test_merge_never_swallows_an_event_of_another_label():
    windows = grid([("a", 0.9)] * 5 + [("b", 0.9)] * 3 + [("a", 0.9)] * 5)
    # 'b' lasts 0.6 s >= min_duration 0.5: it is an event, and the 'a's stay apart though within the gap
    events = feed(tracker(merge_gap_s=1.0, min_duration_s=0.5), windows)
    assert spans(events) == [("a", 0, 13), ("b", 13, 19), ("a", 19, 32)]
    assert all(x.end_frame <= y.start_frame for x, y in zip(events, events[1:]))


def test_events_are_emitted_as_soon_as_nothing_can_join_them():
    t = tracker(merge_gap_s=0.5, min_duration_s=0.0)
    windows = grid([("a", 0.9)] * 3 + [("c", 0.2)] * 8)
    emitted_at = []
    for i, w in enumerate(windows):
        if t.add(w):
            emitted_at.append(i)
    # 'a' ends at frame 9 (0.9 s, its last window's share); a later run starts in a later window, and
    # window 7 (frames 14-22) is the first after which none can start within the merge gap (1.4 s)
    assert emitted_at == [7] and t.close() == []


def test_an_event_never_starts_before_the_previous_one_ended():
    windows = grid([("a", 0.9), ("a", 0.9), ("b", 0.9), ("b", 0.9)])
    a, b = feed(tracker(), windows)
    assert a.end_frame == b.start_frame == 7


def test_shares_of_windows_that_do_not_overlap_are_the_windows():
    assert shared_boundary(WindowSpan(0, 4, "a", 1), WindowSpan(10, 14, "a", 1)) == (4, 10)
    assert shared_boundary(WindowSpan(0, 8, "a", 1), WindowSpan(2, 10, "a", 1)) == (5, 5)
    # a short last (partial) window: the midpoint of the centres
    assert shared_boundary(WindowSpan(0, 8, "a", 1), WindowSpan(2, 5, "a", 1)) == (3, 3)


def test_windows_without_probabilities_use_their_top_label():
    w = [WindowSpan(i * 2, i * 2 + 8, lab, sc) for i, (lab, sc) in enumerate([("a", 0.9), ("a", 0.6), ("b", 0.9)])]
    assert spans(feed(tracker(), w)) == [("a", 0, 7), ("b", 7, 12)]


def test_claim_says_which_candidate_a_frame_belongs_to():
    t = tracker(merge_gap_s=0.3, min_duration_s=0.5)
    finals = []
    t.on_final = lambda key, start, stop, event: finals.append((key, start, stop, event is not None))
    windows = grid([("c", 0.3)] * 2 + [("a", 0.9)] * 4 + [("b", 0.9)] + [("a", 0.9)] * 3 + [("c", 0.2)] * 5)
    for w in windows[:2]:
        t.add(w)
    # no run yet: the next window (from frame 4) or a later one may start one
    assert t.claim(2) is None and t.claim(3) == WAIT
    for w in windows[2:6]:
        t.add(w)
    key = t.claim(7)
    assert key not in (None, WAIT) and t.claim(6) is None  # the run started at frame 7 (window 2's share)
    assert t.claim(12) == key and t.claim(13) == WAIT  # sure up to the share of its last top window so far
    t.add(windows[6])  # 'b': 'a' closed at frame 15, and may still be joined
    assert t.claim(14) == key and t.claim(15) == WAIT
    t.add(windows[7])  # 'a' again, within the gap: it will join, so the frames up to it are the candidate's
    assert t.claim(16) == key and t.claim(17) == WAIT
    for w in windows[8:]:
        t.add(w)
    t.close()
    assert finals == [(key, 7, 23, True)]
    assert validate_error(enter=0.5, exit=0.6) and validate_error(enter=1.5) and validate_error(merge_gap_s=-1)


def validate_error(**kw) -> bool:
    with pytest.raises(FvdeployError):
        EventRules(**kw).validate()
    return True


# -- the bundled model on a generated recording ---------------------------------------------------
W, S = 32, 8  # frames: the clip length the model was trained on, a quarter of it


def recording(seed: int = 0):
    """Four Move4 test clips (32 frames each, one per class, in a fixed order; a quarter of each is
    Move4's own distractor chunk, the low end of its 25-50 %) joined with stretches of distractor
    frames (black, moving background, non-target digits) between them. Truth: each clip's span,
    the unit Move4 labels."""
    from fvdeploy.training.move4 import CLASSES, Move4Spec, render_video

    def distractors(n, key):
        out, i = [], 0
        while sum(len(x) for x in out) < n:
            v = render_video(Move4Spec(frames=96, size=64, chunk=(0.5, 0.5)), key, "test", 1000 + i)
            out.append(v.frames[[t for t, k in enumerate(v.kinds) if k != "m"]])
            i += 1
        return np.concatenate(out)[:n]

    parts, truth, pos = [], [], 0
    gaps = (40, 48, 40, 48, 40)
    for j, c in enumerate((0, 2, 3, 1)):
        parts.append(distractors(gaps[j], seed * 100 + j))
        pos += gaps[j]
        parts.append(render_video(Move4Spec(size=64, chunk=(0.25, 0.25)), seed, "test", c, label=c).frames)
        truth.append((CLASSES[c], pos, pos + 32))
        pos += 32
    parts.append(distractors(gaps[-1], seed * 100 + 9))
    return np.concatenate(parts), truth


def test_events_on_a_recording_of_known_actions_are_placed_within_one_stride():
    model = default_model_path()
    if model is None:
        pytest.skip("no bundled default model in this install (fvdeploy/assets/default_model)")
    pytest.importorskip("fvdeploy.training.move4", reason="the Move4 generator (fvdeploy.training) is not installed")
    from fvdeploy.runtime import Classifier
    from fvdeploy.watch.results import Event

    frames, truth = recording(0)
    clf = Classifier.load(model, device="cpu")
    events = [
        i
        for i in watch(
            clf, frames, window_frames=W, stride_frames=S, fps=25.0, threshold=0.7, min_duration_s=0.5, events_only=True
        )
        if isinstance(i, Event)
    ]
    for label, start, end in truth:
        mine = [e for e in events if e.label == label and e.start_frame < end + S and e.end_frame > start - S]
        assert len(mine) == 1, (label, start, end, events)
        e = mine[0]
        assert abs(e.start_frame - start) <= S and abs(e.end_frame - end) <= S, (label, start, end, e)
        assert e.start_s == pytest.approx(e.start_frame / 25.0) and e.score >= 0.7
        # no event of another label takes more than a stride of the action
        others = [e for e in events if e.label != label and min(e.end_frame, end) - max(e.start_frame, start) > S]
        assert not others, (label, start, end, others)


@pytest.mark.slow
def test_event_placement_over_many_recordings():
    """The figure in docs/watch.md: eight recordings (seeds 0-7), four actions each; how many actions
    come out as one event of the right label, and how many boundaries lie within one stride."""
    model = default_model_path()
    if model is None:
        pytest.skip("no bundled default model in this install (fvdeploy/assets/default_model)")
    from fvdeploy.runtime import Classifier
    from fvdeploy.watch.results import Event

    clf = Classifier.load(model, device="cpu")
    found = within = extra = 0
    errors = []
    for seed in range(8):
        frames, truth = recording(seed)
        events = [
            i
            for i in watch(
                clf,
                frames,
                window_frames=W,
                stride_frames=S,
                fps=25.0,
                threshold=0.7,
                min_duration_s=0.5,
                events_only=True,
            )
            if isinstance(i, Event)
        ]
        matched = set()
        for label, start, end in truth:
            mine = [e for e in events if e.label == label and e.start_frame < end + S and e.end_frame > start - S]
            if len(mine) != 1:
                continue
            found += 1
            matched.add(id(mine[0]))
            for err in (mine[0].start_frame - start, mine[0].end_frame - end):
                errors.append(err)
                within += abs(err) <= S
        extra += sum(1 for e in events if id(e) not in matched)
    print(
        f"\nactions found as one event: {found}/32; boundaries within one stride ({S} frames): {within}/{len(errors)}; "
        f"largest error {max(map(abs, errors))} frames; other events (on distractor stretches): {extra}"
    )
    assert found >= 30 and within >= 0.8 * len(errors)
