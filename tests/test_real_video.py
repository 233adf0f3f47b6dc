"""The footage people really have (tests/assets/real_video, copied from ../shared/cases/real-video
plus our own cases of each kind): true timestamps on VFR video, trimmed and damaged files, camcorder
and broadcast containers, videos shorter than G, finite files behind a URL, and the API's boundary."""

from __future__ import annotations

import functools
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from clips import synthetic_frames
from conftest import save_tiny_model
from typer.testing import CliRunner

from fvdeploy.cli import app
from fvdeploy.errors import FvdeployError, VideoError
from fvdeploy.io.sources import FrameBatch, open_source
from fvdeploy.runtime import Classifier
from fvdeploy.watch import StreamEnd, WindowResult, watch

ASSETS = Path(__file__).parent / "assets" / "real_video"
# vfr.mp4 (and its .mkv remux): frame n at n/30 s for n < 30, then 1 + (n - 30)/5 s (ffprobe's pts_time)
VFR_PTS = [n / 30 if n < 30 else 1 + (n - 30) / 5 for n in range(60)]


@pytest.fixture(scope="module")
def clf(tmp_path_factory):
    return Classifier.load(save_tiny_model(tmp_path_factory.mktemp("model") / "tiny", seed=3), device="cpu")


def pts_of(path) -> list[float]:
    src = open_source(str(path))
    return [float(t) for b in src.batches(16) if isinstance(b, FrameBatch) for t in b.pts]


# -- time -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["vfr.mp4", "vfr.mkv"])
def test_vfr_seconds_are_presentation_timestamps(clf, name):
    assert pts_of(ASSETS / name) == pytest.approx(VFR_PTS, abs=1e-3)
    r = clf.classify(ASSETS / name)
    assert r.num_frames == 60 and not r.partial and r.warnings == []
    for s, nxt in zip(r.segments, r.segments[1:] + [None]):
        assert s.start_s == pytest.approx(VFR_PTS[s.start_frame], abs=1e-3)
        assert s.end_s == pytest.approx(nxt.start_s if nxt else VFR_PTS[-1] + 0.2, abs=1e-3)
    assert r.duration_s == pytest.approx(7.0, abs=1e-3)  # last pts 6.8 + that frame's 0.2 s
    assert r.fps == pytest.approx(120 / 13, rel=1e-3)  # the declared (average) rate, not used for seconds


def test_classify_and_watch_give_the_same_seconds_for_the_same_frame(clf):
    path = ASSETS / "vfr.mp4"
    r = clf.classify(path)
    wins = [w for w in watch(clf, str(path), window_frames=10, stride_frames=10) if isinstance(w, WindowResult)]
    assert [w.start_frame for w in wins] == list(range(0, 60, 10))
    seconds = {s.start_frame: s.start_s for s in r.segments} | {s.end_frame: s.end_s for s in r.segments}
    for w in wins:
        assert w.start_s == pytest.approx(VFR_PTS[w.start_frame], abs=1e-3)
        assert w.end_s == pytest.approx(VFR_PTS[w.end_frame] if w.end_frame < 60 else 7.0, abs=1e-3)
        for frame, s in ((w.start_frame, w.start_s), (w.end_frame, w.end_s)):
            if frame in seconds:
                assert s == pytest.approx(seconds[frame], abs=1e-6)


