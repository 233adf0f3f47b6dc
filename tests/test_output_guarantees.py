"""``--output`` has one set of guarantees whatever the format (issue 24), JSON Lines and Parquet
alike: one writer per output (the second refused in one line), finished rows kept across a
SIGKILL and reused by ``--resume`` without duplicates, a lock left by a killed run taken over with
a note, a full disk reported as ``FILE: no space left on device`` (exit 1, lock released, an
earlier FILE intact), and SIGTERM/SIGHUP handled as Ctrl-C (exit 143/129). Real processes where
the process is the point (signals, kills, locks between processes)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clips import synthetic_frames, write_clip
from conftest import run_cli, save_tiny_model

FORMATS = [".jsonl", ".parquet"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("m") / "tiny", seed=4)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return [write_clip(d / f"c{i:02d}.mp4", synthetic_frames(24, 32, 40, seed=i)) for i in range(12)]


def rows(path: Path) -> list[dict]:
    """The records of a finished output, either format."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        from fvdeploy.runtime.arrow import row_to_result

        return [row_to_result(r).to_dict() for r in pq.read_table(path).to_pylist()]
    return [json.loads(line) for line in path.read_text().splitlines()]


def spool(path: Path) -> list[dict]:
    """The complete lines of FILE.partial (a JSON Lines spool for both formats)."""
    from fvdeploy.runtime.jsonl import complete_records

    return [rec for _, rec in complete_records(path.with_name(path.name + ".partial"))]


def side(path: Path, what: str) -> Path:
    return path.with_name(path.name + what)


