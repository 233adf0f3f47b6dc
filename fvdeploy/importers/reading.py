"""Read a foreign checkpoint without running anything it contains.

``torch.load(weights_only=True)`` accepts tensors, containers and plain Python values only. Real
published files sometimes hold a few numpy values in their metadata (mmcv's ``hook_msgs`` keeps a
``numpy.float64`` best score); those numeric scalars and their dtypes are allow-listed by name, and
nothing else: a refusal names the file and the refused global (``posix.system``), or says
that it met a pickle opcode that loads code (``REDUCE``, ``GLOBAL``, ...) or one the safe loader
does not read (a plain ``pickle.dump`` of protocol 4 starts with ``FRAME``: it is no
``torch.save`` checkpoint). torch's warning about such a protocol is not printed: the refusal
says it in one line.
"""

from __future__ import annotations

import pickletools
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..bundle import sha256_file
from ..errors import ModelError


def _numpy_allow_list() -> list[Any]:
    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    allowed: list[Any] = [scalar, np.dtype]
    # Files written under numpy 1.x name the scalar constructor by its old module path.
    allowed.append((scalar, "numpy.core.multiarray.scalar"))
    # dtype classes of numeric scalars only: an object, string or void dtype could carry arbitrary data.
    dtypes = getattr(np, "dtypes", None)
    for name in dir(dtypes) if dtypes is not None else []:
        cls = getattr(dtypes, name)
        scalar_type = getattr(cls, "type", None)
        if name.endswith("DType") and isinstance(scalar_type, type) and issubclass(scalar_type, (np.number, np.bool_)):
            allowed.append(cls)
    return allowed


_REFUSED = (
    re.compile(r"Unsupported global: GLOBAL (\S+)"),
    re.compile(r"unsupported GLOBAL (\S+)"),
    re.compile(r"Unsupported class (\S+)"),
    re.compile(r"but got <class '([^']+)'>"),
)
_OPERAND = re.compile(r"Unsupported operand (\d+)")
# opcodes that import or call something: the ways a pickle runs code
CODE_OPCODES = {
    "GLOBAL",
    "STACK_GLOBAL",
    "INST",
    "OBJ",
    "NEWOBJ",
    "NEWOBJ_EX",
    "REDUCE",
    "BUILD",
    "EXT1",
    "EXT2",
    "EXT4",
}
OPCODE_NAMES = {op.code.encode("latin-1")[0]: op.name for op in pickletools.opcodes}
REFUSAL_TAIL = (
    "only tensors, containers, plain values and numpy numeric scalars are loaded; "
    "fvdeploy never runs code from a checkpoint"
)


def read_checkpoint(path: str | Path) -> tuple[Any, str]:
    """The unpickled object of a ``.pth`` file (zip or legacy format) and the file's sha256."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: checkpoint file not found")
    if not path.is_file():
        raise ModelError(f"{path}: not a file (name the .pth checkpoint itself)")
    try:
        digest = sha256_file(path)
    except OSError as e:
        raise ModelError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        with torch.serialization.safe_globals(_numpy_allow_list()), warnings.catch_warnings():
            # "Detected pickle protocol 4 in the checkpoint ...": a refusal below says it in one line
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types on corrupt input; all mean "unreadable"
        raise ModelError(_explain(path, e)) from None
    return obj, digest


def _explain(path: Path, e: Exception) -> str:
    text = str(e)
    for pattern in _REFUSED:
        m = pattern.search(text)
        if m:
            return f"{path}: refused to unpickle {m.group(1).rstrip('.,')} ({REFUSAL_TAIL})"
    m = _OPERAND.search(text)
    if m:
        code = int(m.group(1))
        name = OPCODE_NAMES.get(code, f"#{code}")
        if name in CODE_OPCODES:
            return f"{path}: refused a pickle opcode that loads code ({name}) ({REFUSAL_TAIL})"
        return (
            f"{path}: refused pickle opcode {name} ({code}), which the safe loader does not read: a plain "
            f"pickle, not a torch.save checkpoint? ({REFUSAL_TAIL})"
        )
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    detail = lines[-1] if lines else ""
    if "Weights only load failed" in text:
        detail = next((ln for ln in lines if "WeightsUnpickler error" in ln or "Unsupported" in ln), detail)
    detail = detail.split(". ")[0].rstrip(".")[:160]
    if path.stat().st_size == 0:
        detail = "the file is empty"
    elif not detail or detail == type(e).__name__:
        detail = "the data ends early or is not a pickle"
    return f"{path}: not a readable PyTorch checkpoint, truncated or corrupt ({type(e).__name__}: {detail})"
