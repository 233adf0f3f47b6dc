"""Inference backends behind one protocol (see ``base.Backend``)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import BackendError
from .base import BACKENDS, PRECISIONS, Backend, resolve_device, resolve_precision


def create_backend(name: str, model_path: str | Path, device: torch.device, precision: str, **options) -> Backend:
    """Open ``model_path`` with backend ``name``. ``options`` carry mode/clusters overrides."""
    if name == "torch":
        from ..bundle import load_model
        from .torch_backend import TorchBackend

        model = load_model(model_path)
        if options.get("config") is not None:
            model.config = options["config"]
        return TorchBackend(model, device, precision, options.get("features_precision"))
    if name in BACKENDS:
        raise BackendError(f"backend {name!r} needs an export bundle (fvdeploy export) and is not available in this build")
    raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "PRECISIONS", "Backend", "create_backend", "resolve_device", "resolve_precision"]