def classify_proc(model_dir, inputs, out: Path, *extra) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fvdeploy", "classify", *map(str, inputs), "-m", str(model_dir), "-o", str(out), "-q"]
        + [str(x) for x in extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_rows(proc: subprocess.Popen, out: Path, n: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if len(spool(out)) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {n} rows in {side(out, '.partial')} (exit {proc.poll()}: {proc.stderr.read()})")


# -- two writers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", FORMATS)
def test_a_second_writer_is_refused_in_one_line(model_dir, clips, tmp_path, suffix):
    from fvdeploy.cli.output import open_output

    out = tmp_path / f"r{suffix}"
    holder = open_output(out, force=False, resume=False)
    try:
        r = run_cli("classify", clips[0], "-m", model_dir, "-o", out, "-q")
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
        assert f"{out}: another fvdeploy run is writing it (pid {os.getpid()})" in r.stderr
    finally:
        holder.abort()
    assert not side(out, ".lock").exists() and not out.exists()


# -- SIGKILL, then --resume ------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", FORMATS)
def test_sigkill_keeps_finished_rows_and_resume_reuses_them(model_dir, clips, tmp_path, suffix):
    out = tmp_path / f"r{suffix}"
    proc = classify_proc(model_dir, clips, out)
    try:
        wait_for_rows(proc, out, 3)
        proc.kill()
        proc.wait(timeout=60)
    finally:
        proc.kill()
    kept = spool(out)
    assert 3 <= len(kept) < len(clips) and not out.exists()
    assert side(out, ".lock").exists()  # a killed run cannot clean up; the kernel has dropped the lock
    r = run_cli("classify", *clips, "-m", model_dir, "-o", out, "-q", "--resume")
    assert r.returncode == 0, r.stderr
    assert "note: " in r.stderr and "which ended without releasing it" in r.stderr
    final = rows(out)
    paths = [x["path"] for x in final]
    assert sorted(paths) == sorted(map(str, clips)) and len(set(paths)) == len(paths)  # every input once
    by_path = {x["path"]: x for x in final}
    for rec in kept:  # reused as they were, not classified again
        assert by_path[rec["path"]]["timings"] == rec["timings"]
    assert not side(out, ".partial").exists() and not side(out, ".lock").exists()


def test_parquet_resume_from_a_finished_file_and_a_spool_keeps_each_input_once(model_dir, clips, tmp_path):
    out = tmp_path / "r.parquet"
    assert run_cli("classify", *clips[:2], "-m", model_dir, "-o", out, "-q").returncode == 0
    first = rows(out)
    # an interrupted resume left a spool holding one finished input again and one new one
    more = run_cli("classify", clips[1], clips[2], "-m", model_dir, "--json").stdout.splitlines()
    side(out, ".partial").write_text("\n".join(more) + "\n" + '{"path": "cut by a kil')
    r = run_cli("classify", *clips[:4], "-m", model_dir, "-o", out, "-q", "--resume")
    assert r.returncode == 0, r.stderr
    final = rows(out)
    assert [x["path"] for x in final] == [str(c) for c in clips[:4]]
    assert final[:2] == first


# -- signals --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sig,suffix", [(signal.SIGTERM, ".jsonl"), (signal.SIGHUP, ".parquet")], ids=["SIGTERM-jsonl", "SIGHUP-parquet"]
)
def test_sigterm_and_sighup_behave_as_ctrl_c(model_dir, clips, tmp_path, sig, suffix):
    out = tmp_path / f"r{suffix}"
    proc = classify_proc(model_dir, clips, out)
    try:
        wait_for_rows(proc, out, 1)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, stderr
    assert stderr.strip() == f"interrupted ({signal.Signals(sig).name})"
    assert not side(out, ".lock").exists() and not out.exists()
    kept = spool(out)
    assert len(kept) >= 1
    r = run_cli("classify", *clips, "-m", model_dir, "-o", out, "-q", "--resume")
    assert r.returncode == 0, r.stderr
    paths = [x["path"] for x in rows(out)]
    assert sorted(paths) == sorted(map(str, clips)) and len(set(paths)) == len(paths)


def test_the_signal_helper_restores_the_handlers_it_replaced():
    from fvdeploy.cli.signals import Interrupted, exit_code, interruptible

    before = signal.getsignal(signal.SIGTERM)

    @interruptible
    def job():
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(5)  # the handler raises before this ends

    with pytest.raises(Interrupted) as e:
        job()
    assert e.value.signum == signal.SIGHUP and exit_code(e.value) == 129 and isinstance(e.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) == before


# -- a full disk -----------------------------------------------------------------------------------
@pytest.fixture
def tiny_fs(tmp_path):
    """A 256 KiB tmpfs (root only; skipped with the reason otherwise), unmounted afterwards."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk is simulated with a small tmpfs, which needs root and mount(8)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True, timeout=30)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], timeout=30)


def fill(folder: Path, leave: int) -> None:
    """Fill the filesystem of ``folder``, then free ``leave`` bytes."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    os.truncate(folder / "filler", max(0, (folder / "filler").stat().st_size - leave))


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_full_disk_is_one_line_and_leaves_the_earlier_file_intact(model_dir, clips, tiny_fs, suffix):
    out = tiny_fs / f"r{suffix}"
    assert run_cli("classify", clips[0], "-m", model_dir, "-o", out, "-q").returncode == 0
    earlier = out.read_bytes()
    fill(tiny_fs, 6144)
    r = run_cli("classify", *clips[:8], "-m", model_dir, "-o", out, "-q", "--force")
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip() == f"error: {out}: no space left on device"
    assert out.read_bytes() == earlier
    assert not side(out, ".lock").exists()
    assert not [p for p in tiny_fs.iterdir() if p.name.endswith(".tmp")]  # no half-written Parquet left


def test_openvino_leaves_the_signal_stack_it_found(tmp_path):
    """OpenVINO's CPU plugin swaps the thread's alternate signal stack and unmaps its own when it
    unloads; without ``sigstack.kept_signal_stack`` the next Ctrl-C or SIGTERM was a SIGSEGV."""
    import gc
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        pytest.skip("needs the openvino package (pip install 'fvdeploy[openvino]')")
    import onnx
    from onnx import TensorProto, helper

    from fvdeploy.backends.openvino_backend import compile_graph
    from fvdeploy.cli.signals import Interrupted, interruptible
    from fvdeploy.sigstack import current

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    before = current()
    compiled, _ = compile_graph(path, "cpu")
    del compiled
    gc.collect()  # the plugin may unload here, unmapping its stack
    assert current() == before

    @interruptible
    def job():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    with pytest.raises(Interrupted):  # delivered on the stack Python expects, not a SIGSEGV
        job()
