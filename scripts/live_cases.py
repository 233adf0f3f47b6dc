"""The input half of issue 22, case by case, against real servers on 127.0.0.1 (tests/live_servers.py).

    .venv/bin/python scripts/live_cases.py [CASE ...]     # cases: rtsp stall http-mp4 http-ts hls audio dash hdr growing

Each case runs the real CLI (``.venv/bin/fvdeploy``) in a subprocess with a wall-clock limit and
prints what it gave: exit status, seconds, the records that matter. Needs ffmpeg and, for the RTSP
cases, GStreamer's RTSP server for /usr/bin/python3 (see .ci/run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from live_servers import (  # noqa: E402
    FolderServer,
    HlsProducer,
    RtspServer,
    StallingHttpServer,
    audio_first_clip,
    ffprobe,
    framemd5,
    make_clip,
)

FVDEPLOY = os.environ.get("FVDEPLOY", str(REPO / ".venv" / "bin" / "fvdeploy"))


def run(args: list[str], limit_s: float, during=None) -> tuple[int | None, float, list[dict], str]:
    """fvdeploy ARGS; SIGINT at ``limit_s`` (then SIGKILL 15 s later). ``during(proc, first_window)``
    runs in a thread (``first_window``: an Event set when the first window record arrived)."""
    t0 = time.monotonic()
    proc = subprocess.Popen([FVDEPLOY, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    errs: list[str] = []
    first_window = threading.Event()

    def read_out():
        for line in proc.stdout:
            lines.append(line)
            if '"type": "window"' in line:
                first_window.set()

    readers = [
        threading.Thread(target=read_out, daemon=True),
        threading.Thread(target=lambda: errs.extend(proc.stderr), daemon=True),
    ]
    for t in readers:
        t.start()
    if during is not None:
        threading.Thread(target=during, args=(proc, first_window), daemon=True).start()
    try:
        proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        errs.append(f"[interrupted by the script at {limit_s:.0f} s]\n")
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for t in readers:
        t.join(timeout=5)
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pass
    return proc.returncode, time.monotonic() - t0, records, "".join(errs).strip()


def show(name: str, rc, elapsed: float, records: list[dict], err: str, keys=None) -> None:
    print(f"\n== {name}: exit {rc} after {elapsed:.1f} s; load {os.getloadavg()[0]:.2f}")
    for r in records:
        if keys is None or r.get("type") in keys:
            r = {k: v for k, v in r.items() if k not in ("topk", "clusters", "segments", "logits")}
            print("  ", json.dumps(r)[:300])
    for line in err.splitlines()[-6:]:
        print("   stderr:", line[:300])


def windows_summary(records: list[dict]) -> None:
    wins = [r for r in records if r.get("type") == "window"]
    full = [w for w in wins if not w.get("partial")]
    sizes = [w["end_frame"] - w["start_frame"] for w in full]
    spans = [(w["start_s"], w["end_s"]) for w in full]
    print(f"   full windows: {len(full)}, frames each: {sizes}, time_basis: {sorted({w['time_basis'] for w in wins})}")
    print(f"   spans (s): {[(round(a, 2), round(b, 2)) for a, b in spans]}")


def case_rtsp(tmp: Path) -> None:
    with RtspServer(fps=25, seconds=40) as server:
        rc, el, recs, err = run(["watch", server.url, "--window", "2", "--stride", "2", "--json", "-q"], 25)
    show("1. RTSP 25 fps, --window 2 --stride 2", rc, el, recs, err, keys=("end", "gap"))
    windows_summary(recs)


def case_stall(tmp: Path) -> None:
    server = RtspServer(fps=25, seconds=120).start()
    try:

        def pause(proc, first_window):
            first_window.wait(60)
            time.sleep(3)
            server.pause()
            print(f"   [server SIGSTOPped at {time.strftime('%X')}, 3 s after the first window]")

        rc, el, recs, err = run(
            ["watch", server.url, "--window", "2", "--stride", "2", "--json", "-q", "--retries", "2"], 75, pause
        )
    finally:
        server.stop()
    show("2. RTSP server SIGSTOPped (--retries 2)", rc, el, recs, err, keys=("end", "gap", "event"))
    windows_summary(recs)


def case_stall_resume(tmp: Path) -> None:
    server = RtspServer(fps=25, seconds=120).start()
    try:

        def pause(proc, first_window):
            first_window.wait(60)
            time.sleep(3)
            server.pause()
            print(f"   [server SIGSTOPped at {time.strftime('%X')}, 3 s after the first window; SIGCONT 8 s later]")
            time.sleep(8)
            server.resume()

        rc, el, recs, err = run(["watch", server.url, "--window", "2", "--stride", "2", "--json", "-q"], 45, pause)
    finally:
        server.stop()
    show("2b. RTSP server SIGSTOPped for 8 s, then SIGCONT", rc, el, recs, err, keys=("end", "gap", "event"))
    windows_summary(recs)


def _stalled(tmp: Path, name: str, args: list[str], label: str) -> None:
    clip = make_clip(tmp / name, *args, frames=500)
    size = clip.stat().st_size
    with StallingHttpServer(clip, stall_after=size // 2, hold_s=60) as server:
        rc, el, recs, err = run(["classify", server.url, "--json"], 90)
    for r in recs:
        r.pop("segments", None)
        r.pop("topk", None)
    show(f"3. {label} over HTTP, server stalls half-way ({size} bytes)", rc, el, recs, err)


def case_http_mp4(tmp: Path) -> None:
    _stalled(
        tmp, "half.mp4", ["-c:v", "libx264", "-preset", "ultrafast", "-movflags", "+faststart"], "MP4 (500 frames)"
    )


def case_http_ts(tmp: Path) -> None:
    _stalled(tmp, "half.ts", ["-c:v", "libx264", "-preset", "ultrafast"], "MPEG-TS (500 frames)")


def case_hls(tmp: Path) -> None:
    producer = HlsProducer(tmp / "hls", fps=25, seconds=120).start()
    try:

        def kill(proc, first_window):
            first_window.wait(60)
            time.sleep(3)
            producer.kill()
            print(f"   [producer killed at {time.strftime('%X')}, 3 s after the first window]")

        rc, el, recs, err = run(
            ["watch", producer.url, "--window", "2", "--stride", "2", "--json", "-q", "--retries", "2"], 75, kill
        )
    finally:
        producer.stop()
    show("4. live HLS, producer killed (--retries 2)", rc, el, recs, err, keys=("end", "gap"))
    windows_summary(recs)


def case_audio(tmp: Path) -> None:
    clip = audio_first_clip(tmp / "audio_first.mp4")
    start = float(ffprobe(clip, "format=start_time")["format"]["start_time"])
    pts = [float(f["pts_time"]) for f in ffprobe(clip, "frame=pts_time")["frames"]]
    rc, el, recs, err = run(["classify", str(clip), "--json"], 120)
    print(f"\n== 7. audio-first file: container start {start}, first video pts {pts[0]}; exit {rc}")
    for r in recs:
        for s in r.get("segments", [])[:3]:
            f = s["start_frame"]
            print(f"   segment start_frame {f}: start_s {s['start_s']}, ffprobe pts - start {pts[f] - start:.3f}")
    # which frames ffmpeg -ss START -to END gives for each segment (frames matched by their MD5)
    full = framemd5(clip)
    for r in recs:
        for seg in r.get("segments", [])[:4]:
            cut = framemd5(clip, "-ss", str(seg["start_s"]), "-to", str(seg["end_s"]))
            got = [full.index(h) for h in cut if h in full]
            print(
                f"   ffmpeg -ss {seg['start_s']} -to {seg['end_s']}: frames {got[0] if got else None}-"
                f"{got[-1] + 1 if got else None} ({len(cut)}); segment frames {seg['start_frame']}-{seg['end_frame']}"
            )


def case_dash(tmp: Path) -> None:
    folder = tmp / "dash"
    folder.mkdir()
    make_clip(folder / "manifest.mpd", "-c:v", "libx264", "-preset", "ultrafast", "-f", "dash", frames=100)
    http = FolderServer(folder)
    try:
        rc, el, recs, err = run(["classify", http.url("manifest.mpd"), "--json"], 60)
    finally:
        http.stop()
    show("8a. DASH manifest over HTTP", rc, el, [{k: r.get(k) for k in ("path", "error")} for r in recs], err)


def case_hdr(tmp: Path) -> None:
    clip = make_clip(
        tmp / "hdr.mp4", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le",
        "-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc", frames=50,
    )  # fmt: skip
    print("\n   ffprobe:", ffprobe(clip, "stream=pix_fmt,color_transfer,color_primaries")["streams"])
    rc, el, recs, err = run(["classify", str(clip), "--json"], 60)
    show(
        "8b. HDR (PQ, BT.2020) file",
        rc,
        el,
        [{k: r.get(k) for k in ("label", "warnings", "partial")} for r in recs],
        err,
    )


def case_growing(tmp: Path) -> None:
    clip = tmp / "growing.ts"
    writer = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-re", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
         "-t", "90", "-c:v", "libx264", "-preset", "ultrafast", "-f", "mpegts", str(clip)],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30  # ffmpeg's TS output lands in 256 KiB bursts: wait for the first
        while (not clip.exists() or clip.stat().st_size == 0) and time.monotonic() < deadline:
            time.sleep(0.2)
        rc, el, recs, err = run(["classify", str(clip), "--json"], 60)
    finally:
        writer.kill()
        writer.wait()
    show(
        "8c. a file still being written (ffmpeg -re, 90 s; read once its first bytes landed)",
        rc,
        el,
        [{k: r.get(k) for k in ("num_frames", "duration_s", "partial", "warnings")} for r in recs],
        err,
    )


CASES = {
    "rtsp": case_rtsp,
    "stall": case_stall,
    "stall-resume": case_stall_resume,
    "http-mp4": case_http_mp4,
    "http-ts": case_http_ts,
    "hls": case_hls,
    "audio": case_audio,
    "dash": case_dash,
    "hdr": case_hdr,
    "growing": case_growing,
}

if __name__ == "__main__":
    names = sys.argv[1:] or list(CASES)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            (Path(tmp) / name).mkdir()
            CASES[name](Path(tmp) / name)
