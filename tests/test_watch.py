"""Windowed classification: each window equals classifying its frames as a clip, each frame's stem
runs once, many streams batched equal each stream alone, memory stays bounded."""

from __future__ import annotations

import gc
import resource
import threading

import numpy as np
import pytest
import torch
from clips import synthetic_frames, write_clip
from conftest import save_tiny_model, tiny_config

from fvdeploy.bundle import load_model, save_model
from fvdeploy.errors import FvdeployError, VideoError
from fvdeploy.io import preprocess, read_video
from fvdeploy.models import create_model
from fvdeploy.ops import cluster_segments
from fvdeploy.records import StreamEnd, WindowResult
from fvdeploy.runtime import Classifier
from fvdeploy.watch import Watcher, WatchOptions, watch, watch_many

RTOL, ATOL = 1e-3, 1e-4  # docs/design.md#equality, fp32


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny", seed=1)


@pytest.fixture(scope="module")
def clf(model_dir):
    return Classifier.load(model_dir, device="cpu", topk=3)


@pytest.fixture(scope="module")
def frames():
    return synthetic_frames(103, 36, 44, seed=3)


def clip_reference(model, frames_bgr):
    """The window's frames as a clip: one forward of the whole model."""
    x = preprocess(torch.from_numpy(np.ascontiguousarray(frames_bgr)), model.config.input, "bgr")
    with torch.no_grad():
        out = model(x[None])
    n = len(frames_bgr)
    # clusters of padding alone (a window shorter than G) are not reported, as in classify
    spans = [(s, min(e, n)) for s, e in cluster_segments(out.cluster_ids)[0] if s < n]
    return out.logits[0].float(), spans


def assert_window_is_clip(w: WindowResult, model, frames_bgr, labels):
    logits, spans = clip_reference(model, frames_bgr[w.start_frame : w.end_frame])
    assert w.label == labels[int(logits.argmax())]
    torch.testing.assert_close(w.logits, logits, rtol=RTOL, atol=ATOL)
    got = [(c.start_frame - w.start_frame, c.end_frame - w.start_frame) for c in w.segments]
    assert len(got) == len(spans)
    assert all(abs(a - b) <= 1 for g, r in zip(got, spans) for a, b in zip(g, r)), (got, spans)


def windows_of(items):
    return [i for i in items if isinstance(i, WindowResult)]


# (frames, window, stride, frames per device step): overlapping windows with a long partial last
# window; stride == window with a last window shorter than G (padded like a clip); stride > window
# (frames between windows never reach the model) with a partial last window; windows shorter than
# 4 x halo (rerun whole from stem maps); one-frame device steps.
GRID = [(64, 20, 6, 32), (64, 20, 6, 3), (50, 12, 12, 5), (58, 10, 25, 7), (22, 3, 2, 4), (45, 30, 7, 1)]


@pytest.mark.parametrize("num_frames,window,stride,step", GRID)
def test_each_window_equals_classifying_its_frames_as_a_clip(model_dir, clf, frames, num_frames, window, stride, step):
    model = load_model(model_dir)
    frames = frames[:num_frames]
    items = list(watch(clf, frames, window_frames=window, stride_frames=stride, fps=25.0, step_frames=step))
    wins = windows_of(items)
    starts = list(range(0, len(frames), stride))
    full = [a for a in starts if a + window <= len(frames)]
    assert [w.start_frame for w in wins if not w.partial] == full
    for w in wins:
        assert_window_is_clip(w, model, frames, clf.config.labels)
        assert w.start_s == pytest.approx(w.start_frame / 25.0) and w.end_s == pytest.approx(w.end_frame / 25.0)
    # the last partial window: the next stride position to the end, only with frames no full window had
    last_full_end = full[-1] + window
    partial = [w for w in wins if w.partial]
    if last_full_end < len(frames) and any(a > full[-1] and a < len(frames) for a in starts):
        nxt = min(a for a in starts if a > full[-1])
        assert [(w.start_frame, w.end_frame) for w in partial] == [(nxt, len(frames))]
    else:
        assert partial == []
    end = items[-1]
    assert isinstance(end, StreamEnd) and end.ok and end.frames == len(frames) and end.windows == len(wins)


