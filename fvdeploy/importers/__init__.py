"""Import published checkpoints (official TSM code, mmaction2, torchvision ImageNet) into model folders."""

from .checkpoint import SOURCES, ImportOptions, ImportResult, import_checkpoint, infer_arch
from .labels import NAMED_LISTS, named_labels, read_labels_file
from .layouts import LAYOUTS, detect_layout
from .reading import read_checkpoint

__all__ = [
    "LAYOUTS",
    "NAMED_LISTS",
    "SOURCES",
    "ImportOptions",
    "ImportResult",
    "detect_layout",
    "import_checkpoint",
    "infer_arch",
    "named_labels",
    "read_checkpoint",
    "read_labels_file",
]
