"""Running the app with uvicorn in this process (``fvdeploy serve``; the tests run it in a thread).

SIGTERM (and Ctrl-C) stop it gracefully: uvicorn stops accepting connections; the service stops
taking work, winds every stream down so that each listener gets its ``end`` record, lets running
jobs finish for ``shutdown_grace_s`` and then cancels them; uvicorn waits for the open requests
(a cancelled synchronous classification answers 503); the command then exits 128 + the signal's
number (143), as every fvdeploy command does (docs/design.md#signals)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import create_app
from .service import Service
from .settings import ServeSettings

log = logging.getLogger(__name__)


class Server(uvicorn.Server):
    """uvicorn's server whose shutdown first tells the service, so that long-lived event streams
    end (with their ``end`` records) instead of holding the shutdown until its timeout."""

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service

    async def shutdown(self, sockets: Any = None) -> None:
        self.service.begin_shutdown()
        await super().shutdown(sockets=sockets)


class _Protocol(H11Protocol):
    """uvicorn's h11 protocol with one more timer: a connection must finish a request's line and
    headers within ``timeout_keep_alive`` of opening or of its last answer. uvicorn closes an idle
    keep-alive connection, but not one that never sends a request, or sends its headers a byte at
    a time (measured: both still open after 40 s). A request whose headers arrived is the app's to
    time out (``read_timeout_s``: 408)."""

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.timeout_keep_alive, self._headers_late)

    def _headers_late(self) -> None:
        in_request = self.cycle is not None and not self.cycle.response_complete
        if not in_request and not self.transport.is_closing():
            self.transport.close()


def build_server(settings: ServeSettings, service: Service, *, log_level: str = "warning") -> Server:
    """A :class:`Server` for ``settings`` (host, port, timeouts) around ``service``."""
    config = uvicorn.Config(
        create_app(settings, service),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=log_level in ("debug", "info"),
        timeout_keep_alive=max(1, round(settings.idle_timeout_s)),
        # the service's own grace (jobs), then a margin for the answers to be written
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_s + 5)),
        lifespan="on",
        http=_Protocol,
        proxy_headers=False,
        server_header=False,
    )
    return Server(config, service)
