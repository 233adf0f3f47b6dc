"""`fvdeploy watch` and `fvdeploy bench watch` end to end: JSON Lines, files never half-written,
timeline PNGs, exit codes, a clean stop on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import cv2
import pytest
from clips import synthetic_frames, write_clip
from conftest import run_cli, save_tiny_model
from typer.testing import CliRunner

from fvdeploy.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("m") / "tiny model", seed=3)  # a space on purpose


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("c") / "camera one.mp4", synthetic_frames(90, 36, 48, seed=2))


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_watch_writes_one_json_line_per_window_and_a_stream_end(model_dir, clip, tmp_path):
    r = run(
        "watch",
        clip,
        "--model",
        model_dir,
        "--device",
        "cpu",
        "--window-frames",
        30,
        "--stride-frames",
        15,
        "--threshold",
        0.0,
        "--min-duration",
        0,
        "--visualize",
        tmp_path / "vis",
    )
    assert r.exit_code == 0, r.stderr
    recs = records(r.stdout)
    wins = [x for x in recs if x["type"] == "window"]
    assert [(w["start_frame"], w["end_frame"]) for w in wins] == [(0, 30), (15, 45), (30, 60), (45, 75), (60, 90)]
    assert all(w["stream"] == str(clip) and w["time_basis"] == "stream" and len(w["segments"]) == 4 for w in wins)
    assert wins[1]["start_s"] == pytest.approx(0.6) and len(wins[0]["topk"]) == 3
    # threshold (enter) 0 and so exit 0: every window counts; events in order, never overlapping
    events = [x for x in recs if x["type"] == "event"]
    assert events and 0 <= events[0]["start_frame"] and events[-1]["end_frame"] <= 90
    assert all(a["end_frame"] <= b["start_frame"] for a, b in zip(events, events[1:]))
    assert sum(e["windows"] for e in events) == len(wins)
    assert recs[-1]["type"] == "end" and recs[-1]["frames"] == 90 and recs[-1]["error"] is None
    png = tmp_path / "vis" / "camera_one.png"
    img = cv2.imread(str(png))
    assert img is not None and img.shape[1] == 1280 and "timeline:" in r.stderr


def test_output_file_is_renamed_at_the_end_and_never_overwritten(model_dir, clip, tmp_path):
    out = tmp_path / "w.jsonl"
    r = run(
        "watch",
        clip,
        "--model",
        model_dir,
        "--window-frames",
        30,
        "--stride-frames",
        30,
        "--events-only",
        "--threshold",
        0.0,
        "--min-duration",
        0,
        "--output",
        out,
    )
    assert r.exit_code == 0, r.stderr
    recs = records(out.read_text())
    assert {x["type"] for x in recs} == {"event", "end"} and not (tmp_path / "w.jsonl.partial").exists()
    before = out.read_text()
    r = run("watch", clip, "--model", model_dir, "--window-frames", 30, "--stride-frames", 30, "--output", out)
    assert r.exit_code == 2 and "--force" in r.stderr and out.read_text() == before
    r = run(
        "watch", clip, "--model", model_dir, "--window-frames", 30, "--stride-frames", 30, "--output", out, "--force"
    )
    assert r.exit_code == 0 and any(x["type"] == "window" for x in records(out.read_text()))


def test_usage_errors_and_bad_sources(model_dir, clip, tmp_path):
    r = run("watch")
    assert r.exit_code == 2 and "no sources" in r.stderr
    r = run("watch", clip, "--window-frames", 8)
    assert r.exit_code == 2 and "--stride-frames" in r.stderr
    r = run("watch", clip, "--stride", 0)
    assert r.exit_code == 2
    r = run("watch", clip, "--enter", 0.6, "--exit", 0.7)
    assert r.exit_code == 2 and "--exit 0.7 exceeds --enter 0.6" in r.stderr and "Traceback" not in r.stderr
    r = run("watch", clip, "--merge-gap", -1)
    assert r.exit_code == 2
    (tmp_path / "a file").write_text("mine")
    r = run("watch", clip, "--clips", tmp_path / "a file")
    assert r.exit_code == 2 and "is a file" in r.stderr and (tmp_path / "a file").read_text() == "mine"
    # a missing file among good ones: one line for it, the others are watched, exit 1
    r = run("watch", tmp_path / "missing.mp4", clip, "--model", model_dir, "--window-frames", 45, "--stride-frames", 45)
    assert r.exit_code == 1
    assert r.stderr.strip().count("\n") == 0 and "no such file" in r.stderr and "Traceback" not in r.stderr
    assert len([x for x in records(r.stdout) if x["type"] == "window"]) == 2
    (tmp_path / "empty").mkdir()
    r = run("watch", tmp_path / "empty", "--model", model_dir)
    assert r.exit_code == 1 and "no video files" in r.stderr
    r = run("watch", "7", "--model", model_dir)  # no camera 7 here
    assert r.exit_code == 1 and "camera:7" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_wind_the_watch_down_cleanly(model_dir, tmp_path, sig):
    """A paced ("camera-like") file is stopped midway: open windows and events close, the output is
    complete and renamed, exit 128 + the signal (SIGHUP, a closed terminal, as SIGTERM)."""
    long = write_clip(tmp_path / "long.mp4", synthetic_frames(600, 32, 32, seed=8))
    out = tmp_path / "live.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fvdeploy",
            "watch",
            str(long),
            "--model",
            str(model_dir),
            "--realtime",
            "--window-frames",
            "20",
            "--stride-frames",
            "10",
            "--threshold",
            "0",
            "--min-duration",
            "0",  # the stop comes after a few windows: the open event is short, and must still close
            "--output",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    partial = tmp_path / "live.jsonl.partial"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if partial.exists() and sum(1 for line in partial.read_text().splitlines() if '"window"' in line) >= 3:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, stderr
    assert "stopping" in stderr and f"interrupted ({signal.Signals(sig).name})" in stderr and "Traceback" not in stderr
    recs = records(out.read_text())
    end = recs[-1]
    assert end["type"] == "end" and end["error"] is None and 20 <= end["frames"] < 600
    wins = [x for x in recs if x["type"] == "window"]
    # the last frames that reached the model made a last (partial) window (a paced file drops
    # frames when the device falls behind, so the very last ones may not have)
    assert end["frames"] - end["dropped_frames"] <= wins[-1]["end_frame"] <= end["frames"]
    assert recs[-2]["type"] == "event" and recs[-2]["end_frame"] <= end["frames"]  # the open event closed


def test_bench_watch_quick_prints_its_json_last(model_dir):
    r = run_cli("bench", "watch", "--quick", "--device", "cpu", "--model", model_dir, "--streams", "2")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["streams"] == 2 and out["resolution"] == "360p" and out["fps"] == 30.0
    assert out["frames"] == 2 * 120 and 0 <= out["dropped_frames"] <= out["frames"]
    assert isinstance(out["sustained"], bool) and out["window_latency_ms"]["p50"] is not None
    assert out["frame_latency_s"]["p95"] >= out["frame_latency_s"]["p50"] > 0
    assert out["cpu_cores_used"] > 0 and out["gpu_util_percent"] is None


def test_the_live_view_shows_each_stream_state_label_and_last_events():
    from rich.console import Console

    from fvdeploy.cli.watch import LiveView
    from fvdeploy.records import Event, Gap, StreamEnd, WindowResult

    view = LiveView()
    view.add(WindowResult("cam1", 0, 0, 30, 0.0, 1.2, "a", 0.91, [("a", 0.91)], False, [], "clock", 0.05))
    view.add(Event("cam1", "a", 0.9, 0.0, 1.0, 0, 25, 2, "clock"))
    view.add(Gap("cam2", 3.0, 4.5, 90, 2, "dropped"))
    view.add(StreamEnd("cam3", 10, 0, 0, 0, 0, 25.0, 30, 15, "fps", error="boom"))
    console = Console(record=True, width=160)
    console.print(view._table())
    text = console.export_text()
    assert "a 0.91" in text and "a 0.0-1.0s" in text and "reconnected (2 tries)" in text and "failed" in text
