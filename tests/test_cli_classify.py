"""`fvdeploy classify` end to end on real files, and every bad-input case (one line, exit code)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch
from clips import synthetic_frames, write_clip
from conftest import save_tiny_model
from typer.testing import CliRunner

from fvdeploy.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("m") / "tiny model", seed=2)  # a space in the path on purpose


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    out = {
        "one": write_clip(d / "one frame.mp4", synthetic_frames(1, 32, 32)),
        "three": write_clip(d / "three.mp4", synthetic_frames(3, 32, 32, seed=3)),
        "odd": write_clip(d / "odd.avi", synthetic_frames(45, 37, 59, seed=4), fourcc="MJPG"),
        "gray": write_clip(d / "gray.mp4", synthetic_frames(30, 40, 40, seed=5)[..., 0]),
        "medium": write_clip(d / "medium.mp4", synthetic_frames(300, 24, 32, seed=6)),
        "long": write_clip(d / "long.mp4", synthetic_frames(1200, 24, 32, seed=6)),
    }
    avi = write_clip(d / "full.avi", synthetic_frames(50, 32, 32, seed=7), fourcc="MJPG")
    data = avi.read_bytes()
    (d / "truncated.avi").write_bytes(data[: len(data) // 2])
    mp4 = out["long"].read_bytes()
    (d / "truncated.mp4").write_bytes(mp4[: len(mp4) // 2])
    w = cv2.VideoWriter(str(d / "zero.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (32, 32))
    w.release()
    (d / "text.mp4").write_text("not a video\n")
    (d / "empty_dir").mkdir()
    return d, out


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.parametrize(
    "name,frames",
    [
        ("one", 1),
        ("three", 3),
        ("odd", 45),
        ("gray", 30),
        ("medium", 300),  # at --max-memory 16: 30 chunks of 10 frames (stem + layer1 calls)
        pytest.param("long", 1200, marks=pytest.mark.slow),  # a long clip: the real size, under slow
    ],
)
def test_generated_clips(model_dir, clips, name, frames):
    r = run("classify", clips[1][name], "--model", model_dir, "--json", "--max-memory", "16")
    assert r.exit_code == 0, r.output
    (rec,) = json_lines(r.stdout)
    assert rec["num_frames"] == frames and rec["error"] is None and not rec["partial"]
    assert len(rec["segments"]) == min(4, frames) and rec["segments"][-1]["end_frame"] == frames
    assert rec["label"] in ("a", "b", "c") and 0 < rec["score"] <= 1
    assert [s["start_frame"] for s in rec["segments"]] == sorted(s["start_frame"] for s in rec["segments"])


def test_bigbuckbunny(model_dir, bigbuckbunny, tmp_path):
    r = run("classify", bigbuckbunny, "--model", model_dir, "--json", "--visualize", tmp_path / "viz")
    assert r.exit_code == 0, r.output
    (rec,) = json_lines(r.stdout)
    assert rec["num_frames"] == 132 and rec["fps"] == 25.0 and rec["duration_s"] == 5.28
    assert rec["segments"][0]["start_s"] == 0.0 and rec["segments"][-1]["end_s"] == 5.28
    png = cv2.imread(str(tmp_path / "viz" / "bigbuckbunny.png"))
    assert png is not None and png.shape[1] == 1280


def test_table_output_names_each_video(model_dir, clips):
    r = run("classify", clips[1]["three"], clips[1]["odd"], "--model", model_dir)
    assert r.exit_code == 0, r.output
    assert "three.mp4" in r.stdout and "odd.avi" in r.stdout


BAD = {
    "missing.mp4": "no such file",
    "empty_dir": "directory contains no video files",
    "text.mp4": "not a video OpenCV can open",
    "truncated.mp4": "not a video OpenCV can open",  # moov atom lost with the second half
    "zero.avi": "no frames could be decoded",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_inputs_one_line_exit_1(model_dir, clips, name):
    r = run("classify", clips[0] / name, "--model", model_dir, "--json")
    assert r.exit_code == 1
    (rec,) = json_lines(r.stdout)
    # an error record carries the whole schema (nulls, empty lists): a reader of label or partial never gets a KeyError
    from fvdeploy.records import VideoResult

    assert rec == VideoResult.failed(str(clips[0] / name), rec["error"]).to_dict() and BAD[name] in rec["error"]
    assert rec["label"] is None and rec["partial"] is False and rec["warnings"] == [] and rec["segments"] == []
    assert r.stderr.count("\n") == 1 and BAD[name] in r.stderr and "Traceback" not in r.stderr


def test_truncated_avi_classifies_what_was_decoded(model_dir, clips):
    # Cut at a frame boundary, an AVI decodes cleanly to its cut: nothing tells it from an AVI whose
    # header overstates its length (a header's count alone never sets partial; docs/design.md#partial-and-warnings).
    r = run("classify", clips[0] / "truncated.avi", "--model", model_dir, "--json")
    assert r.exit_code == 0, r.output
    (rec,) = json_lines(r.stdout)
    assert 1 <= rec["num_frames"] < 50 and rec["partial"] is (rec["warnings"] != [])


def test_unreadable_file(model_dir, clips, tmp_path):
    target = tmp_path / "locked.mp4"
    shutil.copy(clips[1]["three"], target)
    os.chmod(target, 0)
    if os.geteuid() != 0:
        r = run("classify", target, "--model", model_dir)
        assert r.exit_code == 1 and "permission denied" in r.stderr
        return
    # root reads anything: run the CLI as an unprivileged user instead
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot drop privileges to test permissions")
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run(
        [*drop, sys.executable, "-c", "import fvdeploy.cli"],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": "/tmp"},
        cwd="/",
    )
    if probe.returncode != 0:  # e.g. the clone lives in a mode-0700 folder (what mktemp -d makes)
        last = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else f"exit {probe.returncode}"
        pytest.skip(f"the unprivileged user cannot import fvdeploy from this clone ({last})")
    shared = Path("/tmp") / f"fvdeploy-perm-{os.getpid()}"
    shared.mkdir(exist_ok=True)
    try:
        for p in (shared,):
            os.chmod(p, 0o755)
        locked = shared / "locked.mp4"
        shutil.copy(target, locked)
        os.chmod(locked, 0)
        model_copy = shared / "model"
        shutil.copytree(model_dir, model_copy, dirs_exist_ok=True)
        for p in model_copy.rglob("*"):
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        os.chmod(model_copy, 0o755)
        r = subprocess.run(
            [*drop, sys.executable, "-m", "fvdeploy", "classify", str(locked), "--model", str(model_copy)],
            capture_output=True,
            text=True,
            env={**os.environ, "HOME": str(shared)},
        )
        if "Permission denied" in r.stderr and "python" in r.stderr.lower() and "locked" not in r.stderr:
            pytest.skip("the unprivileged user cannot run this Python installation")
        assert r.returncode == 1, r.stderr
        assert "permission denied" in r.stderr and r.stderr.strip().count("\n") == 0
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_many_files_good_and_bad_finish_and_exit_1(model_dir, clips, tmp_path):
    out = tmp_path / "res.jsonl"
    r = run(
        "classify",
        clips[1]["three"],
        clips[0] / "missing.mp4",
        clips[0] / "text.mp4",
        clips[1]["odd"],
        "--model",
        model_dir,
        "--output",
        out,
        "--quiet",
    )
    assert r.exit_code == 1
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [("error" in rec and rec["error"] is not None) for rec in recs] == [False, True, True, False]
    assert not out.with_name("res.jsonl.partial").exists()


def test_output_file_is_never_clobbered(model_dir, clips, tmp_path):
    out = tmp_path / "res.jsonl"
    out.write_text("precious\n")
    r = run("classify", clips[1]["three"], "--model", model_dir, "--output", out)
    assert r.exit_code == 2 and "--force" in r.stderr and out.read_text() == "precious\n"
    assert run("classify", clips[1]["three"], "--model", model_dir, "--output", out, "--force").exit_code == 0
    assert len(out.read_text().splitlines()) == 1
    # --resume keeps what is there and only does the rest
    r = run(
        "classify", clips[1]["three"], clips[1]["odd"], "--model", model_dir, "--output", out, "--resume", "--quiet"
    )
    assert r.exit_code == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(rec["path"]).name for rec in recs] == ["three.mp4", "odd.avi"]


def test_shards_are_disjoint_and_cover_everything(model_dir, clips, tmp_path):
    folder = clips[0]
    seen = []
    for i in range(3):
        r = run("classify", folder / "*.mp4", "--model", model_dir, "--json", "--shard", f"{i}/3")
        seen += [rec["path"] for rec in json_lines(r.stdout)]
    expected = sorted(str(p) for p in folder.glob("*.mp4"))
    assert sorted(seen) == expected and len(seen) == len(set(seen))


def test_manifest_and_directory_inputs(model_dir, clips, tmp_path):
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"# videos\n{clips[1]['three']}\n\n{clips[1]['odd']}\n")
    r = run("classify", "--manifest", manifest, "--model", model_dir, "--json")
    assert r.exit_code == 0 and len(json_lines(r.stdout)) == 2
    sub = tmp_path / "dir" / "nested"
    sub.mkdir(parents=True)
    shutil.copy(clips[1]["three"], sub / "a.mp4")
    r = run("classify", tmp_path / "dir", "--model", model_dir, "--json")
    assert r.exit_code == 0 and [Path(x["path"]).name for x in json_lines(r.stdout)] == ["a.mp4"]


@pytest.mark.parametrize("shard", ["1", "3/3", "a/b", "1/0", "-1/2"])
def test_malformed_shard_is_a_usage_error(model_dir, clips, shard):
    r = run("classify", clips[1]["three"], "--model", model_dir, "--shard", shard)
    assert r.exit_code == 2 and "--shard" in r.stderr


def test_usage_errors(model_dir):
    assert run("classify", "--model", model_dir).exit_code == 2  # no inputs
    assert run("classify", "x.mp4", "--bogus-flag").exit_code == 2
    assert run("classify", "x.mp4", "--json", "--output", "y.jsonl").exit_code == 2


def test_model_and_device_errors(model_dir, clips, tmp_path):
    r = run("classify", clips[1]["three"], "--model", tmp_path / "nope")
    assert r.exit_code == 1 and "model not found" in r.stderr and r.stderr.count("\n") == 1
    bad = tmp_path / "corrupt"
    shutil.copytree(model_dir, bad)
    (bad / "model.safetensors").write_bytes(b"junk")
    r = run("classify", clips[1]["three"], "--model", bad)
    assert r.exit_code == 1 and "corrupt safetensors" in r.stderr
    if not torch.cuda.is_available():
        r = run("classify", clips[1]["three"], "--model", model_dir, "--device", "cuda")
        assert r.exit_code == 1 and "CUDA is not available" in r.stderr and r.stderr.count("\n") == 1


def test_module_entry_point_has_no_traceback_on_errors(model_dir, clips):
    # the classify family's real-process smoke test (python -m fvdeploy)
    r = subprocess.run(
        [sys.executable, "-m", "fvdeploy", "classify", str(clips[0] / "text.mp4"), "--model", str(model_dir)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0
    r = subprocess.run(
        [sys.executable, "-m", "fvdeploy", "classify", str(clips[1]["three"]), "--model", str(model_dir), "--json"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and json.loads(r.stdout)["num_frames"] == 3 and r.stderr == ""
