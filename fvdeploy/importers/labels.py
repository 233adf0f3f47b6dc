"""Class names for imported checkpoints: the shipped lists (in the order the published checkpoints
use, see ``fvdeploy/assets/labels/README.md``) or a user's file, one name per line."""

from __future__ import annotations

from pathlib import Path

from ..assets import ASSETS
from ..errors import ModelError

LABELS_DIR = ASSETS / "labels"
NAMED_LISTS = {"kinetics400": "kinetics400.txt", "sthv2": "sthv2.txt"}


def read_labels_file(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"{path}: labels file not found (or name a shipped list: {', '.join(NAMED_LISTS)})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: cannot read labels file ({e})") from None
    lines = [ln.strip() for ln in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ModelError(f"{path}: labels file is empty")
    if "" in lines:
        raise ModelError(f"{path}: line {lines.index('') + 1} is blank (one class name per line, in class-index order)")
    return lines


def named_labels(name: str) -> list[str]:
    return read_labels_file(LABELS_DIR / NAMED_LISTS[name])


def resolve_labels(spec: str | None, num_classes: int, dataset: str | None) -> tuple[list[str], str, str | None]:
    """``(labels, where they came from, warning or None)`` for a checkpoint with ``num_classes``."""
    if spec is not None:
        labels = named_labels(spec) if spec in NAMED_LISTS else read_labels_file(spec)
        if len(labels) != num_classes:
            raise ModelError(f"the checkpoint has {num_classes} classes but --labels {spec} has {len(labels)} names")
        return labels, spec, None
    if dataset in NAMED_LISTS and num_classes == len(named_labels(dataset)):
        return named_labels(dataset), dataset, None
    if dataset is None and num_classes == 400:
        return (
            named_labels("kinetics400"),
            "kinetics400",
            "400 classes and no dataset named in the file: assumed Kinetics-400",
        )
    generic = [f"class_{i}" for i in range(num_classes)]
    what = f"dataset {dataset}" if dataset else "an unnamed dataset"
    return (
        generic,
        "generic",
        f"no class names shipped for {what} ({num_classes} classes): names are class_0.. (pass --labels FILE)",
    )
