"""Package data: the bundled default model, class-name lists, a tiny clip."""

from pathlib import Path

ASSETS = Path(__file__).resolve().parent
DEFAULT_MODEL = ASSETS / "default_model"


def default_model_path() -> Path | None:
    """The bundled default model folder, or None while none is shipped."""
    return DEFAULT_MODEL if (DEFAULT_MODEL / "config.json").is_file() else None
