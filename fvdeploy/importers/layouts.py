"""Key maps from each published layout to the project's (torchvision) names, and what each file
says about how it was trained.

Verified against the reference code (mit-han-lab/temporal-shift-module at 1f6a834,
open-mmlab/mmaction2 at 4d6c934):

- official TSM (``ops/models.py``, ``ops/temporal_shift.py``, ``main.py``): ``TSN.base_model`` is a
  torchvision ResNet whose block ``conv1`` is wrapped as ``TemporalShift(net=conv1)`` for
  ``shift_place='blockres'`` (keys ``layerX.Y.conv1.net.weight``), the classifier is ``new_fc``
  (``base_model.fc`` is a Dropout; with dropout 0 it stays ``base_model.fc``), and ``main.py``
  saves ``{epoch, arch, state_dict, optimizer, best_prec1}`` of a DataParallel model
  (``module.`` prefix).
- mmaction2 (``models/backbones/resnet.py``, ``resnet_tsm.py``, ``heads/tsm_head.py``): every conv
  is a ConvModule (``convN.conv`` + ``convN.bn``), the stem is ``conv1.conv``/``conv1.bn``,
  downsample is ``downsample.conv``/``downsample.bn``, the shift wraps ``conv1.conv`` as
  ``conv1.conv.net``, the classifier is ``cls_head.fc_cls``; mmengine saves ``{meta, state_dict,
  ...}`` with the config text in ``meta['cfg']`` (mmcv 1.x: ``meta['config']``).

Variants the project's model cannot represent are refused: no shift (TSN), ``shift_place='block'``,
a shift on only some blocks, ``temporal_pool``, non-local blocks, ``shift_div != 8``, non-RGB input.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from ..config import IMAGENET_MEAN, IMAGENET_STD, InputSpec
from ..errors import ModelError

LAYOUTS = ("tsm", "mmaction2", "torchvision")
MMACTION_MEAN = (123.675, 116.28, 103.53)
MMACTION_STD = (58.395, 57.12, 57.375)

# Official TSM test input (ops/models.py scale_size/crop_size, test_models.py GroupScale + GroupCenterCrop
# on PIL images, ToTorchFormatTensor(div=True), GroupNormalize): PIL bilinear, which antialiases.
TSM_INPUT = InputSpec(
    shorter_side=256,
    crop=224,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    color="rgb",
    scale=1,
    interpolation="bilinear",
    antialias=True,
)
# mmaction2 val pipeline: Decord (RGB), Resize(scale=(-1, 256)) through mmcv.imresize (cv2 INTER_LINEAR,
# no antialiasing), CenterCrop(224), ActionDataPreprocessor mean/std on 0..255 pixels.
MMACTION_INPUT = InputSpec(
    shorter_side=256,
    crop=224,
    mean=MMACTION_MEAN,
    std=MMACTION_STD,
    color="rgb",
    scale=255,
    interpolation="bilinear",
    antialias=False,
)
TORCHVISION_INPUT = TSM_INPUT

DATASETS = {
    "kinetics": "kinetics400",
    "kinetics400": "kinetics400",
    "somethingv2": "sthv2",
    "sthv2": "sthv2",
    "something": "sthv1",
    "sthv1": "sthv1",
    "ucf101": "ucf101",
    "hmdb51": "hmdb51",
    "jester": "jester",
}


@dataclass
class SourceFacts:
    """What a checkpoint says about how it was trained and fed (None: the file does not say)."""

    layout: str
    segments: int | None = None
    segments_from: str | None = None
    shift_div: int | None = None
    dataset: str | None = None
    sampling: str | None = None  # "uniform" or "dense"
    epochs: int | None = None
    top1: float | None = None
    input: InputSpec = field(default_factory=InputSpec)
    notes: list[str] = field(default_factory=list)


@dataclass
class Converted:
    state: dict[str, Tensor]  # torchvision key names
    source_key: dict[str, str]  # our key -> the file's key, for error messages
    facts: SourceFacts


# -- detection ------------------------------------------------------------------------------------
def state_dict_of(obj: Any) -> dict[str, Any] | None:
    """The tensor dict inside a checkpoint: ``obj['state_dict']``, ``obj['model']`` or ``obj`` itself."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                return obj[key]
        if obj and all(isinstance(v, Tensor) for v in obj.values()):
            return obj
    return None


