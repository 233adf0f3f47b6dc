"""``fvdeploy serve --ray``: the same app as a Ray Serve deployment with two replicas on a local
Ray gives the same answers as one process (ignoring timings and run), and both replicas answer.
Slow (Ray and two model loads): ``pytest -m slow``."""

from __future__ import annotations

import time

import httpx
import pytest
from conftest import REPO, save_tiny_model
from serving import ServiceThread, free_port, without

from fvdeploy.runtime.options import ClassifyOptions
from fvdeploy.serve.settings import ServeSettings

pytestmark = pytest.mark.slow

FILES = sorted((REPO / "samples").glob("*.mp4")) + [
    REPO / "tests" / "assets" / "real_video" / n for n in ("vfr.mp4", "corrupt_middle.mp4", "one_frame.mp4")
]


def test_two_ray_serve_replicas_answer_as_one_process(tmp_path):
    pytest.importorskip("ray.serve", reason="needs Ray Serve: pip install 'fvdeploy[serve-ray]'")
    import ray
    from ray import serve

    from fvdeploy.serve.ray_serve import APP_NAME, serve_on_ray

    model = save_tiny_model(tmp_path / "tiny", seed=1)
    options = ClassifyOptions(model=str(model), device="cpu")
    roots = [str(REPO / "samples"), str(REPO / "tests" / "assets")]
    with ServiceThread(ServeSettings(classify=options, allow_root=roots)) as one, one.client() as c:
        expected = {str(p): c.post("/v1/classify", json={"path": str(p)}).json() for p in FILES}
    port = free_port()
    settings = ServeSettings(classify=options, allow_root=roots, port=port).validate()
    t0 = time.monotonic()
    try:
        from fvdeploy import distributed

        distributed.connect("local")  # what fvdeploy serve --ray local does before serve_on_ray
        serve_on_ray(settings, replicas=2, autoscaling=None, num_cpus=0.5, num_gpus=0, log=print, block=False)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as ray_client:
            for _ in range(600):
                try:
                    if ray_client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            print(f"Ray Serve with 2 replicas ready in {time.monotonic() - t0:.1f} s")
            replicas = set()
            for _ in range(3):
                for p in FILES:
                    upload = ray_client.post("/v1/classify", content=p.read_bytes(), params={"name": str(p)})
                    named = ray_client.post("/v1/classify", json={"path": str(p)})
                    for r in (upload, named):
                        assert r.status_code == 200, r.text
                        assert without(r.json(), "timings", "run") == without(expected[str(p)], "timings", "run")
                        replicas.add(r.headers["x-fvdeploy-replica"])
            assert len(replicas) == 2, replicas  # both replicas answered
            assert ray_client.get("/healthz").json() == {"status": "ok"}
            assert ray_client.post("/v1/classify", json={"path": "/etc/passwd"}).status_code == 403
    finally:
        if ray.is_initialized():
            try:
                serve.delete(APP_NAME)
                serve.shutdown()
            finally:
                ray.shutdown()
