"""Real servers on 127.0.0.1 for the live-stream tests, each bounded and stopping by itself:

- ``RtspServer``: GStreamer's RTSP server (``tests/rtsp_server.py``, run with the system Python,
  which has ``gi``), 25 fps H.264; ``pause()``/``resume()`` SIGSTOP/SIGCONT it (a stalled server).
- ``StallingHttpServer``: serves one file over HTTP (byte ranges too) and stops sending after
  ``stall_after`` bytes, holding the connection open without a byte for ``hold_s`` seconds.
- ``HlsProducer``: ffmpeg writing a live HLS playlist into a folder served over HTTP; ``kill()``
  is a producer that dies (the playlist stays, stale).

``missing_rtsp()`` / ``missing_ffmpeg()`` give the reason to skip where a tool is not installed
(``.ci/run`` installs them as root on Debian)."""

from __future__ import annotations

import functools
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@functools.cache
def missing_ffmpeg() -> str | None:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        return "needs ffmpeg and ffprobe (Debian: apt-get install ffmpeg; .ci/run installs it)"
    return None


@functools.cache
def missing_rtsp() -> str | None:
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
        "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
        "assert all(Gst.ElementFactory.find(e) for e in ('videotestsrc', 'x264enc', 'rtph264pay'))"
    )
    try:
        r = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"needs {SYSTEM_PYTHON} with GStreamer's RTSP server ({e})"
    if r.returncode != 0:
        return (
            "needs GStreamer's RTSP server for the system Python (Debian: python3-gi gir1.2-gst-rtsp-server-1.0 "
            "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly; .ci/run installs them)"
        )
    return None


class RtspServer:
    """``rtsp://127.0.0.1:PORT/live`` at ``fps`` for at most ``seconds`` (then it quits by itself)."""

    def __init__(self, fps: int = 25, seconds: float = 60.0) -> None:
        self.fps, self.seconds = fps, seconds
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/live"

    def start(self) -> "RtspServer":
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(HERE / "rtsp_server.py"), str(self.port), str(self.fps), str(self.seconds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "ready" once it listens (the process quits by itself)
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"the RTSP server did not start: {line!r}")
        return self

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self) -> "RtspServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class StallingHttpServer:
    """Serves ``path`` at ``/NAME`` and stops sending after ``stall_after`` bytes of the file:
    the connection stays open, silent, for ``hold_s`` seconds (or until ``stop()``), then closes."""

    def __init__(self, path: Path, stall_after: int, hold_s: float = 30.0) -> None:
        self.path, self.stall_after, self.hold_s = Path(path), stall_after, hold_s
        self.data = self.path.read_bytes()
        self.stopping = threading.Event()
        self.port = free_port()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                start, end = 0, len(owner.data) - 1
                rng = self.headers.get("Range", "")
                if rng.startswith("bytes="):
                    a, _, b = rng[6:].partition("-")
                    start, end = int(a or 0), int(b) if b else end
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(owner.data)}")
                else:
                    self.send_response(200)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "video/mp4" if owner.path.suffix == ".mp4" else "video/mp2t")
                self.send_header("Content-Length", str(end - start + 1))
                self.end_headers()
                try:
                    pos = start
                    while pos <= end and not owner.stopping.is_set():
                        if pos >= owner.stall_after:  # the producer hangs: nothing more, connection open
                            owner.stopping.wait(owner.hold_s)
                            return
                        chunk = owner.data[pos : min(end + 1, owner.stall_after, pos + 16384)]
                        self.wfile.write(chunk)
                        pos += len(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = _Quiet(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.path.name}"

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "StallingHttpServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class FolderServer:
    """A folder over HTTP on 127.0.0.1 (a thread; ``stop()`` ends it)."""

    def __init__(self, folder: Path) -> None:
        folder = str(folder)

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=folder, **kwargs)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = _Quiet(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class HlsProducer:
    """ffmpeg writes a live HLS playlist (``live.m3u8``, 1-s segments, the last 4 listed) of a test
    pattern at ``fps`` into ``folder`` in real time, for at most ``seconds``; the folder is served
    over HTTP. ``kill()``: the producer dies and the playlist goes stale."""

    def __init__(self, folder: Path, fps: int = 25, seconds: float = 60.0) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fps, self.seconds = fps, seconds
        self.http = FolderServer(self.folder)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return self.http.url("live.m3u8")

    def start(self, timeout_s: float = 20.0) -> "HlsProducer":
        self.proc = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
             f"testsrc=size=160x120:rate={self.fps}", "-t", str(self.seconds), "-c:v", "libx264",
             "-preset", "ultrafast", "-g", str(self.fps), "-sc_threshold", "0", "-f", "hls", "-hls_time", "1",
             "-hls_list_size", "4", "-hls_flags", "delete_segments", str(self.folder / "live.m3u8")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        playlist = self.folder / "live.m3u8"
        # a player starts 3 segments from the end: wait until the playlist lists them
        while not (playlist.exists() and playlist.read_text().count("#EXTINF") >= 3):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("the HLS producer wrote no playlist")
            time.sleep(0.1)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        self.kill()
        self.http.stop()

    def __enter__(self) -> "HlsProducer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def make_clip(path: Path, *args: str, frames: int = 250, fps: int = 25, size: str = "160x120") -> Path:
    """An ffmpeg test-pattern clip (``args`` go before the output: codecs, muxer flags)."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         f"testsrc=size={size}:rate={fps}", "-frames:v", str(frames), *args, str(path)],
        check=True,
        timeout=120,
    )  # fmt: skip
    return path


def audio_first_clip(path: Path, video_start: float = 3.023) -> Path:
    """8 s of audio from 0 s, 4 s of 25-fps video from ``video_start`` (an MP4: the first video
    frame's pts is ``video_start`` rounded to the frame grid, the container starts at 0)."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=8",
         "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=4", "-map", "0:a", "-map", "1:v",
         "-filter:v", f"setpts=PTS-STARTPTS+{video_start}/TB", "-fps_mode", "passthrough", "-c:v", "libx264",
         "-preset", "ultrafast", "-c:a", "aac", str(path)],
        check=True, timeout=120,
    )  # fmt: skip
    return path


def ffprobe(path: Path, entries: str) -> dict:
    """``ffprobe -select_streams v:0 -show_entries ENTRIES`` as JSON."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", entries, "-of", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return json.loads(out)


def framemd5(clip: Path, *cut: str) -> list[str]:
    """The MD5 of each video frame of ``ffmpeg [cut] -i clip`` (as a user cuts it, audio kept: ffmpeg's
    default mapping puts the video first, output stream 0)."""
    out = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", *cut, "-i", str(clip), "-f", "framemd5", "-"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    rows = [line.split(",") for line in out.splitlines() if line and not line.startswith("#")]
    return [row[-1].strip() for row in rows if row[0].strip() == "0"]


def cut_frames(clip: Path, start_s: float, end_s: float) -> list[int]:
    """Which frames of ``clip`` ``ffmpeg -ss START -to END -i clip`` gives (matched by their MD5)."""
    full = framemd5(clip)
    return [full.index(h) for h in framemd5(clip, "-ss", str(start_s), "-to", str(end_s)) if h in full]
