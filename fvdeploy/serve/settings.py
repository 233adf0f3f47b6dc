"""How ``fvdeploy serve`` runs: one typed, validated object (torch-free, so the command line
checks it before the model loads). Field names are the CLI's flags in snake_case."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FvdeployError
from ..runtime.options import ClassifyOptions

# The URL schemes a client may name (docs/serve.md, Security); everything else (file:, concat:,
# data:, ftp:...) would let FFmpeg read what the service must not.
URL_SCHEMES = ("http", "https", "rtsp", "rtmp", "srt")


class SettingsError(FvdeployError):
    """A setting out of range, or a combination the service refuses to start with (exit 2)."""


@dataclass
class ServeSettings:
    """Everything the service needs besides the model (``classify``: how to load it).

    Network: ``host``, ``port``; ``token`` (every endpoint but ``/healthz`` then needs
    ``Authorization: Bearer <token>``; a non-loopback ``host`` without one is refused).
    Inputs: ``allow_root`` (folders whose files ``{"path": ...}`` may name; empty: no paths),
    ``allow_private_urls`` (URLs to loopback, private and link-local hosts), ``max_upload_mib``.
    Load: ``max_jobs`` (classify requests and jobs queued or running), ``max_streams``,
    ``workers`` (threads that classify; the streams have a thread each).
    Time: ``read_timeout_s`` (a request body that sends nothing for this long: 408),
    ``idle_timeout_s`` (an idle keep-alive connection, or an event stream whose client reads
    nothing, is closed), ``heartbeat_s`` (a comment on quiet event streams), ``shutdown_grace_s``
    (SIGTERM: running jobs may finish for this long, then they are cancelled).
    Memory: ``keep_jobs`` finished jobs and ``keep_streams`` ended streams stay readable;
    ``history`` records per stream are replayed to a listener that connects late;
    ``listener_queue`` records may wait for a slow listener before it is disconnected.
    ``work_dir``: uploads while they are classified (default: a temporary folder);
    ``clips_dir``: each stream's evidence clips in ``clips_dir/<stream id>/`` (default: in the
    work folder)."""

    classify: ClassifyOptions = field(default_factory=ClassifyOptions)
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    allow_root: list[str] = field(default_factory=list)
    allow_private_urls: bool = False
    max_upload_mib: int = 512
    max_streams: int = 8
    max_jobs: int = 16
    workers: int = 2
    read_timeout_s: float = 30.0
    idle_timeout_s: float = 30.0
    heartbeat_s: float = 15.0
    shutdown_grace_s: float = 10.0
    keep_jobs: int = 256
    keep_streams: int = 64
    history: int = 4096
    listener_queue: int = 4096
    work_dir: str | None = None
    clips_dir: str | None = None

    def validate(self) -> ServeSettings:
        """Check every field; returns ``self``. Raises :class:`SettingsError` (one line)."""
        self.classify.validate()
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"--port must be in 0..65535, got {self.port}")
        for name in ("max_upload_mib", "max_streams", "max_jobs", "workers", "keep_jobs", "keep_streams"):
            if getattr(self, name) < 1:
                raise SettingsError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("history", "listener_queue"):
            if getattr(self, name) < 16:
                raise SettingsError(f"{name} must be >= 16, got {getattr(self, name)}")
        for name in ("read_timeout_s", "idle_timeout_s", "heartbeat_s"):
            if not getattr(self, name) > 0:
                raise SettingsError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.shutdown_grace_s < 0:
            raise SettingsError(f"--shutdown-grace must be >= 0, got {self.shutdown_grace_s}")
        if self.token is not None and (not self.token.strip() or any(c.isspace() for c in self.token)):
            raise SettingsError("--token must be a non-empty string without spaces")
        roots = []
        for root in self.allow_root:
            p = Path(root).expanduser()
            if not p.is_dir():
                raise SettingsError(f"--allow-root {root}: not a directory")
            roots.append(os.path.realpath(p))
        self.allow_root = roots
        if self.token is None and not is_loopback_host(self.host):
            raise SettingsError(
                f"--host {self.host} is reachable from other machines: give --token (or FVDEPLOY_TOKEN), "
                "or bind 127.0.0.1"
            )
        return self

    def replace(self, **changes: object) -> ServeSettings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def is_loopback_host(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address (``0.0.0.0`` and ``::`` are
    every interface: not loopback). A name that does not resolve is not loopback."""
    text = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(text, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos)
