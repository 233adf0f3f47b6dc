"""Action events: the merging rules on their own, and on a generated recording of Move4 clips of
known classes between distractor stretches, classified by the bundled default model."""

from __future__ import annotations

import numpy as np
import pytest

from fvdeploy.assets import default_model_path
from fvdeploy.watch import watch
from fvdeploy.watch.events import EventTracker, WindowSpan, shared_boundary


def tracker(threshold=0.5, min_duration_s=0.0, fps=10.0):
    def boundary(pos, end):
        return pos / fps, pos  # frame numbers equal positions; seconds from a 10-fps clock

    return EventTracker("s", threshold, min_duration_s, "fps", boundary, fps)


def feed(t, windows):
    out = []
    for w in windows:
        out += t.add(w)
    return out + t.close()


def grid(labels, scores, window=8, stride=2, hits=None):
    return [
        WindowSpan(i * stride, i * stride + window, lab, sc, *(hits[i] if hits else (None, None)))
        for i, (lab, sc) in enumerate(zip(labels, scores))
    ]


def test_consecutive_agreeing_windows_merge_and_close_on_change():
    events = feed(tracker(), grid("aaabbb", [0.9, 0.8, 0.7, 0.9, 0.9, 0.6]))
    assert [(e.label, e.windows) for e in events] == [("a", 3), ("b", 3)]
    a, b = events
    # shares: window i stands for [2i+3, 2i+5) between neighbours; the first reaches back to 0, the last to its end
    assert (a.start_frame, a.end_frame) == (0, 9) and (b.start_frame, b.end_frame) == (9, 18)
    assert a.score == pytest.approx(0.8) and a.start_s == 0.0 and a.end_s == pytest.approx(0.9)


def test_below_threshold_windows_break_events_and_min_duration_drops_flickers():
    windows = grid("aaaaaa", [0.9, 0.9, 0.3, 0.9, 0.9, 0.9])
    assert [(e.start_frame, e.end_frame) for e in feed(tracker(), windows)] == [(0, 7), (9, 18)]
    windows = grid("abaaaa", [0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    events = feed(tracker(min_duration_s=0.3), windows)  # the one-window 'a' (0.5 s) survives, 'b' (0.2 s) does not
    assert [(e.label, e.start_frame, e.end_frame) for e in events] == [("a", 0, 5), ("a", 7, 18)]
    assert [e.label for e in feed(tracker(min_duration_s=0.6), windows)] == ["a"]


def test_clusters_carrying_the_label_place_the_boundaries():
    hits = [(None, None), (4, 9), (5, 12), (7, 13), (None, None)]
    windows = grid("xaaax", [0.2, 0.9, 0.9, 0.9, 0.2], hits=hits)
    (e,) = feed(tracker(), windows)
    assert (e.start_frame, e.end_frame) == (4, 13)


def test_an_event_never_starts_before_the_previous_one_ended():
    hits = [(0, 8), (2, 10), (3, 9), (4, 12)]
    windows = grid("aabb", [0.9, 0.9, 0.9, 0.9], hits=hits)
    a, b = feed(tracker(), windows)
    assert a.end_frame == 10 and b.start_frame == 10 and b.end_frame == 12


def test_shares_of_windows_that_do_not_overlap_are_the_windows():
    assert shared_boundary(WindowSpan(0, 4, "a", 1), WindowSpan(10, 14, "a", 1)) == (4, 10)
    assert shared_boundary(WindowSpan(0, 8, "a", 1), WindowSpan(2, 10, "a", 1)) == (5, 5)
    # a short last (partial) window: the midpoint of the centres
    assert shared_boundary(WindowSpan(0, 8, "a", 1), WindowSpan(2, 5, "a", 1)) == (3, 3)


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
    from fvdeploy.records import Event
    from fvdeploy.runtime import Classifier

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
    from fvdeploy.records import Event
    from fvdeploy.runtime import Classifier

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
