"""The HTTP API of ``fvdeploy serve`` (docs/serve.md): FastAPI routes that parse, call the
service layer (``serve.service``) and answer; no computing of their own.

``create_app(settings, service)`` builds the ASGI app; with ``service=None`` the model loads when
the app starts (its lifespan), as under Ray Serve. Two pure-ASGI layers wrap every path, the
OpenAPI pages and ``/metrics`` included: the token check (all but ``/healthz``) and the request
metrics. Errors are ``{"error": "<one line>"}`` with the status of docs/design.md#service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from prometheus_client import make_asgi_app
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from ..config import MODES
from ..records import SCHEMA_VERSION, dumps
from ..runtime.options import INT_FIELDS, REQUEST_FIELDS
from .errors import ApiError, BadRequest, Forbidden, NotFound, Unavailable, Unprocessable, one_line
from .inputs import SOURCE_KEYS, checked_source, read_json, read_video_request
from .jobs import Job
from .security import token_matches
from .service import Service
from .settings import ServeSettings
from .sse import EventStream
from .streams import CLIP_SUFFIXES

log = logging.getLogger(__name__)

COOKIE = "fvdeploy_token"
# which process answered (several replicas behind Ray Serve's proxy; tests check both answer)
REPLICA = {"X-Fvdeploy-Replica": f"{socket.gethostname()}:{os.getpid()}"}
OPEN_PATHS = frozenset({"/healthz"})


def _request_field(name: str) -> dict[str, Any]:
    """The OpenAPI schema of a per-request classify option (runtime.options.REQUEST_FIELDS)."""
    if name in INT_FIELDS:
        return {"type": "integer"}
    if name == "mode":
        return {"type": "string", "enum": list(MODES)}
    return {"type": "string"}


VIDEO_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "url": {"type": "string", "description": "http(s), rtsp, rtmp or srt URL"},
                        "path": {"type": "string", "description": "a file below --allow-root"},
                        **{n: _request_field(n) for n in REQUEST_FIELDS},
                    },
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "parameters": [
        {"name": n, "in": "query", "required": False, "schema": {"type": t}}
        for n, t in (("name", "string"), *((n, _request_field(n)["type"]) for n in REQUEST_FIELDS))
    ],
}
STREAM_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "url or path, and fvdeploy watch's options in snake_case "
                    "(window_s, stride_s, window_frames, stride_frames, threshold, min_duration_s, realtime, "
                    "live, fps, retries, ...; clusters, method, top_k)",
                    "properties": {
                        "url": {"type": "string"},
                        "path": {"type": "string"},
                        "window_s": {"type": "number"},
                        "stride_s": {"type": "number"},
                    },
                }
            }
        },
    }
}


def create_app(settings: ServeSettings, service: Service | None = None) -> _Metered:
    """The ASGI app. ``service``: a loaded :class:`Service` (else it is loaded at startup)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.service is None:
            app.state.service = await asyncio.to_thread(Service.load, settings)
        yield
        await asyncio.to_thread(app.state.service.shutdown)

    app = FastAPI(
        title="fvdeploy",
        version=__version__,
        summary="Full-video action recognition as a service: classify files and URLs, watch streams.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.settings = settings

    def svc(request: Request) -> Service:
        s = request.app.state.service
        if s is None:
            raise Unavailable("the model is loading")
        return s

    # -- errors -----------------------------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> Response:
        return JSONResponse({"error": str(e)}, status_code=e.status, headers=e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> Response:
        return JSONResponse({"error": one_line(e.detail)}, status_code=e.status_code, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> Response:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": one_line(f"{where}: {first.get('msg', 'invalid request')}")}, status_code=400)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, e: ClientDisconnect) -> Response:
        log.info("%s %s: the client disconnected before the request was read", request.method, request.url.path)
        return Response(status_code=499)  # nginx's "client closed request": nobody reads it

    @app.exception_handler(Exception)
    async def internal(request: Request, e: Exception) -> Response:  # a bug in fvdeploy, never bad input
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": one_line(f"internal error {type(e).__name__}: {e}")}, status_code=500)

    # -- health -----------------------------------------------------------------------------------
    @app.get("/healthz", summary="The process answers (no token needed).")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/readyz", summary="The model is loaded.")
    async def readyz(request: Request) -> Response:
        s = request.app.state.service
        if s is None:
            return JSONResponse({"error": "the model is loading"}, status_code=503, headers={"Retry-After": "5"})
        if not s.accepting:
            return JSONResponse({"error": "the server is shutting down"}, status_code=503)
        return JSONResponse({"status": "ready", "schema_version": SCHEMA_VERSION, **s.describe()})

    # -- classify -----------------------------------------------------------------------------------
    async def submit(request: Request, *, listed: bool) -> Job:
        s = svc(request)
        video, options = await read_video_request(request, settings, s.classify_options)
        return s.submit(video, options, listed=listed)

    @app.post(
        "/v1/classify",
        summary="Classify one video: its bytes, or JSON {url} / {path}; the answer is classify --json's record.",
        openapi_extra=VIDEO_BODY,
    )
    async def classify(request: Request) -> Response:
        job = await submit(request, listed=False)
        await wait_for_job(request, job)
        if job.status == "done" and job.result is not None:  # the record as classify --json prints it
            return Response(dumps(job.result), media_type="application/json", headers=REPLICA)
        if job.error_status >= 500:
            return JSONResponse({"error": job.error}, status_code=job.error_status)
        raise api_error_of(job)

    @app.post("/v1/jobs", status_code=202, summary="Classify a long video in the background.", openapi_extra=VIDEO_BODY)
    async def create_job(request: Request) -> Response:
        job = await submit(request, listed=True)
        return JSONResponse(job.record().to_dict(), status_code=202)

    @app.get("/v1/jobs", summary="The jobs kept (queued, running and recently finished).")
    async def list_jobs(request: Request) -> dict[str, Any]:
        jobs = [j.record().to_dict() for j in svc(request).jobs.all() if j.listed]
        return {"schema_version": SCHEMA_VERSION, "jobs": jobs}

    @app.get("/v1/jobs/{job_id}", summary="A job's status, progress and (when done) result.")
    async def get_job(request: Request, job_id: str) -> dict[str, Any]:
        return svc(request).jobs.get(job_id).record().to_dict()

    @app.delete("/v1/jobs/{job_id}", summary="Cancel a job (or forget a finished one).")
    async def delete_job(request: Request, job_id: str) -> dict[str, Any]:
        s = svc(request)
        job = s.jobs.get(job_id)
        if not job.done.is_set():
            job.cancel("cancelled by DELETE /v1/jobs/{id}")
            await asyncio.to_thread(job.done.wait, 5.0)
        else:
            s.jobs.forget(job)
        return job.record().to_dict()

    # -- streams ------------------------------------------------------------------------------------
    @app.post(
        "/v1/streams",
        status_code=201,
        summary="Watch a stream or file (JSON: url or path, watch options).",
        openapi_extra=STREAM_BODY,
    )
    async def create_stream(request: Request) -> Response:
        s = svc(request)
        data = await read_json(
            request, settings, 'a stream takes JSON {"url": ...} or {"path": ...}, not a video\'s bytes'
        )
        given = [k for k in SOURCE_KEYS if k in data]
        if len(given) != 1:
            raise BadRequest('a stream needs exactly one of "url" and "path"')
        video = await checked_source(given[0], data[given[0]], settings)
        options = {k: v for k, v in data.items() if k not in SOURCE_KEYS}
        session = await asyncio.to_thread(s.add_stream, video, options)
        return JSONResponse(session.record().to_dict(), status_code=201)

    @app.get("/v1/streams", summary="Every stream with its state and counters.")
    async def list_streams(request: Request) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "streams": [x.record().to_dict() for x in list(svc(request).streams.values())],
        }

    @app.get("/v1/streams/{stream_id}", summary="One stream's state and counters.")
    async def get_stream(request: Request, stream_id: str) -> dict[str, Any]:
        return svc(request).stream(stream_id).record().to_dict()

    @app.delete("/v1/streams/{stream_id}", status_code=204, summary="Stop a stream: its listeners get the end record.")
    async def delete_stream(request: Request, stream_id: str) -> Response:
        s = svc(request)
        s.stream(stream_id)  # 404 before anything else
        await asyncio.to_thread(s.remove_stream, stream_id)
        return Response(status_code=204)

    @app.get(
        "/v1/streams/{stream_id}/events",
        summary="Server-Sent Events: each data line is one record of fvdeploy watch --json (window, event, gap, end).",
        response_class=Response,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def stream_events(request: Request, stream_id: str) -> Any:
        session = svc(request).stream(stream_id)
        last = request.headers.get("last-event-id")
        after = int(last) if last and last.strip().isdigit() else None
        replay, listener = session.subscribe(asyncio.get_running_loop(), after)
        return EventStream(
            replay,
            listener,
            heartbeat_s=settings.heartbeat_s,
            send_timeout_s=settings.idle_timeout_s,
            on_close=lambda: session.unsubscribe(listener),
        )

    @app.get("/v1/streams/{stream_id}/clips", summary="The stream's evidence clips (and their JSON sidecars).")
    async def list_clips(request: Request, stream_id: str) -> dict[str, Any]:
        session = svc(request).stream(stream_id)
        return {"schema_version": SCHEMA_VERSION, "clips": await asyncio.to_thread(session.clips)}

    @app.get("/v1/streams/{stream_id}/clips/{name}", summary="One clip (Range requests work: a <video> can seek).")
    async def get_clip(request: Request, stream_id: str, name: str) -> Response:
        session = svc(request).stream(stream_id)
        for clip in await asyncio.to_thread(session.clips):
            if clip["name"] == name:
                path = session.clips_dir / name
                return FileResponse(path, media_type=CLIP_SUFFIXES[path.suffix.lower()])
        raise NotFound(f"stream {stream_id} has no clip {name!r}")

    # -- the page and the metrics -------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, summary="The live page: streams, events, clips.")
    async def page() -> HTMLResponse:
        html = resources.files("fvdeploy.serve").joinpath("page/index.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    exporters: dict[int, Any] = {}  # prometheus-client's ASGI app for the service's registry

    async def metrics(scope: Scope, receive: Receive, send: Send) -> None:
        s = app.state.service
        if s is None:
            await JSONResponse({"error": "the model is loading"}, status_code=503)(scope, receive, send)
            return
        exporter = exporters.setdefault(id(s), make_asgi_app(registry=s.metrics.registry))
        await exporter(scope, receive, send)

    app.add_route("/metrics", _Asgi(metrics), include_in_schema=False)  # type: ignore[arg-type]  # an ASGI endpoint

    return _Metered(_Guard(app, settings.token), app)


async def wait_for_job(request: Request, job: Job) -> None:
    """Wait for the job without holding the event loop; cancel it if the client disconnects."""
    done = asyncio.ensure_future(asyncio.to_thread(job.done.wait))

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    gone = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait([done, gone], return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not job.done.is_set():
        job.cancel("cancelled: the client disconnected")
        await done


def api_error_of(job: Job) -> ApiError:
    """The answer of a synchronous request whose job failed: its status and one-line error."""
    message = job.error or "failed"
    if job.error_status == Unavailable.status:
        return Unavailable(message)
    cls = next((c for c in (BadRequest, Forbidden, Unprocessable) if c.status == job.error_status), Unprocessable)
    return cls(message)


class _Asgi:
    """A plain ASGI callable as a Starlette route endpoint (a function would be wrapped as a
    request handler)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.fn(scope, receive, send)


class _Guard:
    """Every path but ``/healthz`` needs ``Authorization: Bearer <token>`` (or the page's cookie,
    set by opening ``/?token=<token>`` once: a browser's EventSource and <video> cannot send
    headers). Without a token configured, everything is open (the server then binds loopback)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        auth = headers.get("authorization", "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if given is None and "cookie" in headers:
            cookie = SimpleCookie()
            with contextlib.suppress(Exception):
                cookie.load(headers["cookie"])
            given = cookie[COOKIE].value if COOKIE in cookie else None
        if token_matches(given, self.token):
            await self.app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if scope["path"] == "/" and token_matches((query.get("token") or [None])[0], self.token):
            response: Response = Response(
                status_code=303,
                headers={
                    "Location": "/",
                    "Set-Cookie": f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/",
                },
            )
        elif scope["path"] == "/" and "text/html" in headers.get("accept", ""):
            response = HTMLResponse(LOGIN_PAGE, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        else:
            why = "missing token" if given is None else "wrong token"
            response = JSONResponse(
                {"error": f"{why}: send Authorization: Bearer <token>"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        await response(scope, receive, send)


class _Metered:
    """Counts every answer by status and route (the route's template, so ids do not multiply the
    series) and times it, token refusals included."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI) -> None:
        self.app, self.fastapi_app = app, fastapi_app

    def __getattr__(self, name: str) -> Any:  # app.state, app.routes... read through
        return getattr(self.fastapi_app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [0]

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, sending)
        except BaseException:
            status[0] = status[0] or 500
            raise
        finally:
            s = self.fastapi_app.state.service
            if s is not None:
                route = getattr(scope.get("route"), "path", None) or "(unmatched)"
                s.metrics.requests.labels(status=str(status[0] or 499), route=route).inc()
                s.metrics.latency.labels(route=route).observe(time.perf_counter() - t0)


LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>fvdeploy: token</title></head>
<body style="font-family:system-ui,sans-serif;margin:3em">
<h1>fvdeploy</h1><p>This server needs its token.</p>
<form method="get" action="/"><input type="password" name="token" id="token" placeholder="token" autofocus>
<button type="submit" id="login">Open</button></form></body></html>"""
