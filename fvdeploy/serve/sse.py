"""Server-Sent Events for one stream session: the response writes ``id: N`` and ``data: <record>``
per record (the record exactly as ``fvdeploy watch --json`` prints it), a comment line when the
stream is quiet for ``heartbeat_s`` (so proxies and clients see it alive), and ends after the
``end`` record. It also ends when the client disconnects (noticed at once: the request's receive
channel is watched) or reads nothing for ``send_timeout_s`` (an idle client), or falls too far
behind (it may reconnect with ``Last-Event-ID``: it gets what it missed while it is still kept).

Written on the ASGI interface rather than Starlette's ``StreamingResponse`` for those last two:
a send that waits on a client that does not read must time out, and the listener must be
removed the moment the client leaves, not at the next heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .streams import CLOSE, Listener


class EventStream(Response):
    """An ASGI response; ``on_close()`` runs however it ends (it unsubscribes the listener).
    A Starlette ``Response`` only so that FastAPI passes it through as it is."""

    media_type = "text/event-stream"

    def __init__(
        self,
        replay: list[tuple[int, str]],
        listener: Listener,
        *,
        heartbeat_s: float,
        send_timeout_s: float,
        on_close: Callable[[], None],
    ) -> None:
        self.status_code, self.background = 200, None
        self.raw_headers: list[tuple[bytes, bytes]] = []  # written by __call__
        self.replay, self.listener = replay, listener
        self.heartbeat_s, self.send_timeout_s, self.on_close = heartbeat_s, send_timeout_s, on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def timed_send(message: dict[str, Any]) -> None:
            await asyncio.wait_for(send(message), self.send_timeout_s)

        async def body(chunk: bytes) -> None:
            await timed_send({"type": "http.response.body", "body": chunk, "more_body": True})

        async def pump() -> None:
            await timed_send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no"),  # nginx: do not buffer the events
                    ],
                }
            )
            await body(b": fvdeploy events\n\n")
            for seq, line in self.replay:
                await body(frame(seq, line))
                if is_end(line):
                    return
            while True:
                try:
                    item = await asyncio.wait_for(self.listener.queue.get(), self.heartbeat_s)
                except asyncio.TimeoutError:
                    await body(b": keep-alive\n\n")
                    continue
                if item is CLOSE:
                    return
                seq, line = item
                await body(frame(seq, line))
                if is_end(line):
                    return

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        tasks = [asyncio.ensure_future(pump()), asyncio.ensure_future(disconnected())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if tasks[0] in done and tasks[0].exception() is None:
                with contextlib.suppress(Exception):
                    await timed_send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(BaseException):
                    await t
            self.on_close()


def frame(seq: int, line: str) -> bytes:
    return f"id: {seq}\ndata: {line}\n\n".encode()


def is_end(line: str) -> bool:
    return line.startswith('{"type": "end",')  # records.dumps writes "type" first
