"""``fvdeploy serve``: classify and watch as an HTTP service (docs/serve.md). Parses, loads the
model once, runs the app (``fvdeploy.serve``) with uvicorn, or on Ray Serve with ``--ray``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app, err, guarded, status, usage_error
from .choices import BackendName, Precision


@app.command()
@guarded
def serve(
    model: Annotated[
        Optional[Path], typer.Option("--model", "-m", help="Model folder; default: the bundled model.")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind; other than loopback needs --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8080,
    token: Annotated[
        Optional[str],
        typer.Option(
            help="Every endpoint but /healthz then needs 'Authorization: Bearer TOKEN'. Default: $FVDEPLOY_TOKEN.",
            show_default=False,
        ),
    ] = None,
    allow_root: Annotated[
        Optional[list[Path]],
        typer.Option(help='A folder whose files requests may name as {"path": ...} (repeatable). None: no paths.'),
    ] = None,
    allow_private_urls: Annotated[
        bool,
        typer.Option(
            "--allow-private-urls/--no-allow-private-urls",
            help="Accept URLs whose host is a loopback, private or link-local address.",
        ),
    ] = False,
    max_upload_mib: Annotated[int, typer.Option(help="Largest upload in MiB (413 beyond).", min=1)] = 512,
    max_streams: Annotated[int, typer.Option(help="Streams watched at once (429 beyond).", min=1)] = 8,
    max_jobs: Annotated[
        int, typer.Option(help="Classify requests and jobs queued or running at once (429 beyond).", min=1)
    ] = 16,
    workers: Annotated[int, typer.Option(help="Threads that classify (streams have one each).", min=1)] = 2,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    backend: Annotated[BackendName, typer.Option(help="Inference backend. No silent fallback.")] = BackendName.auto,
    precision: Annotated[Optional[Precision], typer.Option(help="Default: fp16 on CUDA, fp32 on CPU.")] = None,
    max_memory: Annotated[
        Optional[int],
        typer.Option("--max-memory", help="MiB each classification may hold beyond the model.", min=16),
    ] = None,
    read_timeout: Annotated[
        float, typer.Option(help="Seconds a request body may send nothing before 408.", min=0.001)
    ] = 30.0,
    idle_timeout: Annotated[
        float, typer.Option(help="Seconds before an idle connection, or an event stream nobody reads, closes.", min=1)
    ] = 30.0,
    shutdown_grace: Annotated[
        float, typer.Option(help="SIGTERM: seconds running jobs may finish before they are cancelled.", min=0)
    ] = 10.0,
    clips_dir: Annotated[
        Optional[Path], typer.Option(help="Evidence clips, one folder per stream (default: a temporary folder).")
    ] = None,
    ray: Annotated[
        Optional[str],
        typer.Option(
            "--ray",
            help="Run as a Ray Serve deployment: auto, an address (ray://head:10001) or local. Needs fvdeploy[serve-ray].",
            rich_help_panel="Ray",
        ),
    ] = None,
    replicas: Annotated[
        int, typer.Option(help="Replicas, each loading the model once.", min=1, rich_help_panel="Ray")
    ] = 1,
    autoscaling: Annotated[
        Optional[str],
        typer.Option(
            help='Ray Serve autoscaling_config as JSON, passed through (e.g. \'{"min_replicas": 1, "max_replicas": 4}\'); replaces --replicas.',
            rich_help_panel="Ray",
        ),
    ] = None,
    ray_cpus_per_replica: Annotated[float, typer.Option(min=0, rich_help_panel="Ray")] = 1.0,
    ray_gpus_per_replica: Annotated[float, typer.Option(min=0, rich_help_panel="Ray")] = 0.0,
) -> None:
    """Serve classify and watch over HTTP: POST /v1/classify, /v1/jobs, /v1/streams (events as
    Server-Sent Events), /metrics, /docs, and a live page at /.

    SIGTERM stops it gracefully (listeners get end records, jobs finish or are cancelled within
    --shutdown-grace) and exits 143 (SIGHUP: 129), as every command does."""
    from ..runtime.options import ClassifyOptions, OptionsError
    from ..serve.settings import ServeSettings, SettingsError

    settings = ServeSettings(
        classify=ClassifyOptions(
            model=str(model) if model is not None else None,
            device=device,
            backend=backend.value,
            precision=precision.value if precision else None,
            max_memory=max_memory,
        ),
        host=host,
        port=port,
        token=token if token is not None else os.environ.get("FVDEPLOY_TOKEN") or None,
        allow_root=[str(p) for p in allow_root or []],
        allow_private_urls=allow_private_urls,
        max_upload_mib=max_upload_mib,
        max_streams=max_streams,
        max_jobs=max_jobs,
        workers=workers,
        read_timeout_s=read_timeout,
        idle_timeout_s=idle_timeout,
        shutdown_grace_s=shutdown_grace,
        clips_dir=str(clips_dir) if clips_dir is not None else None,
    )
    try:
        settings.validate()
    except (SettingsError, OptionsError) as e:
        raise usage_error(str(e)) from None
    if ray is not None:
        try:
            scaling = json.loads(autoscaling) if autoscaling else None
        except ValueError as e:
            raise usage_error(f"--autoscaling must be a JSON object ({e})") from None
        if scaling is not None and not isinstance(scaling, dict):
            raise usage_error("--autoscaling must be a JSON object")
        from .. import distributed
        from ..serve.ray_serve import serve_on_ray

        distributed.connect(ray)  # the cluster classify --ray uses: auto, an address, or local
        signum = serve_on_ray(
            settings,
            replicas=replicas,
            autoscaling=scaling,
            num_cpus=ray_cpus_per_replica,
            num_gpus=ray_gpus_per_replica,
            log=lambda m: err.print(m, highlight=False, markup=False, soft_wrap=True),
        )
        if signum is not None:
            raise typer.Exit(128 + signum)
        return
    _serve_here(settings)


def _serve_here(settings) -> None:
    import logging
    import signal

    from ..malloc import bound_heap_growth
    from ..serve.server import build_server
    from ..serve.service import Service

    bound_heap_growth()  # a long-running process: flat RSS (docs/runtime.md), as classify and watch
    with status("loading the model", err.is_terminal):
        service = Service.load(settings)
    level = logging.getLogger("fvdeploy").getEffectiveLevel()
    server = build_server(settings, service, log_level="info" if level <= logging.INFO else "warning")
    # uvicorn re-raises the signal that stopped it once it has shut down (its graceful stop: no new
    # work, end records to listeners, jobs finished or cancelled): these handlers then note it, and the
    # command exits 128 + its number as every command does (docs/design.md#signals). SIGHUP stops it
    # the same way; Ctrl-C reaches `guarded` as KeyboardInterrupt (130).
    stopped_by: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _: stopped_by.append(signum))

    def on_hangup(signum: int, frame: object) -> None:
        stopped_by.append(signum)
        server.handle_exit(signal.SIGTERM, None)

    signal.signal(signal.SIGHUP, on_hangup)
    info = service.describe()
    err.print(
        f"fvdeploy serve: http://{settings.host}:{settings.port} ({len(info['labels'])} labels, "
        f"{info['run']['backend']} on {info['run']['device']}; token {'on' if settings.token else 'off'})",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    server.run()
    if not server.started:
        raise typer.Exit(1)  # uvicorn said why (the port is taken, ...)
    if stopped_by:
        name = signal.Signals(stopped_by[0]).name
        err.print(f"interrupted ({name}): stopped gracefully", highlight=False, markup=False)
        raise typer.Exit(128 + stopped_by[0])
