"""Real servers for the service's tests, all on 127.0.0.1, each bounded and stopped by its test:
``fvdeploy serve``'s app on uvicorn in a thread (``ServiceThread``), a static file server that can
trickle or die half-way (``FileServer``), an MJPEG "camera" that can be killed (``Camera``), and
a small Server-Sent Events reader."""

from __future__ import annotations

import json
import socket
import threading
import time
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import httpx
from clips import synthetic_frames


class QuietHTTPServer(ThreadingHTTPServer):
    """A client that goes away mid-file (the tests' point) is not an error worth a traceback."""

    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceThread:
    """``fvdeploy.serve``'s app served by uvicorn in a daemon thread (the same ``build_server`` as
    the CLI), with a loaded :class:`~fvdeploy.serve.service.Service`."""

    def __init__(self, settings) -> None:
        from fvdeploy.serve.server import build_server
        from fvdeploy.serve.service import Service

        settings.port = settings.port if settings.port != 8080 else free_port()
        self.settings = settings.validate()
        self.service = Service.load(settings)
        self.server = build_server(settings, self.service)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{settings.port}"

    def __enter__(self) -> ServiceThread:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kw)


class FileServer:
    """Serves ``folder`` over HTTP. ``trickle_s``: seconds between pieces of ``piece`` bytes (a
    slow source); ``die_after``: bytes sent before the connection is cut (a source that dies)."""

    def __init__(self, folder: Path, trickle_s: float = 0.0, die_after: int | None = None, piece: int = 4096) -> None:
        owner = self
        self.stop_event = threading.Event()

        class Handler(SimpleHTTPRequestHandler):
            """Range requests answered as every real file server does (FFmpeg seeks with them:
            without them an MP4 whose index is at the end sometimes failed to open)."""

            left: int | None = None  # bytes of the requested range still to send

            def log_message(self, *args: Any) -> None:
                pass

            def send_head(self) -> Any:
                spec = self.headers.get("Range", "")
                path = Path(self.translate_path(self.path))
                if not spec.startswith("bytes=") or not path.is_file() or "," in spec:
                    return super().send_head()
                size = path.stat().st_size
                first, _, last = spec[6:].partition("-")
                start = int(first) if first else max(0, size - int(last))
                end = min(size - 1, int(last)) if first and last else size - 1
                if start >= size:
                    self.send_error(416)
                    return None
                f = open(path, "rb")
                f.seek(start)
                self.send_response(206)
                self.send_header("Content-Type", self.guess_type(str(path)))
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.send_header("Content-Length", str(end - start + 1))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                self.left = end - start + 1
                return f

            def copyfile(self, source: Any, outputfile: Any) -> None:
                sent = 0
                while not owner.stop_event.is_set():
                    want = piece if self.left is None else min(piece, self.left - sent)
                    chunk = source.read(want) if want > 0 else b""
                    if not chunk:
                        return
                    if die_after is not None and sent + len(chunk) > die_after:
                        outputfile.write(chunk[: max(0, die_after - sent)])
                        outputfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    outputfile.write(chunk)
                    sent += len(chunk)
                    if trickle_s:
                        owner.stop_event.wait(trickle_s)

        self.server = QuietHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stop_event.set()
        self.server.shutdown()
        self.server.server_close()


class Camera:
    """An IP camera: multipart JPEG frames at ``fps`` until ``kill()`` cuts every connection and
    stops listening (the source dies for good)."""

    def __init__(self, fps: float = 25.0) -> None:
        jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in synthetic_frames(40, 48, 64, seed=4)]
        owner = self
        self.dead = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not owner.dead.is_set() and i < 100_000:
                        jpg = jpegs[i % len(jpegs)]
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                            + jpg
                            + b"\r\n"
                        )
                        i += 1
                        time.sleep(1.0 / fps)
                except OSError:
                    pass

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def kill(self) -> None:
        self.dead.set()
        self.server.shutdown()
        self.server.server_close()


def read_events(
    client: httpx.Client, path: str, *, limit_s: float = 60.0, until_end: bool = True, into: list | None = None
) -> list[dict]:
    """The records of an event stream (``data:`` lines as JSON) until its ``end`` record, the
    server ending it, or ``limit_s``; appended to ``into`` as they come when given."""
    records: list[dict] = [] if into is None else into
    deadline = time.monotonic() + limit_s
    with client.stream("GET", path, timeout=httpx.Timeout(limit_s)) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                records.append(json.loads(line[6:]))
                if until_end and records[-1]["type"] == "end":
                    break
            if time.monotonic() > deadline:
                break
    return records


class Listening(threading.Thread):
    """``read_events`` in a thread: ``records`` grows as they arrive; ``ended_at`` is when the
    ``end`` record came (monotonic)."""

    def __init__(self, base_url: str, path: str, limit_s: float = 60.0, **client_kw: Any) -> None:
        super().__init__(daemon=True)
        self.base_url, self.path, self.limit_s, self.client_kw = base_url, path, limit_s, client_kw
        self.records: list[dict] = []
        self.ended_at: float | None = None

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=self.limit_s, **self.client_kw) as c:
            read_events(c, self.path, limit_s=self.limit_s, into=self.records)
        if self.records and self.records[-1]["type"] == "end":
            self.ended_at = time.monotonic()

    def wait_for(self, kind: str, limit_s: float = 30.0) -> bool:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if any(r["type"] == kind for r in self.records):
                return True
            time.sleep(0.05)
        return False


def without(record: dict, *keys: str) -> dict:
    return {k: v for k, v in record.items() if k not in keys}