@pytest.mark.parametrize("method", ["slope", "uniform"])
def test_other_clustering_methods(model_dir, frames, method):
    clf = Classifier.load(model_dir, device="cpu", method=method)
    model = load_model(model_dir)
    model.config = model.config.replace(method=method)
    for w in windows_of(watch(clf, frames[:45], window_frames=24, stride_frames=9, fps=25.0, step_frames=8)):
        assert_window_is_clip(w, model, frames, clf.config.labels)


@pytest.mark.parametrize("num_frames", [1, 3, 7])
def test_a_source_shorter_than_a_window_is_one_partial_window(model_dir, clf, num_frames):
    frames = synthetic_frames(num_frames, 32, 40, seed=num_frames)
    wins = windows_of(watch(clf, frames, window_frames=16, stride_frames=4, fps=25.0))
    assert [(w.start_frame, w.end_frame, w.partial) for w in wins] == [(0, num_frames, True)]
    assert_window_is_clip(wins[0], load_model(model_dir), frames, clf.config.labels)
    assert len(wins[0].segments) == min(num_frames, clf.config.num_clusters)  # each real frame once
    # and it agrees with the public classify() of the same frames
    ref = clf.classify(frames, fps=25.0)
    assert ref.label == wins[0].label and abs(ref.score - wins[0].score) < 1e-4
    assert [(s.start_frame, s.end_frame) for s in ref.segments] == [
        (c.start_frame, c.end_frame) for c in wins[0].segments
    ]


def test_a_file_gives_the_same_windows_as_its_decoded_frames(model_dir, clf, tmp_path):
    decoded_src = synthetic_frames(70, 40, 52, seed=5)
    path = write_clip(tmp_path / "rec.mp4", decoded_src)
    frames = read_video(path)
    from_file = list(watch(clf, str(path), window_frames=24, stride_frames=10))
    from_array = list(watch(clf, frames, window_frames=24, stride_frames=10, fps=25.0))
    model = load_model(model_dir)
    wf, wa = windows_of(from_file), windows_of(from_array)
    assert [(w.start_frame, w.end_frame) for w in wf] == [(w.start_frame, w.end_frame) for w in wa]
    for a, b in zip(wf, wa):
        assert a.label == b.label and a.segments == b.segments
        torch.testing.assert_close(a.logits, b.logits, rtol=RTOL, atol=ATOL)
        assert_window_is_clip(a, model, frames, clf.config.labels)
    assert wf[0].time_basis == "stream" and wa[0].time_basis == "fps"
    assert wf[1].start_s == pytest.approx(10 / 25.0) and wf[1].end_s == pytest.approx(34 / 25.0)
    assert from_file[-1].frames == 70 and from_file[-1].stream == str(path)


def count_stem_frames(clf):
    seen = []
    handle = clf.backend.frames_model.conv1.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[0]))
    return seen, handle


@pytest.mark.parametrize("window,stride", [(20, 5), (16, 16), (8, 20), (40, 3)])
def test_the_stem_runs_once_per_frame_whatever_the_overlap(clf, frames, window, stride):
    frames = frames[:70]
    seen, handle = count_stem_frames(clf)
    try:
        wins = windows_of(watch(clf, frames, window_frames=window, stride_frames=stride, fps=25.0, step_frames=6))
    finally:
        handle.remove()
    covered = set()
    for w in wins:
        covered.update(range(w.start_frame, w.end_frame))
    # overlapping windows: every frame once; stride > window: only frames some window covers, once
    assert sum(seen) == len(covered)
    if stride <= window:
        assert sum(seen) == len(frames)
    # while classifying the same windows one clip at a time runs it for every window's every frame
    assert sum(w.end_frame - w.start_frame for w in wins) > sum(seen) or stride >= window


def test_many_streams_batched_equal_each_stream_alone(model_dir, clf):
    sources = [synthetic_frames(n, 36, 44, seed=s) for n, s in ((64, 1), (41, 2), (90, 3))]
    opts = dict(window_frames=16, stride_frames=5, fps=25.0)
    alone = [windows_of(watch(clf, f, **opts)) for f in sources]
    together = list(watch_many(clf, sources, **opts))
    ends = [i for i in together if isinstance(i, StreamEnd)]
    assert len(ends) == 3 and all(e.ok for e in ends)
    # streams are told apart by name; arrays are all "<array>", so split by order of their StreamEnds
    wins = windows_of(together)
    assert len(wins) == sum(len(a) for a in alone)
    got = sorted(window_key(w) for w in wins)
    want = sorted(window_key(w) for a in alone for w in a)
    assert [g[:4] for g in got] == [x[:4] for x in want]
    assert all(abs(g[4] - x[4]) < 1e-4 for g, x in zip(got, want))