def test_watch_windows_in_seconds_are_stream_seconds(clf):
    # 1-second windows over vfr.mp4: 30 frames in the first second, 5 in each later one (not 9.23 each)
    wins = [w for w in watch(clf, str(ASSETS / "vfr.mp4"), window_s=1.0, stride_s=1.0) if isinstance(w, WindowResult)]
    assert [(w.start_frame, w.end_frame) for w in wins] == [(0, 30)] + [(30 + 5 * k, 35 + 5 * k) for k in range(6)]
    assert [w.start_s for w in wins] == pytest.approx([float(k) for k in range(7)], abs=1e-3)
    assert [w.end_s for w in wins] == pytest.approx([float(k + 1) for k in range(7)], abs=1e-3)
    assert not any(w.partial for w in wins)  # the last window's seconds are all there: whole, not partial
    # gaps between windows (stride > window), in seconds: [0, 0.5), [2, 2.5), [4, 4.5), [6, 6.5)
    spaced = [w for w in watch(clf, str(ASSETS / "vfr.mp4"), window_s=0.5, stride_s=2.0) if isinstance(w, WindowResult)]
    assert [(w.start_frame, w.end_frame) for w in spaced] == [(0, 15), (35, 38), (45, 48), (55, 58)]


def test_the_same_grey_array_and_iterator_through_classify_and_watch(clf):
    grey = synthetic_frames(24, 32, 40)[..., 0]  # [T, H, W]
    a = clf.classify(grey, fps=12.0)
    b = clf.classify(iter(list(grey)), fps=12.0)
    assert a.to_dict()["segments"] == b.to_dict()["segments"] and a.label == b.label
    assert [s.start_s for s in a.segments] == pytest.approx([s.start_frame / 12.0 for s in a.segments], abs=1e-6)
    for source in (grey, iter(list(grey))):
        wins = [
            w for w in watch(clf, source, window_frames=24, stride_frames=24, fps=12.0) if isinstance(w, WindowResult)
        ]
        assert len(wins) == 1 and wins[0].label == a.label and wins[0].start_s == 0.0 and wins[0].end_s == 2.0
    untimed = clf.classify(grey)  # no fps: no seconds, never NaN
    assert untimed.duration_s is None and all(s.start_s is None and s.end_s is None for s in untimed.segments)
    json.loads(untimed.to_json())


# -- ends and damage ----------------------------------------------------------------------------------
def test_a_trimmed_file_is_not_damaged(clf):
    r = clf.classify(ASSETS / "trimmed.mp4")  # an edit list hides packets: the header counts 150, 105 play
    assert r.num_frames == 105 and r.partial is False and r.warnings == []


def test_a_wrong_header_count_is_not_damage(clf):
    r = clf.classify(ASSETS / "wrong_count.avi")  # the AVI header announces 100 frames, 50 are there
    assert r.num_frames == 50 and r.partial is False and r.warnings == []


