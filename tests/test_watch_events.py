"""Action events: the merging rules on their own, and on a generated recording of Move4 clips of
known classes between distractor stretches, classified by the bundled default model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from clips import mp4_boxes, probe_video, synthetic_frames, write_clip

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


# -- the bundled model on generated recordings of known actions ------------------------------------
# Windows of 8 s every 2 s (the defaults) with G = 50 clusters: about 4 frames a cluster, as the model
# was trained (32-frame clips, G = 8). With G = 8 a cluster of an 8-s window averages 25 frames, the
# digit's path blurs into a streak, and windows lie inside an action (docs/watch.md, "Events").
CLUSTERS = 50
STRIDE = 50  # frames: 2 s at 25 fps


def bundled_model():
    model = default_model_path()
    if model is None:
        pytest.skip("no bundled default model in this install (fvdeploy/assets/default_model)")
    pytest.importorskip("fvdeploy.training.move4", reason="the Move4 generator (fvdeploy.training) is not installed")
    return model


def records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def watch_cli(tmp, sources, *extra):
    """``fvdeploy watch`` in-process with the defaults (G = 50 per 8-s window: the bundled model's
    trained.clip_frames), events only, clips on."""
    from typer.testing import CliRunner

    from fvdeploy.cli import app

    out = tmp / "events.jsonl"
    args = ["watch", *map(str, sources), "--device", "cpu", "--events-only"]
    args += ["--clips", str(tmp / "clips"), "-o", str(out), "-q", *map(str, extra)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    return records(out)


def boundary_errors(events: list[dict], actions) -> list[int] | None:
    """Frames between each event's ends and its action's, when the events are one per action with
    its label, in order; else None."""
    if [e["label"] for e in events] != [a[0] for a in actions]:
        return None
    return [e[k] - a[i] for e, a in zip(events, actions) for k, i in (("start_frame", 1), ("end_frame", 2))]


@pytest.fixture(scope="module")
def short_watch(tmp_path_factory):
    """A short version of the recordings the defaults were chosen on: two Move4 actions of 8 s
    back to back, and 12 s of distractors only, watched together by the bundled model."""
    bundled_model()
    from fvdeploy.training.move4 import render_recording, write_recording

    tmp = tmp_path_factory.mktemp("watch")
    actions = render_recording(("move_up", "move_left"), action_s=8.0, seed=0)
    write_recording(tmp / "actions.mp4", actions)
    write_recording(tmp / "distractors.mp4", render_recording([], gap_s=12.0, seed=1))
    recs = watch_cli(tmp, [tmp / "actions.mp4", tmp / "distractors.mp4"])
    return tmp, actions, recs


def test_the_bundled_model_gives_one_event_per_action_and_none_on_distractors(short_watch):
    tmp, actions, recs = short_watch
    events = [r for r in recs if r["type"] == "event" and r["stream"].endswith("actions.mp4")]
    errors = boundary_errors(events, actions.actions)
    assert errors is not None, (events, actions.actions)
    assert all(abs(e) <= STRIDE for e in errors), (errors, events)
    assert not [r for r in recs if r["type"] == "event" and r["stream"].endswith("distractors.mp4")]
    ends = [r for r in recs if r["type"] == "end"]
    assert len(ends) == 2 and all(r["error"] is None for r in ends)


def test_each_event_has_a_browser_playable_clip(short_watch):
    tmp, _, recs = short_watch
    events = [r for r in recs if r["type"] == "event"]
    clips = tmp / "clips"
    assert sorted(p.name for p in clips.glob("*.mp4")) == sorted(e["clip"] for e in events)
    for e in events:
        info = probe_video(clips / e["clip"])
        assert info["codec"] == "h264" and info["frames"] == e["end_frame"] - e["start_frame"]
        assert info["duration"] == pytest.approx(e["end_s"] - e["start_s"], abs=0.04)  # a frame at 25 fps
        boxes = mp4_boxes(clips / e["clip"])
        assert boxes.index("moov") < boxes.index("mdat"), boxes
        side = json.loads((clips / e["clip"]).with_suffix(".json").read_text())
        assert {k: side[k] for k in ("label", "score", "start_s", "end_s", "start_frame", "end_frame")} == {
            k: e[k] for k in ("label", "score", "start_s", "end_s", "start_frame", "end_frame")
        }
        assert side["source"] == e["stream"] and side["frames"] == info["frames"]


def test_a_clip_plays_in_a_real_browser(short_watch):
    import browser

    why = browser.missing()
    if why:
        pytest.skip(why)
    tmp, _, recs = short_watch
    e = next(r for r in recs if r["type"] == "event")
    # the control: what OpenCV's wheel writes as .mp4 (MPEG-4 Part 2) does not play
    write_clip(tmp / "clips" / "mp4v.mp4", synthetic_frames(25, 48, 64))
    got, control = browser.play(tmp / "clips", e["clip"], "mp4v.mp4")
    (tmp / "clips" / "mp4v.mp4").unlink()
    assert got["error"] is None and got["readyState"] >= 2, got
    assert got["duration"] == pytest.approx(e["end_s"] - e["start_s"], abs=0.05), got
    assert got["t1"] > got["t0"], got  # it played: time went on
    assert control["readyState"] < 2 and control["error"] is not None, control


def short_actions(seed: int = 0):
    """Four Move4 test clips (32 frames each, one per class; a quarter of each is Move4's own
    distractor chunk) between stretches of 40-48 distractor frames: actions that start from and end
    into no action. Truth: each clip's span."""
    import numpy as np

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