def test_many_named_streams_keep_separate_state(model_dir, clf, tmp_path):
    paths = [write_clip(tmp_path / f"cam{i}.mp4", synthetic_frames(n, 36, 44, seed=i)) for i, n in enumerate((50, 75))]
    items = list(watch_many(clf, [str(p) for p in paths], window_frames=20, stride_frames=10))
    for p in paths:
        mine = [i for i in items if i.stream == str(p)]
        alone = list(watch(clf, str(p), window_frames=20, stride_frames=10))
        assert [(i.type, getattr(i, "start_frame", None), getattr(i, "label", None)) for i in mine] == [
            (i.type, getattr(i, "start_frame", None), getattr(i, "label", None)) for i in alone
        ]
    # a directory is its video files, each its own stream
    by_dir = list(watch(clf, str(tmp_path), window_frames=20, stride_frames=10))
    assert {i.stream for i in by_dir} == {str(p) for p in paths}


def test_iterator_and_rgb_sources(clf, frames):
    a = windows_of(watch(clf, frames[:50], window_frames=20, stride_frames=10, fps=25.0))
    b = windows_of(watch(clf, iter(list(frames[:50])), window_frames=20, stride_frames=10, fps=25.0))
    c = windows_of(
        watch(clf, frames[:50, :, :, ::-1].copy(), window_frames=20, stride_frames=10, fps=25.0, color="rgb")
    )
    for x, y, z in zip(a, b, c):
        assert x.label == y.label == z.label and x.segments == y.segments == z.segments
    assert b[0].time_basis == "fps"
    # docs/design.md#time: an iterator or array without fps has no times (seconds null), in watch as in classify
    untimed = windows_of(watch(clf, iter(list(frames[:30])), window_frames=20, stride_frames=10))
    assert untimed[0].time_basis is None and untimed[0].start_s is None
    plain = windows_of(watch(clf, frames[:30], window_frames=20, stride_frames=10))
    assert plain[0].time_basis is None and plain[0].start_s is None and plain[0].end_s is None


def test_bad_inputs_and_options_are_one_line_errors(model_dir, clf, tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        watch(clf, str(tmp_path / "missing.mp4"))
    with pytest.raises(VideoError, match="no frame rate"):
        watch(clf, synthetic_frames(10, 32, 32), window_s=2, stride_s=1)
    with pytest.raises(FvdeployError, match="both in frames"):
        watch(clf, synthetic_frames(10, 32, 32), window_frames=8)
    with pytest.raises(FvdeployError, match="threshold"):
        watch(clf, synthetic_frames(10, 32, 32), window_frames=8, stride_frames=2, threshold=1.5)
    with pytest.raises(FvdeployError, match="mode tsm"):
        watch(
            Classifier.load(model_dir, device="cpu", mode="tsm"),
            synthetic_frames(10, 32, 32),
            window_frames=8,
            stride_frames=2,
        )
    with pytest.raises(VideoError, match="uint8"):
        watch(clf, np.zeros((4, 8, 8, 3), np.float32), window_frames=8, stride_frames=2)
    # several sources: a bad one becomes an error result, the good one goes on
    items = list(
        watch_many(clf, [str(tmp_path / "missing.mp4"), synthetic_frames(20, 32, 32)], window_frames=8, stride_frames=4)
    )
    ends = [i for i in items if isinstance(i, StreamEnd)]
    assert [e.error is None for e in ends].count(True) == 1 and "no such file" in next(e.error for e in ends if e.error)
    assert len(windows_of(items)) == 4


def test_the_memory_budget_bounds_the_window(model_dir):
    clf = Classifier.load(model_dir, device="cpu", max_memory_mib=16)
    with pytest.raises(FvdeployError, match="memory budget"):
        watch(clf, synthetic_frames(10, 32, 32), window_frames=200_000, stride_frames=10)


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


# 1,200 frames is the long stream (a real size: under slow); 480 frames (45 windows, 25 of them after
# the first RSS reading) is the default run's version of the same bounds.
@pytest.mark.parametrize("total", [480, pytest.param(1200, marks=pytest.mark.slow)])
def test_memory_stays_bounded_over_a_long_stream(clf, total):
    """An endless-style source (an iterator, read once) of ``total`` frames: what the watcher holds
    is fixed by the window, and the process does not grow once it is running."""
    base = synthetic_frames(48, 32, 32, seed=9)

    def endless():
        for i in range(total):
            yield base[i % len(base)]

    watcher = Watcher(clf, WatchOptions(window_frames=40, stride_frames=10, fps=25.0, step_frames=8))
    gen = watcher.run([endless()])
    rss, sizes = {}, []
    for item in gen:
        if isinstance(item, WindowResult):
            s = watcher._streams[0]
            sizes.append((len(s.pending), len(s.history), s.ring.shape[0], s.seconds.shape[0]))
            if item.index == 20:
                gc.collect()
                rss["early"] = _rss_mib()
    gc.collect()
    rss["late"] = _rss_mib()
    assert len(sizes) == (total - 40) // 10 + 1
    assert max(p for p, _, _, _ in sizes) <= 40 // 10 + 1
    assert len({(r, t) for _, _, r, t in sizes}) == 1  # rings never grow
    assert max(h for _, h, _, _ in sizes) <= sizes[0][1] + 40
    assert rss["late"] - rss["early"] < 16, rss


def test_closing_the_generator_stops_the_readers(clf, tmp_path):
    path = write_clip(tmp_path / "r.mp4", synthetic_frames(120, 32, 32))
    gen = watch(clf, str(path), window_frames=10, stride_frames=5)
    first = next(gen)
    assert first.type == "window"
    gen.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("fvdeploy-read")]


