"""Network sources: a real HTTP MJPEG server on 127.0.0.1 (started by the test) is read through
OpenCV's FFmpeg backend, survives a server restart (reconnect, a gap, no crash), and stops cleanly;
an unreachable URL is a one-line error."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import pytest
from clips import synthetic_frames
from conftest import run_cli, save_tiny_model

from fvdeploy.errors import VideoError
from fvdeploy.records import Gap, StreamEnd, WindowResult
from fvdeploy.runtime import Classifier
from fvdeploy.watch import watch


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny", seed=1)


class MjpegServer:
    """multipart/x-mixed-replace JPEG frames at ``fps``, like an IP camera; ``stop()`` closes every
    connection (the client sees the stream drop), ``start()`` serves again on the same port."""

    def __init__(self, fps: float = 50.0) -> None:
        self.fps = fps
        self.jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in synthetic_frames(40, 48, 64, seed=4)]
        self.port = _free_port()
        self.server: ThreadingHTTPServer | None = None
        self.stopping = threading.Event()
        self.served = 0

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not owner.stopping.is_set():
                        jpg = owner.jpegs[i % len(owner.jpegs)]
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                            + jpg
                            + b"\r\n"
                        )
                        owner.served += 1
                        i += 1
                        time.sleep(1.0 / owner.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.stopping.clear()
        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reader_threads():
    return [t for t in threading.enumerate() if t.name.startswith("fvdeploy-read")]


def test_an_mjpeg_stream_is_read_survives_a_restart_and_stops_cleanly(model_dir):
    server = MjpegServer()
    server.start()
    try:
        clf = Classifier.load(model_dir, device="cpu")
        gen = watch(clf, server.url, window_frames=12, stride_frames=6, retries=20, retry_delay_s=0.2)
        before, after, gaps = [], [], []
        restart = None
        deadline = time.time() + 120
        for item in gen:
            assert time.time() < deadline, "the watch stalled"
            if isinstance(item, WindowResult):
                (after if gaps else before).append(item)
                if len(before) == 3 and restart is None:
                    server.stop()  # the camera goes away ...
                    restart = threading.Timer(1.0, server.start)  # ... and comes back a second later
                    restart.start()
                if len(after) == 3:
                    break
            elif isinstance(item, Gap):
                gaps.append(item)
            elif isinstance(item, StreamEnd):
                pytest.fail(f"the stream ended instead of reconnecting: {item.error}")
        gen.close()  # stops cleanly: the reader thread ends and releases the connection
        assert not _reader_threads()
    finally:
        server.stop()
    assert before[0].time_basis == "clock"  # MJPEG carries no timestamps
    assert len(gaps) == 1 and gaps[0].attempts >= 1 and gaps[0].end_s > gaps[0].start_s
    # windows never span the gap: the ones after it start at or after the frames delivered before it
    assert after[0].start_frame >= gaps[0].after_frame
    assert after[0].start_s >= gaps[0].end_s - 1e-6
    # (a live source drops frames when the device falls behind, so a window may span more source frames)
    assert all(w.end_frame - w.start_frame >= 12 and not w.partial for w in before[:3] + after)


def test_a_stream_that_never_comes_back_ends_with_an_error(model_dir):
    server = MjpegServer()
    server.start()
    clf = Classifier.load(model_dir, device="cpu")
    items = []
    try:
        for item in watch(clf, server.url, window_frames=8, stride_frames=4, retries=2, retry_delay_s=0.1):
            items.append(item)
            if len([i for i in items if isinstance(i, WindowResult)]) == 2 and server.server is not None:
                server.stop()
    finally:
        server.stop()
    end = items[-1]
    assert isinstance(end, StreamEnd) and "2 reconnection attempts failed" in end.error
    assert not _reader_threads()


def test_an_unreachable_url_is_a_one_line_error(model_dir):
    url = f"http://127.0.0.1:{_free_port()}/nothing.mjpg"
    clf = Classifier.load(model_dir, device="cpu")
    with pytest.raises(VideoError, match="cannot open this URL .unreachable: .*refused"):
        watch(clf, url, window_frames=8, stride_frames=4)
    r = run_cli("watch", url, "--model", model_dir, "--device", "cpu")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot open this URL" in lines[0] and "Traceback" not in r.stderr
    # credentials in a URL never reach the output
    r = run_cli("watch", url.replace("//", "//user:secret@"), "--model", model_dir)
    assert r.returncode == 1 and "secret" not in r.stderr and "user:***@" in r.stderr
