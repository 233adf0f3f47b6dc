"""Import a published checkpoint into a model folder: read safely, map the keys, check every name and
shape, record how the source fed its model, write atomically."""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..bundle import CONFIG_NAME, replace_dir, save_model
from ..config import MODES, ModelConfig
from ..errors import ModelError
from ..models import create_model
from ..models.tsm_resnet import TSMResNet
from ..ops.clustering import METHODS
from .labels import NAMED_LISTS, resolve_labels
from .layouts import LAYOUTS, Converted, SourceFacts, convert, detect_layout, wrong_layout
from .reading import read_checkpoint

SOURCES = (*LAYOUTS, "auto")
# Published TSM defaults, used where a file does not say.
DEFAULT_SEGMENTS = 8
DEFAULT_SHIFT_DIV = 8
SUPPORTED_ARCHS = ("resnet18", "resnet50")
_ARCH_SHAPES = {
    (False, (2, 2, 2, 2)): "resnet18",
    (False, (3, 4, 6, 3)): "resnet34",
    (True, (3, 4, 6, 3)): "resnet50",
    (True, (3, 4, 23, 3)): "resnet101",
    (True, (3, 8, 36, 3)): "resnet152",
}


@dataclass
class ImportOptions:
    """What ``fvdeploy import-checkpoint`` takes besides SRC and DIR (None: decided by the file)."""

    source: str = "auto"  # tsm | mmaction2 | torchvision | auto
    labels: str | None = None  # kinetics400 | sthv2 | a file
    mode: str | None = None  # full | tsm
    segments: int | None = None  # TSM mode K; 0 = all frames
    clusters: int | None = None  # full mode G
    method: str = "cumulative"
    force: bool = False

    def validate(self) -> None:
        if self.source not in SOURCES:
            raise ModelError(f"unknown checkpoint source {self.source!r}; choose one of {', '.join(SOURCES)}")
        if self.mode is not None and self.mode not in MODES:
            raise ModelError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.method not in METHODS:
            raise ModelError(f"unknown clustering method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.segments is not None and self.segments < 0:
            raise ModelError(f"--segments must be >= 0 (0 = every frame), got {self.segments}")
        if self.clusters is not None and self.clusters < 1:
            raise ModelError(f"--clusters must be >= 1, got {self.clusters}")


@dataclass
class ImportResult:
    path: Path
    config: ModelConfig
    layout: str
    sha256: str
    labels_from: str
    warnings: list[str] = field(default_factory=list)


def import_checkpoint(src: str | Path, out: str | Path, options: ImportOptions | None = None) -> ImportResult:
    """Convert the checkpoint ``src`` into the model folder ``out``. Nothing is written unless every
    tensor of the file found its place in the model with the right shape. Assumptions made where
    the file is silent come back in ``ImportResult.warnings`` (the CLI prints them)."""
    opts = options or ImportOptions()
    opts.validate()
    src, out = Path(src), Path(out)
    _check_destination(out, opts.force)
    obj, digest = read_checkpoint(src)
    layout = detect_layout(obj) if opts.source == "auto" else opts.source
    if layout is None:
        raise wrong_layout(obj, "tsm", src)
    _check_arch_field(obj, None, src)
    converted = convert(obj, layout, src)
    arch, num_classes = infer_arch(converted, src)
    _check_arch_field(obj, arch, src)
    labels, labels_from, label_warning = resolve_labels(opts.labels, num_classes, converted.facts.dataset)
    warnings = [w for w in [label_warning, *_setup_warnings(converted.facts, opts)] if w]
    config = _make_config(converted.facts, opts, arch, labels, src, digest)
    model = create_model(config)
    load_converted(model, converted, src)
    _write(model.eval(), out)
    return ImportResult(out, config, layout, digest, labels_from, warnings)


# -- pieces ----------------------------------------------------------------------------------------
def infer_arch(converted: Converted, path: Path) -> tuple[str, int]:
    """Architecture and class count, read off the tensors (torchvision names)."""
    state = converted.state
    stem, fc = state.get("conv1.weight"), state.get("fc.weight")
    if stem is None or stem.dim() != 4:
        raise ModelError(f"{path}: no ResNet stem weights (conv1) in this checkpoint")
    if stem.shape[1] != 3:
        raise ModelError(
            f"{path}: {converted.source_key['conv1.weight']} takes {stem.shape[1]} input channels; "
            "fvdeploy feeds RGB frames (3 channels): optical-flow and RGB-diff models are not supported"
        )
    if fc is None or fc.dim() != 2:
        raise ModelError(f"{path}: no classifier weights (new_fc / cls_head.fc_cls / fc) in this checkpoint")
    bottleneck = any(re.match(r"^layer[1-4]\.\d+\.conv3\.weight$", k) for k in state)
    depth = tuple(len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5))
    arch = _ARCH_SHAPES.get((bottleneck, depth))
    if arch is None:
        kind = "Bottleneck" if bottleneck else "BasicBlock"
        raise ModelError(f"{path}: not a ResNet-18/50 ({kind} blocks {list(depth)} per stage)")
    if arch not in SUPPORTED_ARCHS:
        raise ModelError(f"{path}: a {arch} checkpoint; fvdeploy has {' and '.join(SUPPORTED_ARCHS)}")
    return arch, int(fc.shape[0])


