"""Reading a request into what the service classifies: an upload streamed to a file (size limit,
read timeout, text refused), or JSON ``{"url": ...}`` / ``{"path": ...}`` checked against the
security rules, plus the options (JSON fields or query parameters, the CLI's names in
snake_case). Every refusal is an :class:`~fvdeploy.serve.errors.ApiError`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import ClientDisconnect, Request

from .errors import BadRequest, RequestTimeout, TooLarge, Unprocessable
from .security import check_path, check_url, file_is_text
from .settings import URL_SCHEMES, ServeSettings

JSON_LIMIT = 1 << 20  # a JSON request body (url or path and options) is small
SOURCE_KEYS = ("url", "path")


@dataclass
class VideoInput:
    """What the classifier opens (``target``: an upload's file, a real path, a URL) and what the
    records call it (``name``: ``?name=``, the path as the client gave it, the URL). ``upload``:
    the file to delete afterwards."""

    target: str
    name: str
    upload: Path | None = None

    def discard(self) -> None:
        if self.upload is not None:
            self.upload.unlink(missing_ok=True)


def media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lower case ("" when absent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def is_json(request: Request) -> bool:
    ctype = media_type(request)
    return ctype == "application/json" or ctype.endswith("+json")


async def receive_body(request: Request, settings: ServeSettings, limit: int, sink: Any = None) -> bytes:
    """The request body, at most ``limit`` bytes (:class:`TooLarge` beyond, before reading when
    ``Content-Length`` says so), each piece within ``read_timeout_s`` (:class:`RequestTimeout`).
    With ``sink`` (a binary file) the pieces are written there and b"" is returned. Raises
    ``ClientDisconnect`` when the client goes away mid-body."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("malformed Content-Length")
        if int(declared) > limit:
            raise TooLarge(f"the body has {int(declared)} bytes; this server takes at most {limit}")
    received, chunks = 0, []
    while True:
        try:
            message = await asyncio.wait_for(request.receive(), settings.read_timeout_s)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"no request data for {settings.read_timeout_s:g} s") from None
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        body = message.get("body", b"")
        received += len(body)
        if received > limit:
            raise TooLarge(f"the body is larger than this server takes ({limit} bytes)")
        if body:
            if sink is not None:
                sink.write(body)
            else:
                chunks.append(body)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def read_json(request: Request, settings: ServeSettings, what: str = "") -> dict[str, Any]:
    """The body as a JSON object; ``what`` (e.g. 'a stream takes JSON {"url": ...} or {"path": ...}')
    is said when the body is not JSON at all (a video's bytes sent where only JSON goes)."""
    body = await receive_body(request, settings, JSON_LIMIT)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        if what and isinstance(e, UnicodeDecodeError):
            raise BadRequest(f"the body is not JSON: {what}") from None
        raise BadRequest(f"the body is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise BadRequest("the JSON body must be an object")
    return data


async def read_video_request(
    request: Request, settings: ServeSettings, validate: Callable[[dict[str, Any]], dict[str, Any]]
) -> tuple[VideoInput, dict[str, Any]]:
    """The video of a classify/job request and its options, ``validate(options)``d before the
    video is read or checked (a bad option is a 400 before a 500-MiB upload is received): JSON
    with ``url`` or ``path``, else the body is the video (options in the query)."""
    query = dict(request.query_params)
    if is_json(request):
        data = await read_json(request, settings)
        given = [k for k in SOURCE_KEYS if k in data]
        if len(given) != 1:
            raise BadRequest('the JSON body needs exactly one of "url" and "path" (or send the video\'s bytes)')
        options = {**query, **{k: v for k, v in data.items() if k not in SOURCE_KEYS}}
        options.pop("name", None)
        options = validate(options)
        return await checked_source(given[0], data[given[0]], settings), options
    if media_type(request).startswith("multipart/"):
        # a form's boundaries and headers around the file would be taken for a corrupt video
        raise BadRequest(
            "multipart form uploads are not taken: send the video's bytes as the body "
            "(curl --data-binary @FILE -H 'Content-Type: video/mp4')"
        )
    name = query.pop("name", None) or "upload"
    options = validate(query)
    return await receive_upload(request, settings, name), options


async def checked_source(key: str, value: Any, settings: ServeSettings) -> VideoInput:
    """A ``url`` (scheme and host checked, off the event loop: DNS) or a ``path`` (below an
    allowed root); the records name it as the client did."""
    if key == "url":
        url = await asyncio.to_thread(check_url, value, URL_SCHEMES, settings.allow_private_urls)
        return VideoInput(target=url, name=url)
    real = check_path(value, settings.allow_root)
    if not os.path.isfile(real):
        raise Unprocessable(f"{value}: no such file" if not os.path.exists(real) else f"{value}: not a file")
    # A playlist, concat or SDP file below the root would make FFmpeg open whatever it lists, files
    # outside the root and loopback URLs included: a path must be a video itself.
    if file_is_text(real):
        raise Unprocessable(
            f"{value}: a text file (a playlist, concat list or SDP?), not a video: a path must name a video file"
        )
    return VideoInput(target=real, name=value)


async def receive_upload(request: Request, settings: ServeSettings, name: str) -> VideoInput:
    """Stream the body to a file in the work folder (``--max-upload-mib``); refuse an empty body
    (400) and text (422: a playlist or SDP file would make FFmpeg open other files and hosts)."""
    folder = Path(settings.work_dir or ".")
    suffix = Path(name).suffix.lower()
    suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ""  # helps FFmpeg guess raw streams (.h264)
    path = folder / f"upload-{uuid.uuid4().hex}{suffix}"
    try:
        with open(path, "wb") as f:
            await receive_body(request, settings, settings.max_upload_mib << 20, sink=f)
        size = path.stat().st_size
        if size == 0:
            raise BadRequest('the body is empty: send the video\'s bytes, or JSON {"url": ...} or {"path": ...}')
        if file_is_text(path):
            raise Unprocessable(
                f"{name}: the upload is text, not a video (send JSON with Content-Type: application/json "
                "for a URL or a path)"
            )
    except (Exception, asyncio.CancelledError, ClientDisconnect):
        path.unlink(missing_ok=True)
        raise
    return VideoInput(target=str(path), name=name, upload=path)
