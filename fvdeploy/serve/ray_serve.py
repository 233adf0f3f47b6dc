"""``fvdeploy serve --ray ADDRESS``: the same ASGI app as a Ray Serve deployment, on the Ray
cluster that ``classify --ray`` uses (the CLI connects with ``fvdeploy.distributed.connect``). Each replica loads the
model once (the app's lifespan) and answers every endpoint; Ray Serve's proxy spreads requests
over the replicas (``--replicas N``, or ``--autoscaling`` passed through as Ray Serve's
``autoscaling_config``).

Jobs and streams are state of the replica that created them: with several replicas a later
``GET /v1/jobs/{id}`` may reach another one (404 that says so). Use the service on Ray for
``/v1/classify``, and one replica (or one ``fvdeploy serve`` process) for jobs and streams."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import BackendError
from .settings import ServeSettings

APP_NAME = "fvdeploy"


def deployment(
    settings: ServeSettings,
    *,
    replicas: int = 1,
    autoscaling: dict[str, Any] | None = None,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
) -> Any:
    """The bound Ray Serve application (``serve.run`` it): an ingress deployment whose ASGI app
    is ``serve.app.create_app(settings)``, built on each replica."""
    try:
        from ray import serve
    except ImportError as e:
        raise BackendError(f"--ray needs Ray Serve: pip install 'fvdeploy[serve-ray]' ({e})") from None

    def build() -> Any:
        from .app import create_app

        return create_app(settings)

    options: dict[str, Any] = {"ray_actor_options": {"num_cpus": num_cpus, "num_gpus": num_gpus}}
    if autoscaling is not None:
        options["autoscaling_config"] = autoscaling
    else:
        options["num_replicas"] = replicas

    @serve.deployment(name="fvdeploy", **options)
    @serve.ingress(build)
    class FvdeployIngress:
        pass

    return FvdeployIngress.bind()  # type: ignore[attr-defined]  # added by @serve.deployment


def serve_on_ray(
    settings: ServeSettings,
    *,
    replicas: int,
    autoscaling: dict[str, Any] | None,
    num_cpus: float,
    num_gpus: float,
    log: Callable[[str], None] = print,
    block: bool = True,
) -> int | None:
    """On the Ray cluster this process is connected to (``fvdeploy.distributed.connect``, as
    ``classify --ray``; the CLI connects first), start the deployment with Ray Serve's HTTP proxy
    on ``settings.host:settings.port``, wait until it answers, and (``block``) keep it running
    until SIGTERM, SIGHUP or Ctrl-C; then delete it and return the signal's number (None when
    not ``block``)."""
    from ray import serve

    if block and threading.current_thread() is threading.main_thread():
        # A graceful stop, as without Ray: the app is deleted and the command exits 128 + the signal.
        # Set before serve.run (which waits for every replica): Ray's own SIGTERM handler aborts (134).
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _interrupt)
    try:
        serve.start(http_options={"host": settings.host, "port": settings.port})
        app = deployment(settings, replicas=replicas, autoscaling=autoscaling, num_cpus=num_cpus, num_gpus=num_gpus)
        serve.run(app, name=APP_NAME, route_prefix="/")
        scale = replicas if autoscaling is None else "autoscaling"
        log(f"fvdeploy serve on Ray: http://{settings.host}:{settings.port} ({scale} replicas)")
        if not block:
            return None
        while True:
            time.sleep(3600)
    except KeyboardInterrupt as e:
        log("stopping: deleting the Ray Serve application")
        serve.delete(APP_NAME)
        return getattr(e, "signum", signal.SIGINT)


class _Stopped(KeyboardInterrupt):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum: int, frame: Any) -> None:
    raise _Stopped(signum)