def test_a_backend_without_the_stem_split_gives_the_same_windows(tmp_path):
    """ONNX Runtime runs stem + layer1 as one graph: the edge reruns then include the stem (documented
    cost), and the windows are the same as with the eager backend."""
    pytest.importorskip("onnxruntime")
    from typer.testing import CliRunner

    from fvdeploy.cli import app
    from fvdeploy.engine.stages import InputStages, frame_stages

    torch.manual_seed(4)
    model_dir = save_model(create_model(tiny_config()).eval(), tmp_path / "m")
    clip = write_clip(tmp_path / "c.mp4", synthetic_frames(40, 36, 44, seed=2))
    r = CliRunner().invoke(app, ["export", str(model_dir), "--clip", str(clip), "--max-frames", "300"])
    assert r.exit_code == 0, r.output
    frames = synthetic_frames(70, 36, 44, seed=5)
    got = {}
    for backend in ("torch", "onnxruntime"):
        clf = Classifier.load(model_dir, device="cpu", backend=backend)
        got[backend] = windows_of(watch(clf, frames, window_frames=24, stride_frames=10, fps=25.0))
    assert isinstance(frame_stages(clf.backend), InputStages)
    assert len(got["torch"]) == len(got["onnxruntime"]) == 6
    for a, b in zip(got["torch"], got["onnxruntime"]):
        assert a.label == b.label and (a.start_frame, a.end_frame) == (b.start_frame, b.end_frame)
        torch.testing.assert_close(a.logits, b.logits, rtol=RTOL, atol=ATOL)
        assert all(
            abs(x.start_frame - y.start_frame) <= 1 and abs(x.end_frame - y.end_frame) <= 1
            for x, y in zip(a.segments, b.segments)
        )


def test_the_end_record_gives_windows_in_seconds_at_the_declared_rate(clf, frames):
    """A window of 2 s at 25 fps is 50 frames in the end record (the ring behind it holds more)."""
    items = list(watch(clf, frames[:120], window_s=2.0, stride_s=1.0, fps=25.0))
    end = next(i for i in items if isinstance(i, StreamEnd))
    wins = windows_of(items)
    assert (end.window_frames, end.stride_frames) == (50, 25)
    assert max(w.end_frame - w.start_frame for w in wins) == 50


def window_key(w):
    """A window as a sortable tuple: frames, label, its segments, score."""
    segments = tuple((c.start_frame, c.end_frame, c.label, c.score) for c in w.segments)
    return (w.start_frame, w.end_frame, w.label, segments, w.score)
