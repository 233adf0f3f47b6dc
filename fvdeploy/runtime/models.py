"""Which model folder to use when the user names none."""

from __future__ import annotations

from pathlib import Path

from ..assets import default_model_path
from ..errors import ModelError


def resolve_model_path(model: str | Path | None) -> Path:
    if model is not None:
        return Path(model)
    path = default_model_path()
    if path is None:
        raise ModelError("no bundled default model in this install; pass --model MODEL_DIR")
    return path
