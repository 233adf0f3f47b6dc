"""The closed sets several commands accept, built from the library's own torch-free names
modules (so ``--help`` does not load torch, and a backend or method added there appears here).
Typer shows them in --help and rejects anything else with a one-line usage error."""

from __future__ import annotations

from enum import Enum

from ..backends.names import BACKENDS, PRECISION_NAMES
from ..config import MODES
from ..models.names import ARCHS
from ..ops.names import METHODS
from ..runtime.names import DECODERS


def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    return Enum(name, [(v, v) for v in values], type=str, module=__name__)  # type: ignore[return-value]


BackendName = _choices("BackendName", BACKENDS)
Mode = _choices("Mode", MODES)
Method = _choices("Method", METHODS)
Decoder = _choices("Decoder", DECODERS)
Precision = _choices("Precision", PRECISION_NAMES)
Arch = _choices("Arch", ARCHS)
