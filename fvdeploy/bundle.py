"""The one model folder every part reads and writes (see docs/design.md#model-folder)::

    MODEL/config.json          ModelConfig as JSON
    MODEL/model.safetensors    weights (fp32 or fp16; loaded as fp32)
    MODEL/export/              optional, written by ``fvdeploy export``
    MODEL/train_state/         optional, written by ``fvdeploy train`` for --resume

Saving goes to a temporary sibling folder that is renamed into place, so a crash never leaves a
half-written model. Loading reads JSON and safetensors only: nothing in the files can run code.

Loading checks the folder before anything big is allocated (issue 24), each failure one line
naming the file and the field: no file is reached through a symlink that leaves the folder;
``config.json`` is at most ``MAX_CONFIG_BYTES``, at most ``config.MAX_CONFIG_DEPTH`` levels deep,
and every field has its type and range (``ModelConfig.validate``); the safetensors *header* (read
without the tensors) names exactly the tensors the config's architecture has, with their shapes,
floating-point dtypes for parameters and integer ones for counters, before the model is built;
the tensors read are finite.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .config import ModelConfig
from .errors import ModelError
from .models.registry import create_model
from .models.tsm_resnet import TSMResNet

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# 100,000 labels of 100 characters are 10 MB of JSON; a bigger config.json is not a config
MAX_CONFIG_BYTES = 16 << 20
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")  # safetensors' names
INT_DTYPES = ("I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64")


def inside(folder: str | Path, name: str | Path, what: str = "model folder") -> Path:
    """``folder / name``, refused (one line) when it leads outside ``folder`` (a symlink, or a
    ``..`` in a name a record gives): a model folder is read as one unit, never a file elsewhere."""
    folder = Path(folder)
    path = folder / name
    target = path.resolve()
    if not target.is_relative_to(folder.resolve()):
        how = "a symlink to" if path.is_symlink() or ".." not in Path(name).parts else "leads to"
        raise ModelError(f"{path}: {how} {target}, outside the {what} {folder}; copy the file in instead")
    return path


def read_json(path: Path, limit: int = MAX_CONFIG_BYTES) -> object:
    """A JSON file of at most ``limit`` bytes. ValueError whose text says what is wrong (too
    large, nested past what a parser follows, not JSON) and reads after ``FILE: ``; OSError."""
    size = path.stat().st_size
    if size > limit:
        raise ValueError(f"{size} bytes, more than the {limit >> 20} MiB a config can need")
    text = path.read_bytes()
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deep to be a config (thousands of levels)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not valid JSON ({e})") from None


def read_config(path: str | Path) -> ModelConfig:
    """The ModelConfig of a model folder, with one-line errors for every way it can be wrong."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: model not found")
    if not path.is_dir():
        raise ModelError(f"{path}: a model is a folder with {CONFIG_NAME} and {WEIGHTS_NAME}")
    cfg_path = inside(path, CONFIG_NAME)
    if not cfg_path.is_file():
        raise ModelError(f"{path}: no {CONFIG_NAME} in the model folder")
    try:
        data = read_json(cfg_path)
    except OSError as e:
        raise ModelError(f"{cfg_path}: cannot read ({e.strerror or e})") from None
    except ValueError as e:
        raise ModelError(f"{cfg_path}: {e}") from None
    try:
        config = ModelConfig.from_dict(data)  # type: ignore[arg-type]
    except ModelError as e:
        raise ModelError(f"{cfg_path}: {e}") from None
    from .models.registry import list_models

    if config.arch not in list_models():
        raise ModelError(f"{cfg_path}: arch: unknown {config.arch!r}; known: {', '.join(list_models())}")
    return config


def expected_tensors(config: ModelConfig) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Name -> (shape, dtype) of every tensor the config's model holds, from a model built on the
    ``meta`` device (no memory: a 2,000,000-class head costs nothing here)."""
    with torch.device("meta"):
        model = create_model(config)
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


def check_weights_header(path: str | Path, config: ModelConfig) -> None:
    """The safetensors header of ``path/model.safetensors`` (read without loading a tensor) must
    name exactly the config's tensors, with their shapes, a floating dtype where the model has a
    floating one and an integer dtype for counters. One-line ModelError naming the tensor."""
    wpath = inside(Path(path), WEIGHTS_NAME)
    if not wpath.is_file():
        raise ModelError(f"{Path(path)}: no {WEIGHTS_NAME} in the model folder")
    try:
        with safe_open(str(wpath), framework="pt") as f:
            header = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(
            f"{wpath}: corrupt safetensors file ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    arch = config.arch
    expected = expected_tensors(config)
    for key, (shape, dtype) in expected.items():
        if key not in header:
            raise ModelError(f"{wpath}: weights lack {key!r} that arch {arch} needs (config/weights mismatch)")
        got_shape, got_dtype = header[key]
        if got_shape != shape:
            raise ModelError(
                f"{wpath}: {key} has shape {got_shape} but the config needs {shape} (config/weights mismatch)"
            )
        allowed = FLOAT_DTYPES if dtype.is_floating_point else INT_DTYPES
        if got_dtype not in allowed:
            kind = "floating point" if dtype.is_floating_point else "an integer"
            raise ModelError(f"{wpath}: {key} is {got_dtype}; it must be {kind} ({', '.join(allowed)})")
    extra = sorted(set(header) - set(expected))
    if extra:
        raise ModelError(f"{wpath}: unexpected weight {extra[0]!r} for arch {arch} (config/weights mismatch)")


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of ``path/model.safetensors`` on the CPU; ModelError for a corrupt file or a
    floating tensor holding NaN or infinity (a model that would answer ``null`` scores)."""
    wpath = inside(Path(path), WEIGHTS_NAME)
    if not wpath.is_file():
        raise ModelError(f"{Path(path)}: no {WEIGHTS_NAME} in the model folder")
    try:
        state = load_file(str(wpath), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(
            f"{wpath}: corrupt safetensors file ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    check_finite(state, wpath)
    return state


def check_finite(state: dict[str, torch.Tensor], where: str | Path) -> None:
    """Every floating tensor of ``state`` is finite, else ModelError naming it and the count.

    One float64 sum per tensor in numpy (a NaN or an infinity makes the sum non-finite, and
    float64 cannot overflow on fp32/fp16 weights); only a non-finite sum is looked at closely.
    Measured under load 13 on this 2-core machine: 34-70 ms for the bundled ResNet-18 and a
    ResNet-50, where ``torch.isfinite(t).all()`` per tensor took 1.0-2.5 s (its two OpenMP threads
    wait for each other on a busy CPU); ``scripts/experiments/model_checks_cost.py``."""
    import numpy as np

    for key, value in state.items():
        if not value.is_floating_point():
            continue
        flat = value.detach().reshape(-1)
        arr = (flat.float() if flat.dtype == torch.bfloat16 else flat).numpy()  # numpy has no bf16
        if np.isfinite(np.add.reduce(arr, dtype=np.float64)):
            continue
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:  # else the sum of finite float64 weights overflowed: they are fine
            raise ModelError(f"{where}: {key} holds {bad} NaN or infinite value(s) of {arr.size}")


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
    check_weights_header(path, config)  # before the model exists: names, shapes, dtypes
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
