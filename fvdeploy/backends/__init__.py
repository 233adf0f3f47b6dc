"""Inference backends behind one protocol (see ``base.Backend``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from ..errors import BackendError
from .names import BACKENDS

# torch loads with the first use of these, not with the package (``fvdeploy --help`` stays light)
__getattr__, __dir__ = lazy_exports(
    __name__, {name: ".base" for name in ("PRECISIONS", "Backend", "resolve_device", "resolve_precision")}
)

if TYPE_CHECKING:
    import torch

    from .base import PRECISIONS, Backend, resolve_device, resolve_precision


def create_backend(name: str, model_path: str | Path, device: torch.device, precision: str, **options) -> Backend:
    """Open ``model_path`` with backend ``name`` (``auto``: :func:`choose_backend`'s; the backend
    then carries the reason in ``backend.choice``). ``options`` carry mode/clusters overrides."""
    if name == "auto":
        from .choice import choose_backend

        chosen = choose_backend(device, model_path, options.get("requested_precision"))
        backend = create_backend(chosen.backend, model_path, device, precision, **options)
        backend.choice = chosen.reason  # type: ignore[misc]
        return backend
    if name == "torch":
        from ..bundle import load_model
        from .torch_backend import TorchBackend

        model = load_model(model_path)
        if options.get("config") is not None:
            model.config = options["config"]
        return TorchBackend(model, device, precision, options.get("features_precision"))
    if name == "onnxruntime":  # the export bundle MODEL/export (fvdeploy export)
        from .ort_backend import OrtBackend

        # requested_*: what the user asked for ("auto", None), which `device`/`precision` have already resolved
        return OrtBackend.open(
            model_path,
            options.get("config"),
            device=options.get("requested_device") or str(device),
            precision=options.get("requested_precision", precision),
            features_precision=options.get("features_precision"),
        )
    if name == "openvino":  # the same export bundle, compiled by OpenVINO for its CPU plugin
        from .openvino_backend import OpenVinoBackend

        return OpenVinoBackend.open(
            model_path,
            options.get("config"),
            device=options.get("requested_device") or str(device),
            precision=options.get("requested_precision", precision),
            features_precision=options.get("features_precision"),
        )
    if name == "tensorrt":
        from .trt_backend import TrtBackend

        requested = options.get("requested_precision", precision)
        return TrtBackend.open(
            model_path,
            options.get("config"),
            device,
            precision=requested,
            features_precision=options.get("features_precision") if requested else None,
        )
    raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def choose_backend(device: torch.device, model_dir: str | Path | None = None, precision: str | None = None):
    """What ``--backend auto`` runs: see :mod:`fvdeploy.backends.choice`."""
    from .choice import choose_backend as choose

    return choose(device, model_dir, precision)


__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "Backend",
    "choose_backend",
    "create_backend",
    "resolve_device",
    "resolve_precision",
]
