"""``fvdeploy bench serve``: the service under load, measured from outside as a client sees it.

A real ``fvdeploy serve`` process (the CLI, on a free port on 127.0.0.1) is started; ``streams``
streams each watch a file paced in real time (like cameras) for ``seconds`` seconds, with a
listener on each one's events; meanwhile ``clients`` threads each send ``requests`` classify
uploads one after another, and a prober asks ``/healthz`` every 0.25 s. Reported: classify
latency p50/p95 and requests/s, frames/s (streams and classify), the server's peak RSS (its
``VmHWM``), the slowest ``/healthz`` answer, errors, and per stream the events its listener
received against the events its ``end`` record counts (every one delivered or not). The server
is stopped with SIGTERM at the end and must stop gracefully (exit 143, 128 + SIGTERM). Clients are plain ``urllib``/``http.client``.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FvdeployError

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def stream_clip(folder: Path, seconds: float) -> tuple[Path, Path]:
    """A clip of at least ``seconds`` s at 25 fps made of the bundled samples back to back (four
    actions of 1.28 s: events for the bundled model), and one sample for the classify requests.
    Falls back to a moving square where the samples are not beside the package."""
    import cv2

    from ..io.sources import read_video

    samples = sorted(SAMPLES.glob("*.mp4"))
    if not samples:  # an installed wheel has no samples/: generated content (few events, if any)
        from .clips import looped_clip

        samples = [looped_clip(folder / "request.mp4", 32, 96, 64)]
    parts = [read_video(str(p)) for p in samples]
    request = samples[0]
    frames, n = [], 0
    while n < seconds * 25 + 25:
        for p in parts:
            frames.append(p)
            n += len(p)
    path = folder / "stream.mp4"
    _write(path, np.concatenate(frames), cv2)
    return path, request


def _write(path: Path, frames: np.ndarray, cv2: Any) -> None:
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MiB, from /proc (Linux)."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _request(base: str, method: str, path: str, body: bytes | None = None, json_body: Any = None, timeout: float = 600):
    headers = {}
    if json_body is not None:
        body = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class _Listener(threading.Thread):
    def __init__(self, port: int, stream_id: str, limit_s: float) -> None:
        super().__init__(daemon=True)
        self.port, self.stream_id, self.limit_s = port, stream_id, limit_s
        self.records: list[dict] = []
        self.error: str | None = None

    def run(self) -> None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.limit_s)
            conn.request("GET", f"/v1/streams/{self.stream_id}/events")
            resp = conn.getresponse()
            deadline = time.monotonic() + self.limit_s
            while time.monotonic() < deadline:
                line = resp.readline()
                if not line:
                    break
                if line.startswith(b"data: "):
                    self.records.append(json.loads(line[6:]))
                    if self.records[-1]["type"] == "end":
                        break
            conn.close()
        except OSError as e:
            self.error = f"{type(e).__name__}: {e}"


def bench_serve(
    *,
    model: str | None,
    device: str,
    clients: int,
    requests: int,
    streams: int,
    seconds: float,
    window_s: float = 1.28,
    stride_s: float = 0.64,
    workers: int = 2,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the benchmark (see the module docstring); returns the figures as a dict."""
    with tempfile.TemporaryDirectory(prefix="fvdeploy-bench-serve-") as tmp:
        folder = Path(tmp)
        clip, request_clip = stream_clip(folder, seconds)
        payload = request_clip.read_bytes()
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        cmd = [
            sys.executable,
            "-m",
            "fvdeploy",
            "serve",
            "--port",
            str(port),
            "--device",
            device,
            "--allow-root",
            str(folder),
            "--max-streams",
            str(streams),
            "--max-jobs",
            str(max(16, clients * 2)),
            "--workers",
            str(workers),
        ]
        if model:
            cmd += ["--model", model]
        t_start = time.monotonic()
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            while True:
                if server.poll() is not None:
                    raise FvdeployError(
                        f"the server did not start: {(server.stderr.read() if server.stderr else b'').decode()[-500:]}"
                    )
                try:
                    if _request(base, "GET", "/readyz", timeout=5)[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() - t_start > 300:
                    raise FvdeployError("the server did not become ready within 300 s")
                time.sleep(0.2)
            startup_s = time.monotonic() - t_start
            log(f"server ready in {startup_s:.1f} s (pid {server.pid})")
            figures = _load(
                base, port, server.pid, clip, payload, clients, requests, streams, seconds, window_s, stride_s, log
            )
            figures["server_startup_s"] = round(startup_s, 2)
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
        figures["server_exit_code"] = server.returncode
        figures["ok"] = bool(figures["ok"] and server.returncode == 128 + signal.SIGTERM)
        return figures


def _load(base, port, pid, clip, payload, clients, requests, streams, seconds, window_s, stride_s, log) -> dict:
    stop = threading.Event()
    peak_rss = [0.0]
    healthz: list[float] = []

    def probe() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            try:
                _request(base, "GET", "/healthz", timeout=60)
                healthz.append(time.perf_counter() - t)
            except OSError:
                healthz.append(float("inf"))
            try:
                peak_rss[0] = max(peak_rss[0], _rss_mib(pid)[0])
            except OSError:
                pass
            stop.wait(0.25)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    listeners, errors = [], []
    t0 = time.monotonic()
    for _ in range(streams):
        status, body = _request(
            base,
            "POST",
            "/v1/streams",
            json_body={"path": str(clip), "realtime": True, "window_s": window_s, "stride_s": stride_s},
        )
        if status != 201:
            errors.append(f"POST /v1/streams: {status} {body[:200]!r}")
            continue
        listener = _Listener(port, json.loads(body)["id"], seconds + 120)
        listener.start()
        listeners.append(listener)
    latencies: list[float] = []
    frames = [0]
    lock = threading.Lock()

    def client(i: int) -> None:
        for _ in range(requests):
            t = time.perf_counter()
            status, body = _request(base, "POST", f"/v1/classify?name=client{i}.mp4", body=payload)
            dt = time.perf_counter() - t
            with lock:
                if status == 200:
                    latencies.append(dt)
                    frames[0] += json.loads(body)["num_frames"]
                else:
                    errors.append(f"POST /v1/classify: {status} {body[:200]!r}")

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    tc = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    clients_s = time.monotonic() - tc
    log(f"{clients} clients x {requests} requests done in {clients_s:.1f} s")
    for listener in listeners:
        listener.join(timeout=max(1.0, seconds + 120 - (time.monotonic() - t0)))
    streams_s = time.monotonic() - t0
    stop.set()
    prober.join(timeout=60)
    try:
        _, hwm = _rss_mib(pid)
    except OSError:
        hwm = peak_rss[0]
    per_stream, stream_frames, dropped = [], 0, 0
    for listener in listeners:
        recs = listener.records
        end = recs[-1] if recs and recs[-1]["type"] == "end" else None
        got = sum(r["type"] == "event" for r in recs)
        per_stream.append(
            {
                "events_received": got,
                "events_reported": None if end is None else end["events"],
                "windows": sum(r["type"] == "window" for r in recs),
                "frames": None if end is None else end["frames"],
                "dropped_frames": None if end is None else end["dropped_frames"],
                "error": listener.error
                or (None if end is None else end["error"])
                or (None if end else "no end record"),
            }
        )
        if end is not None:
            stream_frames += end["frames"]
            dropped += end["dropped_frames"]
    delivered = (
        all(s["events_reported"] is not None and s["events_received"] == s["events_reported"] for s in per_stream)
        and len(per_stream) == streams
    )
    lat = np.asarray(latencies) if latencies else np.asarray([np.nan])
    out = {
        "clients": clients,
        "requests_per_client": requests,
        "streams": streams,
        "seconds": seconds,
        "latency_p50_s": round(float(np.percentile(lat, 50)), 3),
        "latency_p95_s": round(float(np.percentile(lat, 95)), 3),
        "requests_per_s": round(len(latencies) / clients_s, 3),
        "classify_frames_per_s": round(frames[0] / clients_s, 1),
        "stream_frames_per_s": round(stream_frames / streams_s, 1),  # read from the sources
        "stream_model_frames_per_s": round((stream_frames - dropped) / streams_s, 1),  # that reached the model
        "stream_dropped_frames": dropped,
        "peak_rss_mib": round(max(hwm, peak_rss[0]), 1),
        "slowest_healthz_s": round(max(healthz), 4) if healthz else None,
        "healthz_probes": len(healthz),
        "errors": errors,
        "per_stream": per_stream,
        "events_delivered": delivered,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }
    out["ok"] = not errors and delivered and all(s["error"] is None for s in per_stream)
    return out