def _check_arch_field(obj, arch: str | None, path: Path) -> None:
    """The official files name their backbone (``arch``): refuse other families by that name
    (``arch=None``), then make sure the tensors agree with it."""
    declared = obj.get("arch") if isinstance(obj, dict) else None
    if not isinstance(declared, str):
        return
    if arch is None and declared not in SUPPORTED_ARCHS:
        raise ModelError(f"{path}: a {declared} checkpoint; fvdeploy has {' and '.join(SUPPORTED_ARCHS)}")
    if arch is not None and declared != arch:
        raise ModelError(f"{path}: the file says arch {declared!r} but its tensors are a {arch}")


def load_converted(model: TSMResNet, converted: Converted, path: Path) -> None:
    """Check every name and shape both ways, then load (fp32). One line names the first misfit."""
    own = model.state_dict()
    arch = model.config.arch
    for key in converted.state:
        if key not in own:
            raise ModelError(f"{path}: unmatched key {converted.source_key[key]!r}: no {key!r} in fvdeploy's {arch}")
    state = {}
    for key, target in own.items():
        value = converted.state.get(key)
        if value is None:
            if key.endswith("num_batches_tracked"):  # files from before PyTorch 0.4.1 lack it; unused at eval
                state[key] = torch.zeros_like(target)
                continue
            raise ModelError(
                f"{path}: no weights for {key!r} that {arch} needs (the file stops short or is another architecture)"
            )
        if tuple(value.shape) != tuple(target.shape):
            raise ModelError(
                f"{path}: {converted.source_key[key]} has shape {tuple(value.shape)}, {arch} with "
                f"{model.config.num_classes} classes needs {tuple(target.shape)}"
            )
        state[key] = value.to(target.dtype)
    model.load_state_dict(state)


def _make_config(
    facts: SourceFacts, opts: ImportOptions, arch: str, labels: list[str], src: Path, digest: str
) -> ModelConfig:
    segments = opts.segments if opts.segments is not None else (facts.segments or DEFAULT_SEGMENTS)
    mode = opts.mode or ("full" if facts.layout == "torchvision" else "tsm")
    clusters = opts.clusters or (segments if segments > 0 else DEFAULT_SEGMENTS)
    notes = list(facts.notes)
    if facts.shift_div is None and facts.layout != "torchvision":
        notes.append(f"shift_div not recorded in the file; assumed {DEFAULT_SHIFT_DIV}")
    trained = {
        "data": facts.dataset,
        "epochs": facts.epochs,
        "top1": facts.top1,
        "source_file": src.name,
        "source_sha256": digest,
        "source_layout": facts.layout,
        "source_segments": facts.segments,
        "source_shift_div": facts.shift_div,
        "source_sampling": facts.sampling,
        "notes": notes or None,
    }
    config = ModelConfig(
        arch=arch,
        num_classes=len(labels),
        labels=labels,
        num_clusters=clusters,
        method=opts.method,
        mode=mode,
        segments=segments,
        input=facts.input,
        trained={k: v for k, v in trained.items() if v is not None},
    )
    config.validate()
    return config


def _setup_warnings(facts: SourceFacts, opts: ImportOptions) -> list[str]:
    out = []
    if facts.layout == "torchvision":
        return out
    if facts.segments is None and opts.segments is None:
        out.append(f"the file does not record its segment count: TSM mode uses {DEFAULT_SEGMENTS} (pass --segments)")
    if facts.shift_div is None:
        out.append(f"the file does not record shift_div: assumed {DEFAULT_SHIFT_DIV}, the published default")
    if facts.sampling == "dense":
        out.append(
            "trained with dense sampling (8 frames at stride 8 from a 64-frame window); fvdeploy's TSM mode "
            "samples the centre frame of K equal segments"
        )
    return out


def _check_destination(out: Path, force: bool) -> None:
    if not out.exists():
        return
    if not force:
        raise ModelError(f"{out}: already exists (pass --force to replace it)")
    if not out.is_dir() or not ((out / CONFIG_NAME).is_file() or not any(out.iterdir())):
        raise ModelError(f"{out}: exists and is not a model folder; refusing to replace it, even with --force")


def _write(model: TSMResNet, out: Path) -> None:
    """A fresh folder, swapped in whole: a replaced model's export/ and train_state/ belonged to
    other weights and must not survive."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.import-", dir=out.parent))
    try:
        save_model(model, tmp / "model")
        replace_dir(tmp / "model", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["ImportOptions", "ImportResult", "NAMED_LISTS", "SOURCES", "import_checkpoint", "infer_arch"]
