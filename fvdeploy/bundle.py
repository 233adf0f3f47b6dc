"""The one model folder every part reads and writes (see docs/design.md#model-folder)::

    MODEL/config.json          ModelConfig as JSON
    MODEL/model.safetensors    weights (fp32 or fp16; loaded as fp32)
    MODEL/export/              optional, written by ``fvdeploy export``
    MODEL/train_state/         optional, written by ``fvdeploy train`` for --resume

Saving goes to a temporary sibling folder that is renamed into place, so a crash never leaves a
half-written model. Loading reads JSON and safetensors only: nothing in the files can run code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import ModelConfig
from .errors import ModelError
from .models.registry import create_model
from .models.tsm_resnet import TSMResNet

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def read_config(path: str | Path) -> ModelConfig:
    """The ModelConfig of a model folder, with one-line errors for every way it can be wrong."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: model not found")
    if not path.is_dir():
        raise ModelError(f"{path}: a model is a folder with {CONFIG_NAME} and {WEIGHTS_NAME}")
    cfg_path = path / CONFIG_NAME
    if not cfg_path.is_file():
        raise ModelError(f"{path}: no {CONFIG_NAME} in the model folder")
    try:
        data = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{cfg_path}: not valid JSON ({e})") from None
    try:
        return ModelConfig.from_dict(data)
    except ModelError as e:
        raise ModelError(f"{cfg_path}: {e}") from None


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    wpath = Path(path) / WEIGHTS_NAME
    if not wpath.is_file():
        raise ModelError(f"{Path(path)}: no {WEIGHTS_NAME} in the model folder")
    try:
        return load_file(str(wpath), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(
            f"{wpath}: corrupt safetensors file ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None


def load_state(model: TSMResNet, state: dict[str, torch.Tensor], where: str) -> None:
    """Load ``state`` into ``model`` after checking every name and shape (one-line error otherwise)."""
    own = model.state_dict()
    for key, value in own.items():
        if key not in state:
            raise ModelError(
                f"{where}: weights lack {key!r} that arch {model.config.arch} needs (config/weights mismatch)"
            )
        if tuple(state[key].shape) != tuple(value.shape):
            raise ModelError(
                f"{where}: {key} has shape {tuple(state[key].shape)} but the config needs {tuple(value.shape)} "
                "(config/weights mismatch)"
            )
    extra = sorted(set(state) - set(own))
    if extra:
        raise ModelError(
            f"{where}: unexpected weight {extra[0]!r} for arch {model.config.arch} (config/weights mismatch)"
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def load_model(path: str | Path) -> TSMResNet:
    """Rebuild a model from its folder, in eval mode, fp32 on the CPU."""
    config = read_config(path)
    model = create_model(config)
    load_state(model, read_weights(path), str(Path(path) / WEIGHTS_NAME))
    return model.eval()


def save_model(
    model: TSMResNet, path: str | Path, *, dtype: torch.dtype | None = None, overwrite: bool = False
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` atomically. Refuses an existing folder unless
    ``overwrite``; any other content of an overwritten folder (``export/``, ``train_state/``) is kept."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ModelError(f"{path}: already exists (refusing to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a model folder is shared like any other
    try:
        if path.exists():  # keep what else the folder holds
            for item in path.iterdir():
                if item.name not in (CONFIG_NAME, WEIGHTS_NAME):
                    (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        (tmp / CONFIG_NAME).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def replace_dir(src: Path, dst: Path) -> None:
    """Move folder ``src`` to ``dst``; an existing ``dst`` is swapped out and removed afterwards."""
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def weights_hash(path: str | Path) -> str:
    """sha256 of a model folder's weights file: identifies the source of exports and imports."""
    return sha256_file(Path(path) / WEIGHTS_NAME)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (weights and engines can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve_model_path(model: str | Path | None) -> Path:
    """The model folder to use: ``model``, or the bundled default model when None (a
    ``ModelError`` when this install ships none)."""
    if model is not None:
        return Path(model)
    from .assets import default_model_path

    path = default_model_path()
    if path is None:
        raise ModelError("no bundled default model in this install; pass --model MODEL_DIR")
    return path
