"""Lazy package exports (PEP 562), so ``fvdeploy --help`` and the torch-free names modules
(``backends.names``, ``ops.names``, ``models.names``, ``runtime.names``) import without torch,
torchvision or OpenCV. A package lists ``name -> submodule``; the submodule is imported on the
first access of one of its names."""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from typing import Any


class _LazyPackage(types.ModuleType):
    """A package whose exported function may share its submodule's name (``ops.temporal_shift``):
    importing the submodule must not rebind the package attribute from the function to the module,
    as an eager ``from .temporal_shift import temporal_shift`` in ``__init__`` used to ensure."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in self.__dict__.get("_lazy_names", ()):
            return
        super().__setattr__(name, value)


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``exports`` maps each public name to the submodule (relative, e.g. ``".classifier"``) that
    defines it. Returns the package's ``__getattr__`` and ``__dir__``."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)  # later accesses skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    module = sys.modules[package]
    module._lazy_names = frozenset(exports)  # type: ignore[attr-defined]
    module.__class__ = _LazyPackage
    return __getattr__, __dir__