@pytest.mark.parametrize("keep", [0.3, 0.5, 0.8])
def test_an_mp4_cut_short_is_partial_and_says_so(clf, tmp_path, keep):
    """A faststart MP4 whose data stops part-way (an interrupted copy or upload): its index still
    announces 150 frames. Partial, one warning saying the file is cut short, never "decoding
    resumed" (a newcomer's half file said "1 frame(s) lost, decoding resumed" for 82 missing)."""
    data = (ASSETS / "faststart.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * keep)])
    r = clf.classify(cut)
    assert 0 < r.num_frames < 150 and r.partial is True, (r.num_frames, r.warnings)
    assert len(r.warnings) == 1 and "the file is cut short" in r.warnings[0], r.warnings
    assert f"after {r.num_frames} frames; 150 announced" in r.warnings[0] and "resumed" not in r.warnings[0]
    whole = clf.classify(ASSETS / "faststart.mp4")
    assert whole.num_frames == 150 and whole.partial is False and whole.warnings == []


@pytest.mark.parametrize("name,at_least,at", [("corrupt_middle.mp4", 110, 50), ("damaged.ts", 85, 49)])
def test_decoding_goes_on_past_damage_and_says_where(clf, name, at_least, at):
    r = clf.classify(ASSETS / name)
    assert r.num_frames >= at_least and r.partial is True
    assert (
        len(r.warnings) == 1 and f"decode error at frame {at} (" in r.warnings[0] and "frame(s) lost" in r.warnings[0]
    )


def test_frames_returned_late_after_damage_keep_the_others_times(clf):
    # 3000 bytes overwritten mid-file: the decoder returns two stale frames out of order (ffprobe:
    # ... 2.2333, 3.2333, 2.2667, 3.2667, 3.3, 2.3333, 3.3333 ...) and 27 of 150 frames are lost
    src = open_source(str(ASSETS / "reordered_after_damage.mp4"))
    src.record = True
    for _ in src.batches(32):
        pass
    assert src.frames_read == 123 and src.lost_frames == 27
    assert src.seconds(70) == pytest.approx(3.2667, abs=1e-3) and src.seconds(123) == pytest.approx(5.0, abs=1e-3)
    assert all(b > a for a, b in zip(src._pts, src._pts[1:]))  # still increasing


def test_damage_is_one_stderr_line_and_no_ffmpeg_noise(tmp_path, clf):
    # a subprocess: FFmpeg writes to the process's own stderr, which CliRunner cannot capture
    import subprocess
    import sys

    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "fvdeploy",
            "classify",
            str(ASSETS / "corrupt_middle.mp4"),
            "--json",
            "--model",
            clf.model_path,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "NAL unit" not in r.stderr and "[h264" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "decode error at frame 50" in lines[0]
    assert json.loads(r.stdout)["partial"] is True
    strict = subprocess.run(
        [
            sys.executable,
            "-m",
            "fvdeploy",
            "classify",
            str(ASSETS / "corrupt_middle.mp4"),
            "-q",
            "--strict",
            "--model",
            clf.model_path,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert strict.returncode == 1


# -- inputs ---------------------------------------------------------------------------------------------
def test_a_camcorder_folder_is_classified_and_skipped_files_are_named(clf, tmp_path):
    folder = tmp_path / "card"
    folder.mkdir()
    for f in (ASSETS / "camcorder").iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    for f in (ASSETS / "ext").iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    r = CliRunner().invoke(app, ["classify", str(folder), "--json", "--model", clf.model_path])
    assert r.exit_code == 0, r.output
    recs = {Path(x["path"]).name: x for x in map(json.loads, r.stdout.splitlines())}
    assert {k: v["num_frames"] for k, v in recs.items()} == {
        "PHONE.MOV": 150,
        "broadcast.mxf": 50,
        "cam_0001.MTS": 150,
        "clip.y4m": 12,
        "clip.h264": 12,
        "CLIP.M2TS": 12,
        "clip.vob": 12,
    }
    assert "skipped 1 file(s) without a video extension: notes.txt" in r.stderr


def test_a_video_shorter_than_g_reports_each_real_frame_once(clf):
    r = clf.classify(ASSETS / "one_frame.mp4")
    assert r.num_frames == 1 and [(s.start_frame, s.end_frame) for s in r.segments] == [(0, 1)]
    assert r.segments[0].start_s == 0.0 and r.segments[0].end_s == pytest.approx(1 / 30, abs=1e-3)
    three = clf.classify(synthetic_frames(3, 32, 32), fps=10.0)  # G = 4 on the tiny model
    assert [(s.start_frame, s.end_frame) for s in three.segments] == [(0, 1), (1, 2), (2, 3)]


@pytest.mark.parametrize(
    "bad,message",
    [
        (np.zeros((64, 64, 3), np.uint8), "ambiguous .* a video is \\[T, H, W, 3\\]"),
        (np.zeros((4, 0, 8, 3), np.uint8), "zero-sized frames"),
        (np.zeros((0, 8, 8, 3), np.uint8), "zero frames"),
        (np.zeros((4, 8, 8, 4), np.uint8), "a video is \\[T, H, W, 3\\]"),
        (np.zeros((4, 8, 8, 3), np.float32), "uint8"),
    ],
)
def test_bad_arrays_are_one_line_video_errors(clf, bad, message):
    with pytest.raises(VideoError, match=message) as e:
        clf.classify(bad)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("fps", [float("nan"), -5, 0, float("inf"), True, "30"])
def test_fps_must_be_finite_and_positive(clf, fps):
    with pytest.raises(VideoError, match="fps must be a finite number > 0"):
        clf.classify(synthetic_frames(8, 32, 32), fps=fps)


def test_iterator_frames_are_checked_and_sizes_may_not_change(clf):
    frames = list(synthetic_frames(6, 32, 32)) + [synthetic_frames(1, 40, 32)[0]]
    with pytest.raises(VideoError, match="frame 6 has size 32x40"):
        clf.classify(iter(frames))
    with pytest.raises(VideoError, match="one frame is \\[H, W, 3\\]"):
        clf.classify(iter([np.zeros((2, 8, 8, 3), np.uint8)]))


def test_classify_many_takes_one_path_as_one_input(clf):
    for one in (str(ASSETS / "vfr.mp4"), ASSETS / "vfr.mp4"):
        results = list(clf.classify_many(one))
        assert len(results) == 1 and results[0].num_frames == 60
    bad = list(clf.classify_many([ASSETS / "missing.mp4", np.zeros((64, 64, 3), np.uint8)]))
    assert all(r.error and r.label is None for r in bad)
    assert all(isinstance(json.loads(r.to_json())["warnings"], list) for r in bad)


def test_results_are_strict_json():
    from fvdeploy.records import Segment, VideoResult

    r = VideoResult(
        "x",
        "a",
        float("nan"),
        [("a", float("inf"))],
        3,
        float("nan"),
        None,
        [Segment(0, 3, 0.0, float("nan"), "a", 1.0)],
    )
    d = json.loads(r.to_json())
    assert d["score"] is None and d["topk"] == [["a", None]] and d["fps"] is None and d["segments"][0]["end_s"] is None


# -- finite files behind a URL -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def http_server():
    """``python -m http.server`` on 127.0.0.1 over the assets: no byte ranges, a file per URL."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(ASSETS))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.mark.parametrize("name,frames", [("faststart.mp4", 150), ("stream.ts", 60)])
def test_a_url_to_a_finite_file_is_read_like_a_file(clf, http_server, name, frames):
    items = list(watch(clf, f"{http_server}/{name}", window_s=1.0, stride_s=1.0))
    (end,) = [i for i in items if isinstance(i, StreamEnd)]
    assert end.error is None and end.frames == frames and end.dropped_frames == 0 and end.reconnects == 0
    assert not [i for i in items if i.type == "gap"]
    wins = [i for i in items if isinstance(i, WindowResult)]
    assert wins[-1].end_frame == frames and all(w.end_s >= w.start_s for w in wins)
    r = clf.classify(f"{http_server}/{name}")
    assert r.num_frames == frames and r.path.endswith(name) and not r.partial


def test_an_interrupted_runs_partial_output_is_never_dropped(clf, tmp_path):
    out = tmp_path / "res.jsonl"
    rec = clf.classify(ASSETS / "one_frame.mp4").to_dict()
    out.with_name("res.jsonl.partial").write_text(json.dumps(rec) + "\n")
    r = CliRunner().invoke(app, ["classify", str(ASSETS / "vfr.mp4"), "-o", str(out), "-q", "--model", clf.model_path])
    assert r.exit_code == 2 and "holds an interrupted run's results" in r.stderr
    r = CliRunner().invoke(
        app, ["classify", str(ASSETS / "vfr.mp4"), "-o", str(out), "-q", "--resume", "--model", clf.model_path]
    )
    assert r.exit_code == 0 and len(out.read_text().splitlines()) == 2


def test_the_bundled_models_export_hint_is_one_that_works():
    from fvdeploy.errors import BackendError

    with pytest.raises(BackendError, match="--model ./fvdeploy-default-model"):
        Classifier.load(device="cpu", backend="onnxruntime")


def test_a_missing_url_says_what_the_server_answered(clf, http_server):
    with pytest.raises(FvdeployError, match="HTTP 404"):
        clf.classify(f"{http_server}/nothing.mp4")
