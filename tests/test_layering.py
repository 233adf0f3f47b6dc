"""The house's layering, written down once: which room may import which (README, Layout).

Every ``import`` of an fvdeploy module anywhere in the package (at module level or inside a
function: a lazy import is still a dependency) must go to a room on a lower level, or to its own
room. Rooms on one level do not import each other (``runtime`` and ``watch`` are two drivers of
one engine, neither knows the other).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO

# Lowest first. A room is a subpackage of fvdeploy (or a top-level module of it).
LEVELS: list[set[str]] = [
    {"_lazy", "errors"},
    {"records", "malloc", "sigstack", "ops", "assets", "drawing"},  # no model, no frames
    {"config"},  # reads ops.names (the closed set of methods)
    {"models", "io"},
    {"bundle"},  # the model folder: builds models
    {"export_record", "importers"},  # export bundles and foreign checkpoints, read into model folders
    {"backends"},
    {"engine"},
    {"runtime", "watch"},  # the two drivers
    {"training", "export", "serve", "distributed"},  # built on the drivers
    {"bench"},
    {"cli"},
    {"_entry"},
    {"__main__"},
]
LEVEL = {room: i for i, rooms in enumerate(LEVELS) for room in rooms}
# The package itself only re-exports lazily (fvdeploy/__init__.py); importing it loads nothing.
PACKAGE = "fvdeploy"


def module_of(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[0] in ("training", "export"):  # installed as fvdeploy.training / fvdeploy.export
        parts = ["fvdeploy", *parts]
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__version__" else PACKAGE


def imports(path: Path) -> list[tuple[int, str]]:
    module, is_package = module_of(path)
    package = module if is_package else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                names = [f"{base}.{node.module}"] if node.module else [f"{base}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
            found += [(node.lineno, n) for n in names]
    return [(line, name) for line, name in found if name == PACKAGE or name.startswith(PACKAGE + ".")]


def sources() -> list[Path]:
    return sorted(p for root in ("fvdeploy", "training", "export") for p in (REPO / root).rglob("*.py"))


def violations() -> list[str]:
    out = []
    for path in sources():
        here = room_of(module_of(path)[0])
        if here == PACKAGE:
            continue  # the package's lazy exports name every public room
        for line, target in imports(path):
            there = room_of(target)
            if there in (here, PACKAGE):
                continue
            if there not in LEVEL or here not in LEVEL:
                out.append(f"{path.relative_to(REPO)}:{line}: room {here!r} or {there!r} is not in LEVELS")
            elif LEVEL[there] >= LEVEL[here]:
                out.append(
                    f"{path.relative_to(REPO)}:{line}: {here} (level {LEVEL[here]}) imports {target} (level {LEVEL[there]})"
                )
    return out


def test_lower_rooms_never_import_higher_ones():
    assert violations() == []


def test_every_room_is_placed():
    rooms = {room_of(module_of(p)[0]) for p in sources()} - {PACKAGE}
    assert rooms <= set(LEVEL), sorted(rooms - set(LEVEL))


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The check can fail: an engine module that imports the classify driver is reported."""
    bad = REPO / "fvdeploy" / "engine" / "_layering_probe.py"
    bad.write_text("def f():\n    from ..runtime import Classifier\n")
    try:
        found = violations()
    finally:
        bad.unlink()
    assert any("_layering_probe.py:2: engine" in v and "fvdeploy.runtime" in v for v in found), found


@pytest.mark.parametrize("room", ["ops", "models", "io", "backends", "engine"])
def test_the_core_rooms_import_no_driver(room):
    drivers = {"runtime", "watch", "serve", "cli", "bench", "training", "export"}
    for path in (REPO / "fvdeploy" / room).rglob("*.py"):
        assert not {room_of(t) for _, t in imports(path)} & drivers, path
