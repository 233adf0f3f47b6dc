"""``fvdeploy serve`` against real parts: the app on uvicorn on 127.0.0.1 (a thread, or the real
CLI in a subprocess for SIGTERM), a real HTTP client, real files and local HTTP servers, the
tiny test model. Answers must equal ``classify --json`` / ``watch --json``; every fault of the
issue gets its status and the server keeps serving after it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from clips import synthetic_frames, write_clip
from conftest import REPO, run_cli, save_tiny_model
from serving import Camera, FileServer, Listening, ServiceThread, free_port, read_events, without

from fvdeploy.runtime.options import ClassifyOptions
from fvdeploy.serve.settings import ServeSettings

ASSETS = REPO / "tests" / "assets" / "real_video"
SAMPLES = sorted((REPO / "samples").glob("*.mp4"))
# the cases of ../shared/cases/real-video (copied into tests/assets/real_video)
CASES = [ASSETS / n for n in ("vfr.mp4", "trimmed.mp4", "corrupt_middle.mp4", "one_frame.mp4", "faststart.mp4")] + [
    ASSETS / "camcorder" / n for n in ("PHONE.MOV", "broadcast.mxf", "cam_0001.MTS")
]
IGNORED = ("timings", "run")  # identity checks ignore them (docs/design.md#records)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny", seed=1)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """20 s at 25 fps, small frames: long enough to stop, cancel and watch in real time."""
    folder = tmp_path_factory.mktemp("long")
    return write_clip(folder / "long.mp4", synthetic_frames(500, 40, 48, seed=3))


@pytest.fixture(scope="module")
def server(model_dir, long_clip):
    settings = ServeSettings(
        classify=ClassifyOptions(model=str(model_dir), device="cpu"),
        allow_root=[str(REPO / "samples"), str(ASSETS), str(long_clip.parent)],
        allow_private_urls=True,
        max_jobs=2,
        max_streams=2,
        workers=1,
        heartbeat_s=1.0,
    )
    with ServiceThread(settings) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def files():
    f = FileServer(REPO)
    yield f
    f.close()


def url_of(files: FileServer, path: Path) -> str:
    return f"{files.url}/{path.relative_to(REPO).as_posix()}"


def cli_records(*args) -> list[dict]:
    r = run_cli(*args)
    assert "Traceback" not in r.stderr, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def healthy(client: httpx.Client) -> None:
    """The server still serves: alive, ready, and classifies."""
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    r = client.post("/v1/classify", content=SAMPLES[0].read_bytes(), params={"name": "x.mp4"})
    assert r.status_code == 200 and r.json()["num_frames"] > 0, r.text


# -- answers equal the CLI's ---------------------------------------------------------------------
def test_classify_equals_cli_json_by_upload_path_and_url(client, files, model_dir):
    paths = SAMPLES + CASES
    model = ("--model", str(model_dir), "--device", "cpu")
    by_path = {r["path"]: r for r in cli_records("classify", "--json", *model, *map(str, paths))}
    by_url = {r["path"]: r for r in cli_records("classify", "--json", *model, *(url_of(files, p) for p in paths))}
    assert len(by_path) == len(by_url) == len(paths)
    for p in paths:
        expected = without(by_path[str(p)], *IGNORED)
        assert expected["error"] is None and expected["num_frames"] > 0, expected
        upload = client.post("/v1/classify", content=p.read_bytes(), params={"name": str(p)})
        assert upload.status_code == 200, (p, upload.text)
        assert without(upload.json(), *IGNORED) == expected, p
        named = client.post("/v1/classify", json={"path": str(p)})
        assert named.status_code == 200, (p, named.text)
        assert without(named.json(), *IGNORED) == expected, p
        url = url_of(files, p)
        fetched = client.post("/v1/classify", json={"url": url})
        assert fetched.status_code == 200, (p, fetched.text)
        assert without(fetched.json(), *IGNORED) == without(by_url[url], *IGNORED), p
    # options: JSON fields and query parameters, the CLI's names in snake_case
    p = CASES[0]
    expected = cli_records("classify", "--json", *model, "--top-k", "2", "--mode", "tsm", "--segments", "4", str(p))[0]
    as_json = client.post("/v1/classify", json={"path": str(p), "top_k": 2, "mode": "tsm", "segments": 4})
    as_query = client.post(
        "/v1/classify", content=p.read_bytes(), params={"name": str(p), "top_k": "2", "mode": "tsm", "segments": "4"}
    )
    for r in (as_json, as_query):
        assert r.status_code == 200, r.text
        assert without(r.json(), *IGNORED) == without(expected, *IGNORED)
        assert len(r.json()["topk"]) == 2 and r.json()["run"]["mode"] == "tsm"


def test_stream_events_equal_watch_json_by_path_and_url(client, files, model_dir, tmp_path):
    p = ASSETS / "faststart.mp4"
    options = {"window_frames": 32, "stride_frames": 16, "threshold": 0.34}
    cli = ("--model", str(model_dir), "--device", "cpu", "--window-frames", "32", "--stride-frames", "16")
    for i, source in enumerate(({"path": str(p)}, {"url": url_of(files, p)})):
        name = next(iter(source.values()))
        # the service keeps every event's evidence clip: the CLI with --clips names them the same way
        clips = ("--clips", str(tmp_path / f"clips{i}"))
        expected = cli_records("watch", "--json", *cli, *clips, "--threshold", "0.34", name)
        r = client.post("/v1/streams", json={**source, **options})
        assert r.status_code == 201, r.text
        stream = r.json()
        assert stream["type"] == "stream" and stream["schema_version"] == 1 and stream["name"] == name
        got = read_events(client, f"/v1/streams/{stream['id']}/events")
        assert [without(x, "latency_s") for x in got] == [without(x, "latency_s") for x in expected]
        assert {x["type"] for x in got} >= {"window", "end"} and got[-1]["type"] == "end"
        # a listener that comes after the end gets the kept records again, then the stream closes
        assert read_events(client, f"/v1/streams/{stream['id']}/events") == got
        listed = {s["id"]: s for s in client.get("/v1/streams").json()["streams"]}[stream["id"]]
        assert listed["state"] == "ended" and listed["frames"] == got[-1]["frames"] == 150
        assert listed["windows"] == sum(x["type"] == "window" for x in got)


# -- jobs ------------------------------------------------------------------------------------------
def test_job_progress_result_cancel_and_429(client, long_clip, tmp_path):
    r = client.post("/v1/jobs", content=long_clip.read_bytes(), params={"name": "long.mp4", "top_k": "1"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running", "done") and job["id"]
    for _ in range(600):
        job = client.get(f"/v1/jobs/{job['id']}").json()
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.1)
    assert job["status"] == "done", job
    assert job["frames_done"] == 500 and job["frames_total"] == 500
    sync = client.post("/v1/classify", json={"path": str(long_clip), "top_k": 1}).json()
    assert without(job["result"], *IGNORED, "path") == without(sync, *IGNORED, "path")
    assert job["result"]["path"] == "long.mp4" and len(job["result"]["topk"]) == 1

    # a slow source keeps two jobs running: the third is refused with Retry-After, DELETE cancels
    slow = FileServer(ASSETS, trickle_s=0.1, piece=1024)  # faststart.mp4 (43 kB) in about 4 s
    try:
        ids = []
        for _ in range(2):
            r = client.post("/v1/jobs", json={"url": f"{slow.url}/faststart.mp4"})
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        refused = client.post("/v1/jobs", json={"url": f"{slow.url}/faststart.mp4"})
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert "max-jobs" in refused.json()["error"]
        refused = client.post("/v1/classify", content=SAMPLES[0].read_bytes())
        assert refused.status_code == 429
        for job_id in ids:
            assert client.delete(f"/v1/jobs/{job_id}").status_code == 200
            for _ in range(300):
                job = client.get(f"/v1/jobs/{job_id}").json()
                if job["status"] == "failed":
                    break
                time.sleep(0.1)
            assert job["status"] == "failed" and job["error"].startswith("cancelled"), job
    finally:
        slow.close()
    assert client.get("/v1/jobs/nope").status_code == 404
    healthy(client)


# -- streams: stop, source dies, disconnects --------------------------------------------------------
def test_delete_stream_ends_it_and_listeners_get_the_end(client, long_clip):
    r = client.post("/v1/streams", json={"path": str(long_clip), "window_s": 2, "stride_s": 1, "realtime": True})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    listener = Listening(str(client.base_url), f"/v1/streams/{sid}/events")
    listener.start()
    assert listener.wait_for("window"), "no window within 30 s"
    t0 = time.monotonic()
    assert client.delete(f"/v1/streams/{sid}").status_code == 204
    listener.join(timeout=30)
    got = listener.records
    assert got[-1]["type"] == "end" and got[-1]["frames"] < 500, got[-1]
    print(f"DELETE -> end record at the listener: {listener.ended_at - t0:.3f} s")
    assert client.get(f"/v1/streams/{sid}").status_code == 404
    assert client.delete(f"/v1/streams/{sid}").status_code == 404
    healthy(client)


def test_stream_whose_source_dies_ends_with_an_error(client):
    camera = Camera(fps=25)
    try:
        r = client.post("/v1/streams", json={"url": camera.url, "window_frames": 8, "stride_frames": 8, "retries": 0})
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        got: list[dict] = []

        def listen() -> None:
            got.extend(read_events(client, f"/v1/streams/{sid}/events", limit_s=60))

        t = threading.Thread(target=listen, daemon=True)
        t.start()
        for _ in range(300):
            state = client.get(f"/v1/streams/{sid}").json()
            if state["windows"] >= 1:
                break
            time.sleep(0.1)
        assert state["windows"] >= 1 and state["state"] == "running", state
    finally:
        camera.kill()
    t.join(timeout=60)
    assert got and got[-1]["type"] == "end", got[-1:]
    state = client.get(f"/v1/streams/{sid}").json()
    assert state["state"] in ("failed", "ended") and state["frames"] > 0, state
    healthy(client)


def test_clients_that_disconnect_mid_upload_and_mid_events(server, client, long_clip):
    # mid-upload: a body announced as 1 MB, 10 kB sent, the connection closed
    before = set(os.listdir(server.service.work_dir))
    with socket.create_connection(("127.0.0.1", server.settings.port), timeout=10) as s:
        s.sendall(b"POST /v1/classify?name=x.mp4 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        s.sendall(long_clip.read_bytes()[:10_000])
        time.sleep(0.3)
    for _ in range(50):  # the upload's file is removed once the server notices
        if set(os.listdir(server.service.work_dir)) <= before:
            break
        time.sleep(0.1)
    assert set(os.listdir(server.service.work_dir)) <= before
    # mid-events: a listener reads the first records of a running stream and goes away
    r = client.post("/v1/streams", json={"path": str(long_clip), "window_s": 1, "stride_s": 1, "realtime": True})
    sid = r.json()["id"]
    with socket.create_connection(("127.0.0.1", server.settings.port), timeout=10) as s:
        s.sendall(f"GET /v1/streams/{sid}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert b"200 OK" in s.recv(4096)
        for _ in range(100):
            if client.get(f"/v1/streams/{sid}").json()["listeners"] == 1:
                break
            time.sleep(0.05)
        assert client.get(f"/v1/streams/{sid}").json()["listeners"] == 1
    for _ in range(100):
        if client.get(f"/v1/streams/{sid}").json()["listeners"] == 0:
            break
        time.sleep(0.05)
    assert client.get(f"/v1/streams/{sid}").json()["listeners"] == 0
    assert client.delete(f"/v1/streams/{sid}").status_code == 204
    metrics = client.get("/metrics").text
    assert 'fvdeploy_requests_total{route="/v1/classify",status="499"}' in metrics
    healthy(client)


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, status, words",
    [
        (dict(content=b"#EXTM3U\n#EXT-X-VERSION:3\nfile:///etc/passwd\n"), 422, "text, not a video"),
        (dict(content=b"hello, I am not a video"), 422, "text, not a video"),
        (dict(content=b""), 400, "empty"),
        (dict(content=bytes(range(256)) * 64), 422, "not a video"),
        (dict(content=b"{not json", headers={"Content-Type": "application/json"}), 400, "not valid JSON"),
        (dict(json=[1, 2]), 400, "object"),
        (dict(json={"url": "http://x/a.mp4", "path": "a.mp4"}), 400, "exactly one"),
        (dict(json={"path": "samples/move_up.mp4", "top_k": 0}), 400, "top_k"),
        (dict(json={"path": "move_up.mp4", "device": "cuda"}), 400, "fixed when the model is loaded"),
        (dict(json={"path": "move_up.mp4", "bogus": 1}), 400, "unknown option"),
        (dict(json={"path": "missing.mp4"}), 422, "no such file"),
        (dict(json={"url": "rtsp://127.0.0.1:9/live"}), 422, ""),
        (dict(json={"url": "ftp://example.org/a.mp4"}), 403, "scheme"),
    ],
)
def test_bad_requests_get_one_line_errors(client, kwargs, status, words):
    r = client.post("/v1/classify", **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["error"] and "\n" not in body["error"] and words in body["error"]
    assert "Traceback" not in body["error"] and "/fvdeploy-serve-" not in body["error"]


@pytest.mark.parametrize(
    "body, words",
    [
        ({"path": "move_up.mp4", "window_s": "long"}, "window_s must be float"),
        ({"path": "move_up.mp4", "threshold": 2}, "threshold"),
        ({"path": "move_up.mp4", "window_frames": 8}, "both in frames"),
        ({"path": "move_up.mp4", "mode": "tsm"}, "mode full"),
        ({"path": "move_up.mp4", "color": "rgb"}, "unknown stream option"),
        ({"path": "move_up.mp4", "realtime": "yes"}, "realtime must be bool"),
        ({"window_s": 2}, "exactly one"),
    ],
)
def test_bad_stream_requests(client, body, words):
    r = client.post("/v1/streams", json=body)
    assert r.status_code == 400 and words in r.json()["error"], r.text


def test_a_multipart_form_upload_is_told_to_send_the_bytes(client):
    for route in ("/v1/classify", "/v1/jobs"):
        r = client.post(route, files={"file": ("a.mp4", SAMPLES[0].read_bytes(), "video/mp4")})
        assert r.status_code == 400 and "--data-binary" in r.json()["error"], (route, r.text)


def test_a_stream_from_a_videos_bytes_is_told_what_a_stream_takes(client):
    r = client.post("/v1/streams", content=SAMPLES[0].read_bytes()[:4096], headers={"Content-Type": "video/mp4"})
    assert r.status_code == 400 and 'a stream takes JSON {"url": ...} or {"path": ...}' in r.json()["error"], r.text


def test_job_and_stream_answers_match_their_schemas(client):
    """docs/schemas/serve: the service's own records, on real answers (a job's result is a
    video record, checked against docs/schemas/video.schema.json through the reference)."""
    import jsonschema
    from referencing import Registry, Resource

    folder = REPO / "docs" / "schemas"
    resources = [
        (p.relative_to(folder).as_posix(), Resource.from_contents(json.loads(p.read_text())))
        for p in folder.rglob("*.schema.json")
    ]
    registry = Registry().with_resources([(f"https://fvdeploy.dev/schemas/{name}", r) for name, r in resources])
    job = client.post("/v1/jobs", content=SAMPLES[0].read_bytes(), params={"name": "a.mp4"}).json()
    for _ in range(300):
        done = client.get(f"/v1/jobs/{job['id']}").json()
        if done["status"] in ("done", "failed"):
            break
        time.sleep(0.1)
    stream = client.get("/v1/streams").json()["streams"]
    assert stream, "the earlier tests left streams to list"
    for kind, records in (("job", [job, done]), ("stream", stream)):
        schema = json.loads((folder / "serve" / f"{kind}.schema.json").read_text())
        validator = jsonschema.Draft202012Validator(schema, registry=registry)
        for record in records:
            validator.validate(record)
            assert set(record) <= set(schema["properties"]), set(record) - set(schema["properties"])
    assert done["status"] == "done" and done["result"]["type"] == "video"


def test_metrics_and_openapi(client):
    # a request and a stream of its own, so that the labelled series exist whatever ran before
    assert client.post("/v1/classify", json={"path": str(SAMPLES[0])}).status_code == 200
    sid = client.post("/v1/streams", json={"path": str(SAMPLES[0])}).json()["id"]
    assert read_events(client, f"/v1/streams/{sid}/events", limit_s=60)[-1]["type"] == "end"
    text = client.get("/metrics").text
    for name in (
        "fvdeploy_frames_total",
        "fvdeploy_dropped_frames_total",
        "fvdeploy_stream_lag_seconds",
        "fvdeploy_events_total",
        "fvdeploy_requests_total",
        "fvdeploy_request_duration_seconds_bucket",
    ):
        assert f"# TYPE {name.removesuffix('_total').removesuffix('_bucket')}" in text, name
    assert 'fvdeploy_requests_total{route="/v1/classify",status="200"}' in text
    assert "fvdeploy_frames_total{stream=" in text
    spec = client.get("/openapi.json").json()
    assert {"/v1/classify", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/streams", "/v1/streams/{stream_id}/events"} <= set(
        spec["paths"]
    )
    assert "swagger" in client.get("/docs").text.lower()
    assert client.get("/nope").json() == {"error": "Not Found"}


# -- security ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def secured(model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    outside = tmp_path_factory.mktemp("outside")
    (root / "ok.mp4").write_bytes(SAMPLES[0].read_bytes())
    (outside / "secret.mp4").write_bytes(SAMPLES[1].read_bytes())
    (root / "link.mp4").symlink_to(outside / "secret.mp4")
    settings = ServeSettings(
        classify=ClassifyOptions(model=str(model_dir), device="cpu"),
        token="s3cret",
        allow_root=[str(root)],
        max_upload_mib=1,
        read_timeout_s=2.0,
        idle_timeout_s=2.0,
        workers=1,
    )
    with ServiceThread(settings) as s:
        s.root, s.outside = root, outside
        yield s


def test_token_is_needed_everywhere_but_healthz(secured):
    with secured.client() as anon, secured.client(headers={"Authorization": "Bearer s3cret"}) as ok:
        assert anon.get("/healthz").status_code == 200
        for method, path in (
            ("GET", "/readyz"),
            ("GET", "/metrics"),
            ("GET", "/docs"),
            ("GET", "/openapi.json"),
            ("GET", "/v1/streams"),
            ("POST", "/v1/classify"),
            ("GET", "/"),
        ):
            r = anon.request(method, path)
            assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer", path
            assert r.json()["error"].startswith("missing token")
        wrong = anon.get("/v1/streams", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"].startswith("wrong token")
        assert ok.get("/readyz").status_code == 200 and ok.get("/metrics").status_code == 200
        r = ok.post("/v1/classify", json={"path": "ok.mp4"})
        assert r.status_code == 200 and r.json()["path"] == "ok.mp4", r.text
        # the page: a browser opens /?token=... once and gets a cookie (EventSource cannot send headers)
        with secured.client() as fresh:
            login = fresh.get("/", params={"token": "s3cret"}, follow_redirects=False)
        assert login.status_code == 303 and "HttpOnly" in login.headers["set-cookie"]
        assert anon.get("/", headers={"Accept": "text/html"}).status_code == 401
        with secured.client(cookies={"fvdeploy_token": "s3cret"}) as browser:
            assert browser.get("/").status_code == 200 and "<title>fvdeploy" in browser.get("/").text
        assert anon.get("/", params={"token": "bad"}, headers={"Accept": "text/html"}).status_code == 401


def test_paths_outside_the_root_and_private_urls_are_forbidden(secured):
    with secured.client(headers={"Authorization": "Bearer s3cret"}) as c:
        for path in (
            str(secured.outside / "secret.mp4"),
            "link.mp4",
            "../" + secured.outside.name + "/secret.mp4",
            str(secured.root / ".." / secured.outside.name / "secret.mp4"),
            "/etc/passwd",
        ):
            r = c.post("/v1/classify", json={"path": path})
            assert r.status_code == 403 and "allow-root" in r.json()["error"], (path, r.text)
            assert c.post("/v1/streams", json={"path": path}).status_code == 403
        # refused before any connection: loopback, private, link-local, unspecified, mapped
        for url in (
            "http://127.0.0.1:9/a.mp4",
            "http://localhost:9/a.mp4",
            "rtsp://10.0.0.1/live",
            "http://169.254.169.254/latest",
            "http://[::1]:9/a.mp4",
            "http://0.0.0.0:9/a.mp4",
            "http://[::ffff:192.168.1.1]/a.mp4",
            "srt://172.16.0.1:9000",
        ):
            r = c.post("/v1/classify", json={"url": url})
            assert r.status_code == 403 and "allow-private-urls" in r.json()["error"], (url, r.text)
            assert c.post("/v1/streams", json={"url": url}).status_code == 403
        assert c.post("/v1/classify", json={"url": "file:///etc/passwd"}).status_code == 403


def test_a_playlist_below_the_root_reaches_nothing_outside_it(secured):
    """A playlist or concat list inside the root would make FFmpeg read what it lists: refused as
    text before any decoding, whatever its name (a newcomer read a file outside the root this way)."""
    secret = secured.outside / "secret.mp4"
    (secured.root / "list.m3u8").write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{secret}\n#EXT-X-ENDLIST\n"
    )
    (secured.root / "list.mp4").write_text(f"ffconcat version 1.0\nfile '{secret}'\n")
    with secured.client(headers={"Authorization": "Bearer s3cret"}) as c:
        for name in ("list.m3u8", "list.mp4"):
            for route in ("/v1/classify", "/v1/jobs", "/v1/streams"):
                r = c.post(route, json={"path": name})
                assert r.status_code == 422 and "not a video" in r.json()["error"], (name, route, r.text)
        assert c.get("/v1/streams").json()["streams"] == []
        assert c.post("/v1/classify", json={"path": "ok.mp4"}).status_code == 200


def test_upload_limit_and_read_timeout(secured):
    with secured.client(headers={"Authorization": "Bearer s3cret"}) as c:
        big = SAMPLES[0].read_bytes() * (2 * 2**20 // SAMPLES[0].stat().st_size + 1)
        r = c.post("/v1/classify", content=big)
        assert r.status_code == 413 and "at most" in r.json()["error"]
        r = c.post("/v1/classify", content=iter([big[i : i + 65536] for i in range(0, len(big), 65536)]))
        assert r.status_code == 413, r.text  # chunked, no Content-Length: counted while read
        with socket.create_connection(("127.0.0.1", secured.settings.port), timeout=20) as s:
            s.sendall(
                b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n"
                b"Content-Length: 1000\r\n\r\n0123456789"
            )
            answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        # a client that connects and sends nothing, or sends half its headers, is closed
        for sent in (b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"):
            with socket.create_connection(("127.0.0.1", secured.settings.port), timeout=30) as s:
                s.sendall(sent)
                t0 = time.monotonic()
                assert s.recv(100) == b""  # closed by the server, well before the client's own 30 s
                assert time.monotonic() - t0 < 25
        assert c.post("/v1/classify", json={"path": "ok.mp4"}).status_code == 200


def test_serve_refuses_a_public_address_without_a_token():
    r = run_cli("serve", "--host", "0.0.0.0")
    assert r.returncode == 2 and "--token" in r.stderr and "Traceback" not in r.stderr


# -- SIGTERM -------------------------------------------------------------------------------------------
def test_sigterm_ends_streams_finishes_or_cancels_jobs_and_exits_143(model_dir, long_clip):
    port = free_port()
    slow = FileServer(ASSETS, trickle_s=0.1, piece=1024)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fvdeploy",
            "serve",
            "--model",
            str(model_dir),
            "--device",
            "cpu",
            "--port",
            str(port),
            "--allow-root",
            str(long_clip.parent),
            "--allow-private-urls",
            "--shutdown-grace",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        c = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        for _ in range(600):
            try:
                if c.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        sid = c.post(
            "/v1/streams", json={"path": str(long_clip), "window_s": 1, "stride_s": 1, "realtime": True}
        ).json()["id"]
        job = c.post("/v1/jobs", json={"url": f"{slow.url}/faststart.mp4"}).json()
        answers: list[httpx.Response] = []
        listener = Listening(f"http://127.0.0.1:{port}", f"/v1/streams/{sid}/events")
        events = listener.records
        request = threading.Thread(
            target=lambda: answers.append(c.post("/v1/classify", json={"url": f"{slow.url}/faststart.mp4"}))
        )
        listener.start()
        request.start()
        for _ in range(300):
            if c.get(f"/v1/jobs/{job['id']}").json()["status"] == "running" and events:
                break
            time.sleep(0.1)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
        listener.join(timeout=10)
        request.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        slow.close()
    assert proc.returncode == 143, err.decode()[-2000:]  # 128 + SIGTERM after the graceful stop
    assert "interrupted (SIGTERM)" in err.decode()
    assert events and events[-1]["type"] == "end" and events[-1]["frames"] < 500, events[-1:]
    assert answers and answers[0].status_code in (200, 503), answers
    if answers[0].status_code == 503:
        assert "shutting down" in answers[0].json()["error"]
    assert "at shutdown" in err.decode()
    print(f"SIGTERM -> exit {proc.returncode} in {took:.2f} s; the in-flight request got {answers[0].status_code}")


def test_bench_serve_quick_smoke():
    """``fvdeploy bench serve --quick``: a real server process, clients, a stream, SIGTERM at the end."""
    r = run_cli("bench", "serve", "--quick", "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["ok"] and out["errors"] == [] and out["server_exit_code"] == 143
    assert out["events_delivered"] and out["latency_p50_s"] > 0 and out["peak_rss_mib"] > 0
    assert out["slowest_healthz_s"] is not None and out["healthz_probes"] > 0