def test_short_actions_between_distractors_start_and_end_where_their_clusters_vote():
    """Actions as long as a window (32 frames, windows every 8): the events start and end at the
    clusters that vote for the label, within one stride of each clip."""
    model = bundled_model()
    from fvdeploy.records import Event
    from fvdeploy.runtime import Classifier

    frames, truth = short_actions(0)
    clf = Classifier.load(model, device="cpu")
    rules = dict(enter=0.7, min_duration_s=0.5, merge_gap_s=0.0)
    events = [
        i
        for i in watch(clf, frames, window_frames=32, stride_frames=8, fps=25.0, events_only=True, **rules)
        if isinstance(i, Event)
    ]
    s = 8
    for label, start, end in truth:
        mine = [e for e in events if e.label == label and e.start_frame < end + s and e.end_frame > start - s]
        assert len(mine) == 1, (label, start, end, events)
        assert abs(mine[0].start_frame - start) <= s and abs(mine[0].end_frame - end) <= s, (label, start, end, mine)
        others = [e for e in events if e.label != label and min(e.end_frame, end) - max(e.start_frame, start) > s]
        assert not others, (label, start, end, others)


@pytest.mark.slow
def test_events_on_full_length_recordings(tmp_path):
    """The figures in docs/watch.md: eight recordings of four Move4 actions of 10 s each (seeds
    0-7, classes in a random order), and eight distractor-only recordings of 40 s, at the default
    windows (8 s every 2 s) with G = 50 and the default event rules."""
    bundled_model()
    import numpy as np

    from fvdeploy.records import Event
    from fvdeploy.runtime import Classifier
    from fvdeploy.training.move4 import CLASSES, render_recording, write_recording

    clf = Classifier.load(default_model_path(), device="cpu", num_clusters=CLUSTERS)
    found, errors, false_events = 0, [], 0
    for seed in range(8):
        order = tuple(np.random.default_rng(seed).permutation(CLASSES).tolist()) if seed else CLASSES
        rec = render_recording(order, seed=seed)
        path = write_recording(tmp_path / f"actions{seed}.mp4", rec)  # as a user has it: an MP4 file
        events = [i.to_dict() for i in watch(clf, str(path), events_only=True) if isinstance(i, Event)]
        errs = boundary_errors(events, rec.actions)
        print(f"seed {seed}:", [(e["label"], e["start_s"], e["end_s"]) for e in events])
        if errs is not None:
            found += 1
            errors += errs
        path = write_recording(tmp_path / f"distractors{seed}.mp4", render_recording([], gap_s=40.0, seed=seed + 1))
        false_events += sum(isinstance(i, Event) for i in watch(clf, str(path), events_only=True))
    within = sum(abs(e) <= STRIDE for e in errors)
    print(
        f"\nrecordings with one event per action, labels right: {found}/8; boundaries within one stride: "
        f"{within}/{len(errors)}; largest error {max(map(abs, errors), default=0)} frames; "
        f"events on distractor-only recordings: {false_events}"
    )
    assert found == 8 and within >= 0.95 * len(errors) and false_events == 0


def test_windows_keep_the_frames_per_cluster_the_model_was_trained_with():
    """The bundled model learned 4-frame cluster means (32-frame clips, G = 8): an 8-s window at
    25 fps gets G = 50, a 2-s one 12; --clusters wins; a model without clip_frames keeps its G."""
    from fvdeploy.watch.options import clusters_for

    assert clusters_for(200, 8, 32) == CLUSTERS and clusters_for(50, 8, 32) == 12
    assert clusters_for(200, 8, 32, given=8) == 8 and clusters_for(200, 8, None) == 8
    assert clusters_for(16, 8, 32) == 8 and clusters_for(20, 8, 2) == 20  # at least G, at most the frames
    from fvdeploy.bundle import read_config
    from fvdeploy.runtime import Classifier

    assert read_config(bundled_model()).trained["clip_frames"] == 32
    frames = np.zeros((100, 64, 64, 3), np.uint8)
    items = watch(Classifier.load(device="cpu"), frames, window_frames=100, stride_frames=100, fps=25)
    windows = [x for x in items if x.type == "window"]
    assert len(windows[0].segments) == 25  # 100 frames at 4 a cluster
    # a G chosen when loading (--clusters, or the service's clusters) is kept as it is
    items = watch(Classifier.load(device="cpu", clusters=10), frames, window_frames=100, stride_frames=100, fps=25)
    assert len([x for x in items if x.type == "window"][0].segments) == 10
