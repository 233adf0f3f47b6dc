"""What users expect from every command (issue 14): one flag convention with the old spellings as
hidden aliases, help within 100 columns, partial results on stderr and --strict, --segments only
with --mode tsm, a resume that resumes from FILE.partial, one writer per output, the usual file
permissions, --annotate, no raw markup from export (piped and on a terminal), Ctrl-C during
start-up. In-process (CliRunner) except where a real process is the point (signals, a terminal)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
import typer.main
from clips import mp4_boxes, probe_video, synthetic_frames, write_clip
from conftest import save_tiny_model
from typer.testing import CliRunner

from fvdeploy.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("m") / "tiny", seed=3)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    a = write_clip(d / "a.mp4", synthetic_frames(40, 48, 64, seed=1))
    b = write_clip(d / "b.mp4", synthetic_frames(30, 48, 64, seed=2))
    # a damaged H.264 file (20 KB overwritten in the middle: frames lost, decoding resumes)
    damaged = d / "damaged.mp4"
    damaged.write_bytes((Path(__file__).parent / "assets" / "real_video" / "corrupt_middle.mp4").read_bytes())
    return {"a": a, "b": b, "truncated": damaged}


def run(*args, **kw):
    return runner.invoke(app, [str(a) for a in args], **kw)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _commands(group=None, prefix=()):
    group = group or typer.main.get_command(app)
    yield prefix
    for name, cmd in sorted(group.commands.items()):
        if getattr(cmd, "commands", None):
            yield from _commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name)


# -- help -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", list(_commands()), ids=lambda c: " ".join(c) or "fvdeploy")
def test_help_fits_100_columns_and_names_every_option_whole(command):
    r = run(*command, "--help", env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    assert max(len(line) for line in r.output.splitlines()) <= 100
    assert "<bool>" not in r.output and "…" not in r.output
    group = typer.main.get_command(app)
    cmd = group
    for name in command:
        cmd = cmd.commands[name]
    for param in cmd.params:
        if getattr(param, "hidden", False):
            for opt in param.opts:
                assert f"{opt} " not in r.output and not r.output.rstrip().endswith(opt), f"hidden {opt} shown"
            continue
        for opt in [*param.opts, *param.secondary_opts]:
            if opt.startswith("--"):
                assert opt in r.output, f"{opt} missing or cut in {' '.join(command)} --help"


def test_revision_2_spellings_everywhere():
    group = typer.main.get_command(app)
    seen = {}
    for command in _commands():
        cmd = group
        for name in command:
            cmd = cmd.commands[name]
        for param in getattr(cmd, "params", []):
            if not getattr(param, "hidden", False):
                for opt in param.opts:
                    seen.setdefault(opt, set()).add(" ".join(command))
                if param.name == "device":
                    assert param.default == "auto", f"{' '.join(command)} --device defaults to {param.default}"
                if getattr(param, "is_flag", False) and param.name not in ("help", "version"):
                    assert param.secondary_opts, f"{' '.join(command)} {param.opts}: no --no- form"
    assert "--topk" not in seen and "--top-k" in seen
    assert "--out" not in seen and {"export", "train", "import-checkpoint"} <= seen["--out-dir"]
    assert {"classify", "watch", "export", "info", "eval"} <= seen["--model"]
    assert seen["-o"] == {"classify", "watch"}  # -o is a file; folders are --out-dir


# -- aliases ----------------------------------------------------------------------------------------
def test_top_k_and_its_hidden_alias(model_dir, clips):
    for flag in ("--top-k", "--topk"):
        r = run("classify", clips["a"], "-m", model_dir, flag, 2, "--json")
        assert r.exit_code == 0, r.output
        assert len(json.loads(r.stdout.splitlines()[0])["topk"]) == 2


def test_model_as_option_or_positional(model_dir):
    a = run("info", model_dir, "--json")
    b = run("info", "--model", model_dir, "--json")
    assert a.exit_code == b.exit_code == 0 and a.stdout == b.stdout
    assert run("info", model_dir, "--model", model_dir.parent).exit_code == 2


@pytest.mark.parametrize(
    "args,exit_code,message",
    [
        (("export", "{absent}", "--onnx"), 1, "model not found"),
        (("export", "{absent}", "--trt"), 1, "TensorRT"),
        (("export", "{absent}", "-o", "{tmp}/x"), 1, "model not found"),
        (("export", "{absent}", "--out", "{tmp}/x"), 1, "model not found"),
        (("export", "--model", "{absent}", "--out", "{tmp}/x", "--out-dir", "{tmp}/y"), 2, "old spelling"),
        (("import-checkpoint", "{absent}", "--out", "{tmp}/x"), 1, "absent"),
        (("train", "--out", "{tmp}/run"), 2, "--data is required"),
        (("watch", "{absent}", "--topk", "2", "-q"), 1, "absent"),
    ],
)
def test_old_spellings_still_parse(tmp_path, args, exit_code, message):
    absent = tmp_path / "absent"
    r = run(*[a.format(absent=absent, tmp=tmp_path) for a in args])
    assert r.exit_code == exit_code, r.output
    assert "No such option" not in r.output and message in r.output


def test_fp16_alias_is_precision_fp16(model_dir):
    r = run("export", model_dir, "--fp16")
    assert r.exit_code == 1 and "applies to TensorRT" in r.output  # the same refusal as --precision fp16
    r = run("export", model_dir, "--precision", "fp16")
    assert r.exit_code == 1 and "applies to TensorRT" in r.output


# -- usage errors, partial results ---------------------------------------------------------------------
def test_segments_without_mode_tsm_is_a_usage_error(model_dir, clips):
    r = run("classify", clips["a"], "-m", model_dir, "--segments", 4)
    assert r.exit_code == 2 and "segments applies to mode tsm" in r.output
    r = run("classify", clips["a"], "-m", model_dir, "--segments", 4, "--mode", "full")
    assert r.exit_code == 2
    assert run("classify", clips["a"], "-m", model_dir, "--segments", 4, "--mode", "tsm", "-q").exit_code == 0


def test_too_many_clusters_or_segments_is_the_options_usage_error(model_dir, clips):
    """Past the model folder's own bounds (config.LIMITS) a flag is a usage error naming the flag,
    not a broken model folder with exit 1 (a newcomer got the latter)."""
    r = run("classify", clips["a"], "-m", model_dir, "--clusters", 100000)
    assert r.exit_code == 2 and "clusters must be at most 1024, got 100000" in r.output, r.output
    r = run("classify", clips["a"], "-m", model_dir, "--mode", "tsm", "--segments", 5000)
    assert r.exit_code == 2 and "segments must be at most 1024" in r.output, r.output
    r = run("watch", clips["a"], "-m", model_dir, "--clusters", 5000)
    assert r.exit_code == 2 and "--clusters must be at most 1024" in r.output, r.output


def test_output_messages_offer_only_what_the_command_has(model_dir, clips, tmp_path):
    """A folder as --output is refused before any work, --force or not, leaving nothing behind;
    watch (which has no --resume) does not suggest it."""
    folder = tmp_path / "out"
    folder.mkdir()
    for extra in ((), ("--force",)):
        r = run("classify", clips["a"], "-m", model_dir, "--output", folder, "-q", *extra)
        assert r.exit_code == 1 and "is a folder; name a file" in r.output, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # a pipe (or a device: /dev/null as root) is never replaced by the finished file
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    for command in ("classify", "watch"):
        r = run(command, clips["a"], "-m", model_dir, "--output", fifo, "--force", "-q")
        assert r.exit_code == 1 and "not a regular file" in r.output, r.output
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    os.mkfifo(tmp_path / "v.mp4")
    r = run("classify", clips["a"], "-m", model_dir, "--annotate", tmp_path / "v.mp4", "--force")
    assert r.exit_code == 2 and "not a regular file" in r.output and stat.S_ISFIFO(os.lstat(tmp_path / "v.mp4").st_mode)
    fifo.unlink()
    (tmp_path / "v.mp4").unlink()
    out = tmp_path / "w.jsonl"
    out.write_text("mine\n")
    r = run("watch", clips["a"], "-m", model_dir, "--output", out, "-q")
    assert r.exit_code == 2 and "pass --force to overwrite it" in r.output and "--resume" not in r.output, r.output
    assert out.read_text() == "mine\n"


def test_a_manifest_that_cannot_be_read_is_a_usage_error(model_dir, clips, tmp_path):
    r = run("classify", clips["a"], "-m", model_dir, "--manifest", tmp_path / "nolist.txt")
    assert r.exit_code == 2 and "--manifest" in r.output and "nolist.txt" in r.output, r.output


def test_partial_result_one_stderr_line_and_strict(model_dir, clips):
    r = run("classify", clips["truncated"], "-m", model_dir, "--json")
    assert r.exit_code == 0, r.output
    lines = [line for line in r.stderr.splitlines() if "partial result" in line]
    assert len(lines) == 1 and str(clips["truncated"]) in lines[0]
    r = run("classify", clips["truncated"], clips["a"], "-m", model_dir, "--json", "--strict")
    assert r.exit_code == 1 and len(r.stdout.splitlines()) == 2


def test_table_end_frames_are_exclusive_like_the_json(model_dir, clips):
    r = run("classify", clips["a"], "-m", model_dir, env={"COLUMNS": "250"})
    j = json.loads(run("classify", clips["a"], "-m", model_dir, "--json").stdout.splitlines()[0])
    last = j["segments"][-1]
    assert f"[{last['start_frame']}, {last['end_frame']})" in r.stdout and last["end_frame"] == 40


# -- resume, lock, permissions ------------------------------------------------------------------------
def test_resume_keeps_the_complete_lines_of_an_interrupted_run(model_dir, clips, tmp_path):
    first = tmp_path / "first.jsonl"
    assert run("classify", clips["a"], "-m", model_dir, "-o", first, "-q").exit_code == 0
    kept = first.read_text()
    out = tmp_path / "out.jsonl"
    # what an interrupted run leaves: only FILE.partial, its last line cut
    out.with_name("out.jsonl.partial").write_text(kept + '{"path": "' + str(clips["b"]) + '", "lab')
    r = run("classify", clips["a"], clips["b"], "-m", model_dir, "-o", out, "--resume", "-q")
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert text.startswith(kept)  # kept byte for byte, not recomputed
    assert [rec["path"] for rec in records(out)] == [str(clips["a"]), str(clips["b"])]
    assert not out.with_name("out.jsonl.partial").exists() and not out.with_name("out.jsonl.lock").exists()


def test_two_writers_on_one_output_are_refused_and_a_dead_ones_lock_is_not(model_dir, clips, tmp_path):
    from fvdeploy.runtime.jsonl import JsonlWriter

    out = tmp_path / "out.jsonl"
    holder = JsonlWriter(out)
    try:
        r = run("classify", clips["a"], "-m", model_dir, "-o", out, "-q")
        assert (
            r.exit_code == 1 and "another fvdeploy run is writing it" in r.output and f"pid {os.getpid()}" in r.output
        )
    finally:
        holder.abort()
    # a writer killed with SIGKILL leaves its lock file behind; the kernel has dropped the lock
    code = f"from fvdeploy.runtime.jsonl import JsonlWriter; w = JsonlWriter({str(out)!r}); print('locked', flush=True); import time; time.sleep(60)"
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        p.kill()
        p.wait()
        assert out.with_name("out.jsonl.lock").exists()
        r = run("classify", clips["a"], "-m", model_dir, "-o", out, "-q")
        assert r.exit_code == 0, r.output
        assert len(records(out)) == 1 and not out.with_name("out.jsonl.lock").exists()
    finally:
        p.kill()


def test_files_are_written_with_the_usual_permissions(model_dir, clips, tmp_path):
    old = os.umask(0o022)
    try:
        r = run(
            "classify",
            clips["a"],
            "-m",
            model_dir,
            "-o",
            tmp_path / "r.jsonl",
            "--visualize",
            tmp_path / "png",
            "--annotate",
            tmp_path / "a.mp4",
            "-q",
        )
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    for path in (tmp_path / "r.jsonl", tmp_path / "png" / "a.png", tmp_path / "a.mp4"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


# -- annotated video -----------------------------------------------------------------------------------
def _count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def test_annotate_writes_a_playable_video_with_every_frame(model_dir, clips, tmp_path):
    out = tmp_path / "ann.mp4"
    r = run("classify", clips["a"], "-m", model_dir, "--annotate", out, "-q")
    assert r.exit_code == 0, r.output
    assert _count_frames(out) == _count_frames(clips["a"]) == 40
    cap = cv2.VideoCapture(str(out))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (48, 64, 3)
    # browser-playable: H.264 (not MPEG-4 Part 2) with the index before the media data
    info = probe_video(out)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["frames"] == 40
    boxes = mp4_boxes(out)
    assert boxes.index("moov") < boxes.index("mdat"), boxes
    r = run("classify", clips["a"], "-m", model_dir, "--annotate", out, "-q")
    assert r.exit_code == 2 and "exists" in r.output
    assert run("classify", clips["a"], "-m", model_dir, "--annotate", out, "--force", "-q").exit_code == 0
    assert run("classify", clips["a"], clips["b"], "-m", model_dir, "--annotate", tmp_path / "two.mp4").exit_code == 2


def test_watch_annotate_labels_windows(model_dir, clips, tmp_path):
    out = tmp_path / "w.mp4"
    r = run(
        "watch",
        clips["a"],
        "-m",
        model_dir,
        "--window-frames",
        16,
        "--stride-frames",
        8,
        "--annotate",
        out,
        "-o",
        tmp_path / "w.jsonl",
        "-q",
    )
    assert r.exit_code == 0, r.output
    assert _count_frames(out) == 40


def test_annotate_writes_vp9_webm_and_refuses_containers_browsers_do_not_play(model_dir, clips, tmp_path):
    out = tmp_path / "ann.webm"
    r = run("classify", clips["a"], "-m", model_dir, "--annotate", out, "-q")
    assert r.exit_code == 0, r.output
    info = probe_video(out)
    assert info["codec"] == "vp9" and info["format"] == "matroska,webm" and info["frames"] == 40
    for name in ("a.avi", "a.mkv", "a.mov"):
        r = run("classify", clips["a"], "-m", model_dir, "--annotate", tmp_path / name, "-q")
        assert r.exit_code == 2 and ".mp4" in r.output and ".webm" in r.output, r.output
        assert not (tmp_path / name).exists()


def test_annotate_pieces_let_a_later_window_take_over():
    from fvdeploy.runtime.annotate import Span, pieces

    got = pieces([Span(8, 24, "b", 0.5), Span(0, 16, "a", 0.9), Span(16, 30, "c", 0.7)])
    assert [(p.start_frame, p.end_frame, p.label) for p in got] == [(0, 8, "a"), (8, 16, "b"), (16, 30, "c")]


# -- export output: plain text, piped and on a terminal ----------------------------------------------
def _export_args(model_dir: Path, out: Path, clip: Path) -> list[str]:
    return ["export", "--model", str(model_dir), "--out-dir", str(out), "--clip", str(clip), "--max-frames", "64"]


def test_export_prints_no_markup_piped_or_on_a_terminal(model_dir, clips, tmp_path):
    r = run(*_export_args(model_dir, tmp_path / "piped", clips["a"]))
    assert r.exit_code == 0, r.output
    assert "ok " in r.stderr and "[/" not in r.output and "[green]" not in r.output and "[bold]" not in r.output
    # a pseudo-terminal on stdout and stderr, as a user's shell has
    leader, follower = pty.openpty()
    p = subprocess.Popen(
        [sys.executable, "-m", "fvdeploy", *_export_args(model_dir, tmp_path / "tty", clips["a"])],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        close_fds=True,
    )
    os.close(follower)
    seen = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 120)
        if not ready:
            break
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        seen += data
    p.wait(timeout=120)
    os.close(leader)
    text = seen.decode(errors="replace")
    assert p.returncode == 0, text
    assert "model.onnx" in text or "ok" in text
    assert "[/" not in text and "[green]" not in text and "[bold]" not in text
    # progress by stage (load, 3 graphs, their checks, 3 parity checks, the record), with rate and ETA
    assert re.search(r"\d[\d,.]* steps/s", text) and "ETA" in text and "9/9" in text


def test_export_q_silences_progress_and_step_lines_not_the_result(model_dir, clips, tmp_path, terminal_stderr):
    r = run(*_export_args(model_dir, tmp_path / "quiet", clips["a"]), "-q")
    assert r.exit_code == 0, r.output
    # -q: no progress and no per-step lines; the result (the bundle's path) still on stdout
    assert r.stderr == "" and r.stdout.strip() == str(tmp_path / "quiet" / "export")


# -- Ctrl-C during start-up ------------------------------------------------------------------------
def test_ctrl_c_while_loading_is_one_line_exit_130_and_nothing_written(model_dir, clips, tmp_path):
    out = tmp_path / "r.jsonl"
    ann = tmp_path / "a.mp4"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fvdeploy",
            "classify",
            str(clips["a"]),
            "-m",
            str(model_dir),
            "-o",
            str(out),
            "--annotate",
            str(ann),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: a runner started in the background (`cmd &` in a script) hands its
        # children SIGINT ignored, and Python then keeps it ignored (the command ran to the end)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    maps = Path(f"/proc/{p.pid}/maps")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None:  # torch is loading: the command has started
        try:
            if "libtorch" in maps.read_text():
                break
        except OSError:
            pass
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 130, stderr
    assert stderr.strip() == "interrupted" and "Traceback" not in stderr
    assert not out.exists() and not ann.exists() and not out.with_name("r.jsonl.lock").exists()
    assert not list(tmp_path.glob(".a.*"))


# -- logging -----------------------------------------------------------------------------------------
def test_log_level_configures_the_library_logger_once():
    import logging

    r = run("--log-level", "debug", "info", "--help")
    assert r.exit_code == 0
    logger = logging.getLogger("fvdeploy")
    assert logger.level == logging.DEBUG and sum(getattr(h, "_fvdeploy", False) for h in logger.handlers) == 1
    assert run("-v", "info", "--help").exit_code == 0 and logger.level == logging.INFO
    assert run("--log-level", "loud", "info", "--help").exit_code == 2
