"""Issue 24's fault sweep: every hostile or broken input the issue lists, the command that meets
it, and what it gives (exit status, stderr's first line and line count, a traceback or not, the
record or the file left behind), with the peak RSS (``/usr/bin/time -v``) where memory matters.

Run it before and after a change and compare the two JSON files (the issue's closing table)::

    nice -n 10 .venv/bin/python scripts/experiments/hostile_faults.py --out runs/faults-after.json
    nice -n 10 .venv/bin/python scripts/experiments/hostile_faults.py --only h264_8192,h264_12000

Everything it reads it makes first (a tiny model, clips, broken copies of the bundled model, a
tmpfs for the disk-full cases when run as root, H.264 files of 8192x8192 and 12000x12000 frames
with PyAV's libx264). Each case prints one JSON line as it ends; ``--out`` gets the whole list.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from clips import synthetic_frames, write_clip, write_h264  # noqa: E402

PY = sys.executable
CASES: dict[str, Callable[["Ctx"], dict]] = {}
SECRET = "P@ss/w:rd%2F"  # holds every character the issue names: @ / : and a %-escape


def case(fn: Callable[["Ctx"], dict]) -> Callable[["Ctx"], dict]:
    CASES[fn.__name__] = fn
    return fn


def fv(*args) -> list[str]:
    return [PY, "-m", "fvdeploy", *[str(a) for a in args]]


def load_avg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def summary(stderr: str) -> dict:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    return {
        "stderr_lines": len(lines),
        "stderr_first": lines[0][:300] if lines else "",
        "stderr_last": lines[-1][:300] if len(lines) > 1 else "",
        "traceback": "Traceback" in stderr,
    }


def measure(argv: list[str], timeout: float = 300, env: dict | None = None) -> dict:
    """Run under /usr/bin/time -v: exit status, stderr summary, stdout, peak RSS (MiB), wall time."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        t0 = time.perf_counter()
        try:
            p = subprocess.run(
                ["/usr/bin/time", "-v", "-o", tf.name, *argv],
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**os.environ, **(env or {})},
            )
            out, err, timed_out = p.stdout, p.stderr, False
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            err = (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
            timed_out = True
        wall = time.perf_counter() - t0
        report = tf.read()
    rss = status = None
    for line in report.splitlines():
        line = line.strip()
        if line.startswith("Maximum resident set size"):
            rss = round(int(line.split(":")[1]) / 1024, 1)
        elif line.startswith("Exit status"):
            status = int(line.split(":")[1])
        elif line.startswith("Command terminated by signal"):
            status = 128 + int(line.rsplit(" ", 1)[1])
    return {
        "rc": "timeout" if timed_out else status,
        **summary(err),
        "stdout": out,
        "peak_rss_mib": rss,
        "wall_s": round(wall, 2),
        "load": load_avg(),
    }


class Ctx:
    def __init__(self, work: Path) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self._tiny: Path | None = None
        self._clips: list[Path] | None = None
        self._export: Path | None = None

    @property
    def tiny(self) -> Path:
        if self._tiny is None:
            import torch

            from fvdeploy.bundle import save_model
            from fvdeploy.config import InputSpec, ModelConfig
            from fvdeploy.models import create_model

            torch.manual_seed(3)
            cfg = ModelConfig(
                arch="tiny",
                num_classes=3,
                labels=["a", "b", "c"],
                num_clusters=4,
                input=InputSpec(shorter_side=32, crop=32),
            )
            self._tiny = save_model(create_model(cfg).eval(), self.work / "tiny", overwrite=True)
        return self._tiny

    @property
    def clips(self) -> list[Path]:
        if self._clips is None:
            d = self.work / "clips"
            d.mkdir(exist_ok=True)
            self._clips = [write_clip(d / f"c{i:02d}.mp4", synthetic_frames(60, 48, 64, seed=i)) for i in range(16)]
        return self._clips

    @property
    def bundled(self) -> Path:
        from fvdeploy.assets import ASSETS

        return ASSETS / "default_model"

    def variant(self, name: str, base: Path, config=None, weights=None) -> Path:
        """A copy of model folder ``base`` with its config dict and/or state dict edited."""
        dst = self.work / "models" / name
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(base, dst)
        if config is not None:
            cfg = json.loads((dst / "config.json").read_text())
            out = config(cfg)
            (dst / "config.json").write_text(out if isinstance(out, str) else json.dumps(cfg))
        if weights is not None:
            from safetensors.torch import load_file, save_file

            state = load_file(str(dst / "model.safetensors"))
            save_file(weights(state), str(dst / "model.safetensors"))
        return dst

    @property
    def exported(self) -> Path:
        """The tiny model with an ONNX export bundle."""
        if self._export is None:
            dst = self.work / "exported"
            if not (dst / "export" / "export.json").is_file():
                if dst.exists():
                    shutil.rmtree(dst)
                shutil.copytree(self.tiny, dst)
                subprocess.run(
                    fv("export", "--model", dst, "--clip", self.clips[0], "--max-frames", 64, "-q"),
                    check=True,
                    capture_output=True,
                    timeout=900,
                )
            self._export = dst
        return self._export


def classify(ctx: Ctx, model: Path, *extra, clip: Path | None = None, timeout: float = 300) -> dict:
    r = measure(fv("classify", clip or ctx.clips[0], "-m", model, "--json", *extra), timeout=timeout)
    if r["stdout"]:
        try:
            rec = json.loads(r["stdout"].splitlines()[0])
            r["record"] = {k: rec.get(k) for k in ("label", "score", "error")}
            r["record"]["topk"] = rec.get("topk")
        except (json.JSONDecodeError, IndexError):
            r["stdout_head"] = r["stdout"][:300]
    r.pop("stdout")
    return r


# -- model folders ---------------------------------------------------------------------------------
def _set_input(key, index, value):
    def edit(cfg):
        cfg["input"][key][index] = value

    return edit


@case
def mean_nan(ctx):
    return classify(ctx, ctx.variant("mean_nan", ctx.tiny, _set_input("mean", 0, math.nan)))


@case
def std_nan(ctx):
    return classify(ctx, ctx.variant("std_nan", ctx.tiny, _set_input("std", 1, math.nan)))


@case
def weights_int32(ctx):
    import torch

    return classify(ctx, ctx.variant("int32", ctx.tiny, weights=lambda s: {k: v.to(torch.int32) for k, v in s.items()}))


@case
def weights_bool(ctx):
    import torch

    return classify(ctx, ctx.variant("bool", ctx.tiny, weights=lambda s: {k: v.to(torch.bool) for k, v in s.items()}))


@case
def weights_all_nan(ctx):
    def nan(s):
        return {k: (v.fill_(math.nan) if v.is_floating_point() else v) for k, v in s.items()}

    return classify(ctx, ctx.variant("nan", ctx.tiny, weights=nan))


@case
def clusters_1e9(ctx):
    def edit(cfg):
        cfg["num_clusters"] = 1_000_000_000

    return classify(ctx, ctx.variant("clusters", ctx.bundled, edit), timeout=600)


@case
def labels_2m(ctx):
    def edit(cfg):
        cfg["num_classes"] = 2_000_000
        cfg["labels"] = [f"c{i}" for i in range(2_000_000)]

    return classify(ctx, ctx.variant("labels2m", ctx.bundled, edit), timeout=900)


@case
def labels_string(ctx):
    def edit(cfg):
        cfg["labels"] = "abc"

    return classify(ctx, ctx.variant("labels_str", ctx.tiny, edit))


@case
def num_clusters_string(ctx):
    def edit(cfg):
        cfg["num_clusters"] = "8"

    return classify(ctx, ctx.variant("clusters_str", ctx.tiny, edit))


@case
def crop_2048(ctx):
    def edit(cfg):
        cfg["input"]["crop"] = cfg["input"]["shorter_side"] = 2048

    return classify(ctx, ctx.variant("crop2048", ctx.tiny, edit), "--max-memory", 256, timeout=600)


@case
def weights_symlink_outside(ctx):
    m = ctx.variant("wlink", ctx.tiny)
    outside = ctx.work / "outside"
    outside.mkdir(exist_ok=True)
    shutil.copy2(m / "model.safetensors", outside / "model.safetensors")
    (m / "model.safetensors").unlink()
    (m / "model.safetensors").symlink_to(outside / "model.safetensors")
    return classify(ctx, m)


@case
def config_symlink_outside(ctx):
    m = ctx.variant("clink", ctx.tiny)
    outside = ctx.work / "outside"
    outside.mkdir(exist_ok=True)
    shutil.copy2(m / "config.json", outside / "config.json")
    (m / "config.json").unlink()
    (m / "config.json").symlink_to(outside / "config.json")
    return classify(ctx, m)


@case
def config_nested_100k(ctx):
    def edit(cfg):
        return json.dumps(cfg)[:-1] + ', "trained": ' + "[" * 100_000 + "]" * 100_000 + "}"

    return classify(ctx, ctx.variant("nested", ctx.tiny, edit))


# -- export bundles --------------------------------------------------------------------------------
def _export_variant(ctx, name, edit_record=None, edit_dir=None) -> Path:
    m = ctx.variant(name, ctx.exported)
    rec_path = m / "export" / "export.json"
    if edit_record is not None:
        rec = json.loads(rec_path.read_text())
        out = edit_record(rec)
        rec_path.write_text(out if isinstance(out, str) else json.dumps(rec))
    if edit_dir is not None:
        edit_dir(m)
    return m


@case
def export_config_nan(ctx):
    def edit(rec):
        rec["config"]["input"]["std"][0] = math.nan

    return classify(ctx, _export_variant(ctx, "x_nan", edit), "--backend", "onnxruntime")


@case
def export_nested_100k(ctx):
    def edit(rec):
        return json.dumps(rec)[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"

    return classify(ctx, _export_variant(ctx, "x_nested", edit), "--backend", "onnxruntime")


@case
def export_symlink_outside(ctx):
    def link(m):
        outside = ctx.work / "outside_onnx"
        outside.mkdir(exist_ok=True)
        for name in ("model.onnx", "frontend.onnx", "backend.onnx"):
            if (m / "export" / name).exists():
                shutil.copy2(m / "export" / name, outside / name)
                (m / "export" / name).unlink()
                (m / "export" / name).symlink_to(outside / name)

    return classify(ctx, _export_variant(ctx, "x_link", edit_dir=link), "--backend", "onnxruntime")


@case
def export_file_name_escapes(ctx):
    def edit(rec):
        cfg = ctx.tiny / "config.json"
        from fvdeploy.bundle import sha256_file

        # export/ of work/models/x_escape -> work/tiny/config.json: a file outside the model folder
        rec["files"]["../../../tiny/config.json"] = {"bytes": cfg.stat().st_size, "sha256": sha256_file(cfg)}

    return classify(ctx, _export_variant(ctx, "x_escape", edit), "--backend", "onnxruntime")


# -- outputs ---------------------------------------------------------------------------------------
def _wait_for(pred, timeout=120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def _jsonl_rows(path: Path) -> int:
    try:
        return sum(1 for line in path.read_bytes().split(b"\n")[:-1] if line.strip())
    except FileNotFoundError:
        return 0


def _parquet_rows(path: Path) -> int | str:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).num_rows
    except FileNotFoundError:
        return "absent"
    except Exception as e:  # noqa: BLE001  (what a reader meets)
        return f"unreadable ({type(e).__name__})"


def _partial_rows(path: Path) -> int | str:
    """Complete rows in FILE.partial: JSON lines (JSONL, and the Parquet spool once it is one)."""
    partial = path.with_name(path.name + ".partial")
    if not partial.exists():
        return "absent"
    data = partial.read_bytes()
    if data[:4] == b"PAR1":
        return _parquet_rows(partial)
    return _jsonl_rows(partial)


def _signal_run(ctx, out: Path, sig: int, *extra) -> dict:
    """classify 16 clips into ``out``; ``sig`` once the first row is on disk (or 8 s after the output opened)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for leftover in out.parent.glob(out.name + "*"):
        leftover.unlink()
    argv = fv("classify", *ctx.clips, "-m", ctx.tiny, "-o", out, "-q", *extra)
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    # the first row on disk; a format that keeps rows in memory shows none: then 8 s after it opened
    _wait_for(lambda: out.with_name(out.name + ".lock").exists() or out.with_name(out.name + ".partial").exists(), 60)
    t1 = time.monotonic()
    _wait_for(lambda: (isinstance(_partial_rows(out), int) and _partial_rows(out) >= 1) or time.monotonic() > t1 + 8)
    waited = round(time.monotonic() - t0, 2)
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=120)
    return {
        "rc": p.returncode if p.returncode >= 0 else 128 - p.returncode,
        "signal_after_s": waited,
        **summary(stderr),
        "partial_rows": _partial_rows(out),
        "file": _parquet_rows(out) if out.suffix == ".parquet" else (_jsonl_rows(out) if out.exists() else "absent"),
        "lock_left": out.with_name(out.name + ".lock").exists(),
        "load": load_avg(),
    }


@case
def sigterm_jsonl(ctx):
    return _signal_run(ctx, ctx.work / "sig" / "term.jsonl", signal.SIGTERM)


@case
def sighup_jsonl(ctx):
    return _signal_run(ctx, ctx.work / "sig" / "hup.jsonl", signal.SIGHUP)


@case
def sigterm_parquet(ctx):
    return _signal_run(ctx, ctx.work / "sig" / "term.parquet", signal.SIGTERM)


@case
def parquet_sigkill_resume(ctx):
    out = ctx.work / "kill" / "r.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    for p in out.parent.glob("*"):
        p.unlink()
    argv = fv("classify", *ctx.clips, "-m", ctx.tiny, "-o", out, "-q")
    # how long a whole run takes, to kill at about half way whatever the format keeps on disk
    t0 = time.monotonic()
    full = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    t_full = time.monotonic() - t0
    for p in out.parent.glob("*"):
        p.unlink()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # killed once 4 rows are on disk; a format that shows none until it ends: at 60% of a whole run
    t0 = time.monotonic()
    _wait_for(lambda: isinstance(_partial_rows(out), int) and _partial_rows(out) >= 4, timeout=t_full)
    if not (isinstance(_partial_rows(out), int) and _partial_rows(out) >= 4):
        time.sleep(max(0.0, t_full * 0.6 - (time.monotonic() - t0)))
    killed_after = time.monotonic() - t0
    p.kill()
    p.wait()
    kept_before = _partial_rows(out)
    partial = out.with_name(out.name + ".partial")
    spool_lines = []
    if partial.exists() and partial.read_bytes()[:4] != b"PAR1":
        spool_lines = [json.loads(x) for x in partial.read_bytes().split(b"\n")[:-1] if x.strip()]
    t0 = time.monotonic()
    r = subprocess.run([*argv, "--resume"], capture_output=True, text=True, timeout=600)
    t_resume = time.monotonic() - t0
    rows = []
    try:
        import pyarrow.parquet as pq

        from fvdeploy.runtime.arrow import row_to_result

        rows = [row_to_result(r).to_dict() for r in pq.read_table(out).to_pylist()]
    except Exception:  # noqa: BLE001  (an unreadable file: no rows)
        pass
    paths = [row["path"] for row in rows]
    by_path = {row["path"]: row for row in rows}
    reused = sum(1 for rec in spool_lines if by_path.get(rec["path"], {}).get("timings") == rec.get("timings"))
    return {
        "full_run_rc": full.returncode,
        "full_run_s": round(t_full, 2),
        "killed_after_s": round(killed_after, 2),
        "partial_rows_after_kill": kept_before,
        "resume_rc": r.returncode,
        **summary(r.stderr),
        "resume_s": round(t_resume, 2),
        "final_rows": len(rows),
        "duplicates": len(paths) - len(set(paths)),
        "rows_reused_unchanged": reused,
        "load": load_avg(),
    }


@case
def parquet_two_writers(ctx):
    out = ctx.work / "two" / "r.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    for p in out.parent.glob("*"):
        p.unlink()
    # the first writer: a classify run held open (it waits on a slow iterator of inputs: 16 clips)
    first = subprocess.Popen(
        fv("classify", *ctx.clips, "-m", ctx.tiny, "-o", out, "-q"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # the second starts while the first runs (once the first has its output open)
    _wait_for(lambda: out.with_name(out.name + ".partial").exists() or first.poll() is not None, 60)
    second = measure(fv("classify", ctx.clips[0], ctx.clips[1], "-m", ctx.tiny, "-o", out, "-q"), timeout=300)
    second.pop("stdout")
    _, ferr = first.communicate(timeout=600)
    return {
        "second": second,
        "first_rc": first.returncode,
        "first_stderr": summary(ferr),
        "final_rows": _parquet_rows(out),
        "load": load_avg(),
    }


@case
def stale_lock(ctx):
    out = ctx.work / "stale" / "r.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    for p in out.parent.glob("*"):
        p.unlink()
    p = subprocess.Popen(fv("classify", *ctx.clips, "-m", ctx.tiny, "-o", out, "-q"))
    _wait_for(lambda: out.with_name(out.name + ".lock").exists(), 60)
    time.sleep(1)
    p.kill()
    p.wait()
    left = out.with_name(out.name + ".lock").exists()
    r = measure(fv("classify", ctx.clips[0], "-m", ctx.tiny, "-o", out, "-q", "--force"))
    r.pop("stdout")
    return {"lock_left_by_kill": left, **r, "lock_after": out.with_name(out.name + ".lock").exists()}


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]).returncode == 0


def _disk_full(ctx, suffix: str) -> dict:
    mnt = ctx.work / f"full{suffix}"
    if not _tmpfs(mnt, "256k"):
        return {"skipped": "cannot mount a tmpfs (not root?)"}
    try:
        out = mnt / f"r{suffix}"
        first = subprocess.run(fv("classify", ctx.clips[0], "-m", ctx.tiny, "-o", out, "-q"), capture_output=True)
        earlier = out.read_bytes() if out.exists() else b""
        # fill the rest of the filesystem, leaving ~2 KiB
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        os.truncate(mnt / "filler", max(0, (mnt / "filler").stat().st_size - 6144))
        r = measure(fv("classify", *ctx.clips[:8], "-m", ctx.tiny, "-o", out, "-q", "--force"))
        r.pop("stdout")
        return {
            "first_rc": first.returncode,
            **r,
            "earlier_file_intact": out.exists() and out.read_bytes() == earlier and bool(earlier),
            "lock_left": out.with_name(out.name + ".lock").exists(),
            "left_in_folder": sorted(p.name for p in mnt.iterdir()),
        }
    finally:
        subprocess.run(["umount", str(mnt)])


@case
def disk_full_jsonl(ctx):
    return _disk_full(ctx, ".jsonl")


@case
def disk_full_parquet(ctx):
    return _disk_full(ctx, ".parquet")


@case
def watch_sighup(ctx):
    out = ctx.work / "watch" / "w.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    for p in out.parent.glob("*"):
        p.unlink()
    long_clip = ctx.work / "clips" / "long.mp4"
    if not long_clip.exists():
        write_clip(long_clip, synthetic_frames(1500, 48, 64, seed=9))
    p = subprocess.Popen(
        fv("watch", long_clip, "-m", ctx.tiny, "--realtime", "-o", out, "-q"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(lambda: _partial_rows(out) not in ("absent", 0), 60)
    p.send_signal(signal.SIGHUP)
    _, stderr = p.communicate(timeout=120)
    last = None
    if out.exists():
        lines = out.read_text().splitlines()
        last = json.loads(lines[-1]).get("type") if lines else None
    return {
        "rc": p.returncode if p.returncode >= 0 else 128 - p.returncode,
        **summary(stderr),
        "output": "finished" if out.exists() else f"partial rows {_partial_rows(out)}",
        "last_record_type": last,
        "lock_left": out.with_name(out.name + ".lock").exists(),
    }


# -- memory bombs ----------------------------------------------------------------------------------
def _bomb(ctx, side: int) -> dict:
    clip = ctx.work / "bombs" / f"h264_{side}.mp4"
    clip.parent.mkdir(parents=True, exist_ok=True)
    if not clip.exists():
        write_h264(clip, side, side, frames=3)
    r = classify(ctx, ctx.bundled, "--max-memory", 16, clip=clip, timeout=600)
    r["file_bytes"] = clip.stat().st_size
    return r


@case
def h264_8192(ctx):
    return _bomb(ctx, 8192)


@case
def h264_12000(ctx):
    return _bomb(ctx, 12000)


# -- credentials -----------------------------------------------------------------------------------
SPELLINGS = [
    f"http://admin:{SECRET}@127.0.0.1:9/v.mp4",
    "http://admin:P@ssword@127.0.0.1:9/v.mp4",
    "rtsp://admin:pa/ss@127.0.0.1:9/stream",
    "rtsp://admin:pa:ss@127.0.0.1:9/stream",
    "rtsp://admin:p%40ss@127.0.0.1:9/stream",
    "rtsp://:secret@127.0.0.1:9/stream",
    "rtsp://admin:secret@[::1]:9/stream?x=a@b",
]


@case
def redact_spellings(ctx):
    code = (
        "import json, sys; from fvdeploy.io.sources import redact; "
        "print(json.dumps([redact(u) for u in json.loads(sys.argv[1])]))"
    )
    p = subprocess.run([PY, "-c", code, json.dumps(SPELLINGS)], capture_output=True, text=True, timeout=120)
    out = json.loads(p.stdout)
    secrets = ["P@ss/w:rd%2F", "P@ssword", "pa/ss", "pa:ss", "p%40ss", "secret"]
    return {
        "redacted": out,
        "leaks": [u for u in out if any(s in u for s in secrets) or "ss/w" in u or "ssword" in u or "/ss@" in u],
    }


@case
def failing_url_record(ctx):
    url = f"http://admin:{SECRET}@127.0.0.1:9/v.mp4"
    p = subprocess.run(fv("-v", "classify", url, "-m", ctx.tiny, "--json"), capture_output=True, text=True, timeout=120)
    leaked = [part for part in ("w:rd", "ss/w", "%2F", "P@ss") if part in p.stdout + p.stderr]
    rec = json.loads(p.stdout.splitlines()[0]) if p.stdout.strip() else {}
    return {"rc": p.returncode, **summary(p.stderr), "record_path": rec.get("path"), "leaked": leaked}


@case
def watch_failing_url(ctx):
    url = f"rtsp://admin:{SECRET}@127.0.0.1:9/stream"
    p = subprocess.run(
        fv("-v", "watch", url, "-m", ctx.tiny, "--json", "--retries", 0), capture_output=True, text=True, timeout=120
    )
    leaked = [part for part in ("w:rd", "ss/w", "%2F", "P@ss") if part in p.stdout + p.stderr]
    return {"rc": p.returncode, **summary(p.stderr), "stdout": p.stdout[:600], "leaked": leaked}


# -- folders ---------------------------------------------------------------------------------------
@case
def symlinked_subfolder(ctx):
    d = ctx.work / "folders" / "linked"
    if d.exists():
        shutil.rmtree(d)
    real = ctx.work / "folders" / "real_videos"
    real.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ctx.clips[0], real / "v.mp4")
    d.mkdir(parents=True)
    (d / "sub").symlink_to(real, target_is_directory=True)
    (d / "loop").symlink_to(d, target_is_directory=True)
    r = measure(fv("classify", d, "-m", ctx.tiny, "--json"), timeout=120)
    paths = [json.loads(x)["path"] for x in r["stdout"].splitlines() if x.strip()]
    return {"rc": r["rc"], **{k: r[k] for k in ("stderr_lines", "stderr_first", "traceback")}, "paths": paths}


@case
def dangling_link(ctx):
    d = ctx.work / "folders" / "dangling"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    shutil.copy2(ctx.clips[0], d / "v.mp4")
    (d / "gone.mp4").symlink_to(d / "nowhere.mp4")
    r = measure(fv("classify", d, "-m", ctx.tiny, "--json"), timeout=120)
    paths = [json.loads(x)["path"] for x in r["stdout"].splitlines() if x.strip()]
    return {"rc": r["rc"], **{k: r[k] for k in ("stderr_lines", "stderr_first", "traceback")}, "paths": paths}


# -- API ---------------------------------------------------------------------------------------------
API_PRELUDE = """
import numpy as np
from fvdeploy.runtime import Classifier
clf = Classifier.load({model!r}, device="cpu")
def frames():
    for i in range(5):
        yield np.zeros((48, 64, 3), np.uint8)
    raise ValueError("camera unplugged")
"""


def _api(ctx, body: str) -> dict:
    code = API_PRELUDE.format(model=str(ctx.tiny)) + body
    p = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=300)
    return {"rc": p.returncode, "stdout": p.stdout.strip()[:400], **summary(p.stderr)}


@case
def api_raising_iterator(ctx):
    return _api(
        ctx,
        "try:\n    clf.classify(frames(), fps=25)\nexcept Exception as e:\n    print(type(e).__name__, '|', e)\n",
    )


@case
def api_classify_many_raising_iterator(ctx):
    return _api(ctx, "for r in clf.classify_many([frames()]):\n    print('error record:', r.error)\n")


@case
def api_classify_many_not_iterable(ctx):
    return _api(
        ctx,
        "try:\n    list(clf.classify_many(5))\nexcept Exception as e:\n"
        "    from fvdeploy.errors import FvdeployError\n"
        "    print(type(e).__name__, isinstance(e, FvdeployError), '|', e)\n",
    )


@case
def raw_pickle(ctx):
    import pickle

    src = ctx.work / "pickles"
    src.mkdir(exist_ok=True)
    with open(src / "raw.pth", "wb") as f:
        pickle.dump({"state_dict": {"a": [1.0]}}, f, protocol=4)
    r = measure(fv("import-checkpoint", src / "raw.pth", "--out-dir", src / "out"), timeout=300)
    r.pop("stdout")
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="write the list of results here (JSON)")
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    ap.add_argument("--only", help="comma-separated case names")
    ap.add_argument("--skip", default="", help="comma-separated case names to leave out")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else list(CASES)
    skip = set(filter(None, args.skip.split(",")))
    work = args.work or Path(tempfile.mkdtemp(prefix="fvdeploy-faults-"))
    ctx = Ctx(work)
    results = []
    for name in names:
        if name in skip:
            continue
        t0 = time.perf_counter()
        try:
            r = CASES[name](ctx)
        except Exception as e:  # noqa: BLE001  (the sweep goes on; the case reports its failure)
            r = {"script_error": f"{type(e).__name__}: {e}"}
        r = {"case": name, **r, "case_s": round(time.perf_counter() - t0, 1)}
        print(json.dumps(r), flush=True)
        results.append(r)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
