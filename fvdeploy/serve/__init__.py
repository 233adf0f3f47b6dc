"""``fvdeploy serve``: classify and watch as an HTTP service (docs/serve.md).

- ``settings``: :class:`ServeSettings` (torch-free, validated once);
- ``service``: the service layer: one loaded model, classify jobs on worker threads
  (``jobs``), stream sessions each on its own watcher (``streams``), metrics (``metrics``);
- ``app``: the FastAPI routes (thin), the token check, request metrics; ``sse``: event streams;
- ``server``: uvicorn with a graceful SIGTERM; ``ray_serve``: the same app on Ray Serve.

Needs the ``serve`` extra (``pip install 'fvdeploy[serve]'``)."""

from .settings import ServeSettings, SettingsError

__all__ = ["ServeSettings", "SettingsError"]