def _strip_module(sd: dict[str, Any]) -> dict[str, Any]:
    """DataParallel/DDP wrap every key in ``module.``; drop it where all keys have it."""
    if sd and all(isinstance(k, str) and k.startswith("module.") for k in sd):
        return {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def detect_layout(obj: Any) -> str | None:
    sd = state_dict_of(obj)
    if not sd:
        return None
    keys = [k for k in _strip_module(sd) if isinstance(k, str)]
    if any(k.startswith(("base_model.", "new_fc.")) for k in keys):
        return "tsm"
    if any(k.startswith(("backbone.", "cls_head.")) for k in keys):
        return "mmaction2"
    if "conv1.weight" in keys and any(k.startswith("layer1.") for k in keys):
        return "torchvision"
    return None


def convert(obj: Any, layout: str, path: Path) -> Converted:
    """Map a loaded checkpoint of ``layout`` to torchvision names (``layout`` already checked)."""
    converters: dict[str, Callable[[Any, Path], Converted]] = {
        "tsm": _from_tsm,
        "mmaction2": _from_mmaction2,
        "torchvision": _from_torchvision,
    }
    return converters[layout](obj, path)


def wrong_layout(obj: Any, wanted: str, path: Path) -> ModelError:
    found = detect_layout(obj)
    sd = state_dict_of(obj)
    first = next(iter(sd), None) if sd else None
    names = {"tsm": "an official TSM", "mmaction2": "an mmaction2", "torchvision": "a torchvision ResNet"}
    example = f" (keys like {first!r})" if first is not None else ""
    if found == wanted:
        return ModelError(f"{path}: {names[found]} checkpoint without backbone weights{example}")
    if found is not None:
        return ModelError(
            f"{path}: this is {names[found]} checkpoint{example}, not {names[wanted]} one; "
            f"use --from {found} or --from auto"
        )
    what = "no state dict of tensors" if sd is None else f"unknown key layout{example}"
    return ModelError(f"{path}: not a TSM, mmaction2 or torchvision ResNet checkpoint ({what})")


# -- shared checks ----------------------------------------------------------------------------------
_BLOCK = re.compile(r"^layer([1-4])\.(\d+)\.")


def _refuse_variants(keys: list[str], path: Path, prefix: str, shifted_conv1: str) -> None:
    """Refuse structures the project's model cannot represent. ``keys`` are backbone keys without
    ``prefix``; ``shifted_conv1`` is the key tail of a shifted block conv (``conv1.net.weight``)."""
    for k in keys:
        if re.match(r"^layer([5-9]|\d\d)\.", k):
            raise ModelError(
                f"{path}: not a ResNet backbone ({prefix}{k}: a MobileNet?); fvdeploy imports ResNet-18/50 TSM models"
            )
        if re.match(r"^layer[1-4]\.net\.", k):
            raise ModelError(
                f"{path}: temporal_pool checkpoint ({prefix}{k}); fvdeploy's model keeps every "
                "segment through layer2..4 and cannot represent temporal pooling"
            )
        if re.match(r"^layer[1-4]\.\d+\.(nl|block|non_local_block)\.", k):
            raise ModelError(
                f"{path}: non-local TSM checkpoint ({prefix}{k}); non-local blocks are not part of fvdeploy's model"
            )
        if re.match(r"^layer[1-4]\.\d+\.net\.", k):
            raise ModelError(
                f"{path}: shift_place='block' checkpoint ({prefix}{k}): its shift sits before the "
                "whole block (identity included); fvdeploy shifts the residual branch only "
                "(shift_place='blockres')"
            )
    blocks = sorted({(m.group(1), int(m.group(2))) for k in keys if (m := _BLOCK.match(k))})
    shifted = {(m.group(1), int(m.group(2))) for k in keys if (m := _BLOCK.match(k)) and k.endswith(shifted_conv1)}
    if blocks and not shifted:
        raise ModelError(
            f"{path}: no temporal shift in this checkpoint (a TSN model: no '{shifted_conv1}' keys); "
            "fvdeploy's models are TSM models"
        )
    unshifted = [b for b in blocks if b not in shifted]
    if unshifted:
        layer, idx = unshifted[0]
        raise ModelError(
            f"{path}: block layer{layer}.{idx} has no temporal shift while others do (a shift on "
            "every n-th block); fvdeploy shifts every block of layer1..4"
        )


def _check_shift_div(facts: SourceFacts, path: Path, where: str) -> None:
    if facts.shift_div is not None and facts.shift_div != 8:
        raise ModelError(
            f"{path}: shift_div={facts.shift_div} ({where}); fvdeploy's shift moves C//8 channels "
            "each way (shift_div=8) and cannot represent other folds"
        )


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _tensors_only(sd: dict[str, Any], path: Path) -> None:
    for k, v in sd.items():
        if not isinstance(k, str) or not isinstance(v, Tensor):
            raise ModelError(f"{path}: state dict entry {k!r} is a {type(v).__name__}, not a tensor")


# -- official TSM -------------------------------------------------------------------------------------
_TSM_NAME = re.compile(r"^TSM_(?P<data>[A-Za-z0-9]+)_(?P<mod>[A-Za-z]+)_(?P<arch>[A-Za-z0-9]+)_")


def _tsm_facts(obj: Any, path: Path) -> SourceFacts:
    """The official code keeps its training setup in the file name (main.py ``store_name``)."""
    facts = SourceFacts(layout="tsm", input=TSM_INPUT)
    name = path.name
    if m := _TSM_NAME.match(name):
        facts.dataset = DATASETS.get(m.group("data").lower(), m.group("data").lower())
        if m.group("mod") != "RGB":
            raise ModelError(f"{path}: a {m.group('mod')} checkpoint (file name); fvdeploy reads RGB frames only")
    if m := re.search(r"_shift(\d+)_(blockres|block)", name):
        facts.shift_div = int(m.group(1))
        if m.group(2) == "block":
            raise ModelError(f"{path}: shift_place='block' (file name); fvdeploy shifts the residual branch only")
    if "_tpool" in name:
        raise ModelError(f"{path}: temporal_pool checkpoint (file name says _tpool); not representable")
    if m := re.search(r"_segment(\d+)", name):
        facts.segments, facts.segments_from = int(m.group(1)), "file name"
    facts.sampling = "dense" if "_dense" in name else ("uniform" if facts.segments_from else None)
    if isinstance(obj, dict):
        facts.epochs = _int(obj.get("epoch"))
        facts.top1 = _float(obj.get("best_prec1"))
    _check_shift_div(facts, path, "file name")
    return facts


def _from_tsm(obj: Any, path: Path) -> Converted:
    sd = _strip_module(state_dict_of(obj) or {})
    if not any(k.startswith("base_model.") for k in sd):
        raise wrong_layout(obj, "tsm", path)
    _tensors_only(sd, path)
    facts = _tsm_facts(obj, path)
    prefix = "module." if state_dict_of(obj) is not sd else ""
    backbone = [k[len("base_model.") :] for k in sd if k.startswith("base_model.")]
    _refuse_variants(backbone, path, prefix + "base_model.", "conv1.net.weight")
    state, source = {}, {}
    for key, value in sd.items():
        if key.startswith("new_fc."):
            ours = "fc." + key[len("new_fc.") :]
        elif key.startswith("base_model."):
            ours = re.sub(r"^(layer[1-4]\.\d+)\.conv1\.net\.", r"\1.conv1.", key[len("base_model.") :])
        else:
            raise ModelError(f"{path}: unmatched key {prefix + key!r} (expected base_model.* or new_fc.*)")
        if ours in state:
            raise ModelError(f"{path}: keys {source[ours]!r} and {prefix + key!r} both map to {ours!r}")
        state[ours], source[ours] = value, prefix + key
    return Converted(state, source, facts)


# -- mmaction2 ----------------------------------------------------------------------------------------
_MM_RULES = [
    (re.compile(r"^conv1\.conv\.weight$"), r"conv1.weight"),
    (re.compile(r"^conv1\.bn\.(\w+)$"), r"bn1.\1"),
    (re.compile(r"^(layer[1-4]\.\d+)\.conv1\.conv\.net\.weight$"), r"\1.conv1.weight"),
    (re.compile(r"^(layer[1-4]\.\d+)\.conv([23])\.conv\.weight$"), r"\1.conv\2.weight"),
    (re.compile(r"^(layer[1-4]\.\d+)\.conv([123])\.bn\.(\w+)$"), r"\1.bn\2.\3"),
    (re.compile(r"^(layer[1-4]\.\d+)\.downsample\.conv\.weight$"), r"\1.downsample.0.weight"),
    (re.compile(r"^(layer[1-4]\.\d+)\.downsample\.bn\.(\w+)$"), r"\1.downsample.1.\2"),
]


def _mm_config_text(obj: Any) -> str:
    meta = obj.get("meta") if isinstance(obj, dict) else None
    if isinstance(meta, dict):
        for key in ("cfg", "config"):  # mmengine, mmcv 1.x
            if isinstance(meta.get(key), str):
                return meta[key]
    return ""


def _dict_body(text: str, name: str) -> str:
    """The top level of ``name=dict(...)`` in a config dump (nested calls blanked), or ''."""
    m = re.search(rf"\b{name}\s*=\s*dict\(", text)
    if not m:
        return ""
    depth, start, end = 1, m.end(), len(text)
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            end = i
            break
    body = text[start:end]
    while (flat := re.sub(r"\([^()]*\)", "", body)) != body:
        body = flat
    return body


_MM_DATASETS = ("kinetics400", "sthv2", "sthv1", "ucf101", "hmdb51")


def _mm_dataset(name: str, text: str) -> str | None:
    """The dataset from the file name, else the config's annotation files (a fine-tuned model's
    config may also name the dataset it started from, in ``load_from``)."""
    ann = " ".join(re.findall(r"\bann_file\w*\s*=\s*['\"]([^'\"]*)['\"]", text))
    for where in (name, ann):
        found = [d for d in _MM_DATASETS if d in where]
        if found:
            return found[0]
    return None


def _mm_facts(obj: Any, sd: dict[str, Any], path: Path) -> SourceFacts:
    facts = SourceFacts(layout="mmaction2", input=InputSpec(**vars(MMACTION_INPUT)))
    text = _mm_config_text(obj)
    name = path.name
    if text:
        backbone = _dict_body(text, "backbone")
        kind = re.search(r"\btype\s*=\s*['\"](\w+)['\"]", backbone)
        if kind and kind.group(1) != "ResNetTSM":
            raise ModelError(
                f"{path}: backbone {kind.group(1)} (its config); fvdeploy imports ResNetTSM (ResNet-18/50) models"
            )
        depth = re.search(r"\bdepth\s*=\s*(\d+)", backbone)
        if depth and depth.group(1) not in ("18", "50"):
            raise ModelError(
                f"{path}: a resnet{depth.group(1)} checkpoint (its config); fvdeploy has resnet18 and resnet50"
            )
        if m := re.search(r"shift_div\s*=\s*(\d+)", text):
            facts.shift_div = int(m.group(1))
        if re.search(r"temporal_pool\s*=\s*True", text):
            raise ModelError(f"{path}: temporal_pool=True in its config; not representable")
        if re.search(r"shift_place\s*=\s*['\"]block['\"]", text):
            raise ModelError(f"{path}: shift_place='block' in its config; fvdeploy shifts the residual branch only")
        m = re.search(r"num_segments\s*=\s*(\d+)", text) or re.search(r"num_clips\s*=\s*(\d+)", text)
        if m:
            facts.segments, facts.segments_from = int(m.group(1)), "config in the checkpoint"
        facts.sampling = "dense" if "DenseSampleFrames" in text else "uniform"
        mean = re.search(r"\bmean\s*=\s*\[([^\]]*)\]", text)
        std = re.search(r"\bstd\s*=\s*\[([^\]]*)\]", text)
        if mean and std:
            try:
                mv = tuple(float(v) for v in mean.group(1).split(","))
                sv = tuple(float(v) for v in std.group(1).split(","))
            except ValueError:
                mv = sv = ()
            if len(mv) == 3 and len(sv) == 3:
                facts.input.mean, facts.input.std = mv, sv
    if facts.segments is None and (m := re.search(r"1x1x(\d+)", name)):
        facts.segments, facts.segments_from = int(m.group(1)), "file name"
    if facts.sampling is None and facts.segments_from == "file name":
        facts.sampling = "dense" if "dense" in name else "uniform"
    facts.dataset = _mm_dataset(name, text)
    # An unpublished file still holds the preprocessor's mean/std: they win over the config text.
    mean, std = sd.get("data_preprocessor.mean"), sd.get("data_preprocessor.std")
    if isinstance(mean, Tensor) and isinstance(std, Tensor) and mean.numel() == 3 and std.numel() == 3:
        facts.input.mean = tuple(float(v) for v in mean.flatten())
        facts.input.std = tuple(float(v) for v in std.flatten())
    meta = obj.get("meta") if isinstance(obj, dict) else None
    if isinstance(meta, dict):
        facts.epochs = _int(meta.get("epoch"))
    _check_shift_div(facts, path, "its config")
    return facts


def _from_mmaction2(obj: Any, path: Path) -> Converted:
    raw = state_dict_of(obj) or {}
    sd = _strip_module(raw)
    if not any(k.startswith("backbone.") for k in sd):
        raise wrong_layout(obj, "mmaction2", path)
    _tensors_only(sd, path)
    prefix = "module." if raw is not sd else ""
    facts = _mm_facts(obj, sd, path)
    backbone = [k[len("backbone.") :] for k in sd if k.startswith("backbone.")]
    _refuse_variants(backbone, path, prefix + "backbone.", "conv1.conv.net.weight")
    state, source = {}, {}
    for key, value in sd.items():
        ours = None
        if key.startswith("backbone."):
            tail = key[len("backbone.") :]
            for pattern, repl in _MM_RULES:
                if pattern.match(tail):
                    ours = pattern.sub(repl, tail)
                    break
        elif key in ("cls_head.fc_cls.weight", "cls_head.fc_cls.bias"):
            ours = "fc." + key.rsplit(".", 1)[1]
        elif key.startswith("data_preprocessor."):
            continue  # mean/std, read into the input spec above
        if ours is None:
            raise ModelError(f"{path}: unmatched key {prefix + key!r} (not part of a ResNetTSM + TSMHead model)")
        state[ours], source[ours] = value, prefix + key
    return Converted(state, source, facts)


# -- torchvision ----------------------------------------------------------------------------------------
def _from_torchvision(obj: Any, path: Path) -> Converted:
    raw = state_dict_of(obj) or {}
    sd = _strip_module(raw)
    if detect_layout(obj) != "torchvision":
        raise wrong_layout(obj, "torchvision", path)
    _tensors_only(sd, path)
    prefix = "module." if raw is not sd else ""
    facts = SourceFacts(layout="torchvision", input=InputSpec(**vars(TORCHVISION_INPUT)), dataset="imagenet")
    facts.notes.append("ImageNet image classifier: no temporal training; a start for fine-tuning")
    return Converted(dict(sd), {k: prefix + k for k in sd}, facts)
