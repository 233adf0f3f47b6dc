"""The trainer: SGD + cosine as TSM, every frame of every video, DDP from torchrun's environment.

One function, :func:`train`, runs the same way alone and under ``torchrun`` (nanoGPT-style: the
``RANK``/``WORLD_SIZE`` variables decide; rank 0 logs and writes; each rank reads its shard of every
epoch's permutation). Output folder::

    OUT/last/          model folder (config.json + model.safetensors) + train_state/ for --resume
    OUT/best/          model folder with the best evaluation top-1 so far
    OUT/log.csv        one row per epoch
    OUT/cluster_ids.jsonl  the clusters of the first few evaluation videos after each epoch
    OUT/summary.json   the final figures, and each rank's weights hash (DDP ranks must agree)

``--resume`` restores weights, optimizer, scheduler, grad scaler, the torch RNG and the epoch
counter saved after the last finished epoch; sampling and augmentation are functions of
``(seed, epoch, video)``, so the resumed run computes exactly what an uninterrupted one would.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import statistics
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch.utils.data import DataLoader

from fvdeploy.bundle import load_state, read_config, read_weights, replace_dir, save_model, weights_hash
from fvdeploy.config import InputSpec, ModelConfig
from fvdeploy.errors import BackendError, FvdeployError, ModelError
from fvdeploy.models import create_model
from fvdeploy.models.tsm_resnet import TSMResNet

from .augment import FLIP_POLICIES, AugmentSpec
from .datasets import EpochSampler, VideoDataset, VideoList, collate_fn, default_val_source, open_source

log = logging.getLogger(__name__)

STATE_DIR = "train_state"
STATE_FILE = "state.pt"
ARGS_FILE = "args.json"
CLUSTER_LOG = "cluster_ids.jsonl"
LOG_FIELDS = ("epoch", "lr", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "epoch_s", "best")


class TrainError(FvdeployError):
    """A training run cannot start or continue (bad options, an output folder in the way)."""


@dataclass
class TrainConfig:
    """Everything that decides what a run computes (stored with its checkpoints)."""

    data: str
    out: str
    val: str | None = None  # default: the dataset folder's val.txt / test.txt
    classes: str | None = None
    root: str | None = None
    arch: str = "resnet18"
    mode: str = "full"
    clusters: int = 8
    method: str = "cumulative"
    segments: int = 8  # TSM mode: K sampled frames; 0 = all frames (TSM-all)
    frames: int = 32  # frames per video in a training batch (full mode, TSM-all); 0 = no cap
    size: int = 224  # crop side
    shorter_side: int | None = None  # default: size * 256 / 224, as TSM
    epochs: int = 25
    batch_size: int = 8
    eval_batch_size: int | None = None  # default: batch_size
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.0
    clip_grad: float = 20.0
    dropout: float = 0.5
    seed: int = 0
    precision: str | None = None  # fp32 | fp16 | bf16; default fp16 on CUDA, fp32 on CPU
    pretrained: str | None = None
    init: str | None = None
    freeze_bn: bool = False
    checkpoint_activations: bool = False
    flip: str = "auto"
    track_clusters: int = 8
    # Runtime only: free to change on --resume.
    workers: int = 2
    device: str = "auto"
    stop_after: int | None = None

    RUNTIME_FIELDS = ("workers", "device", "stop_after")

    def validate(self) -> None:
        if self.mode not in ("full", "tsm"):
            raise TrainError(f"--mode must be full or tsm, got {self.mode!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise TrainError("--epochs and --batch-size must be >= 1")
        if self.clusters < 1 or self.segments < 0 or self.frames < 0:
            raise TrainError("--clusters must be >= 1, --segments and --frames >= 0")
        if self.mode == "full" and 0 < self.frames < self.clusters:
            raise TrainError(
                f"--frames {self.frames} is below --clusters {self.clusters}: a batch must hold a whole clustering"
            )
        if self.precision not in (None, "fp32", "fp16", "bf16"):
            raise TrainError(f"--precision must be fp32, fp16 or bf16, got {self.precision!r}")
        if self.flip not in FLIP_POLICIES:
            raise TrainError(f"--flip must be one of {', '.join(FLIP_POLICIES)}")
        if self.pretrained and self.init:
            raise TrainError("--pretrained and --init both set the starting weights; give one")
        if self.stop_after is not None and self.stop_after < 1:
            raise TrainError("--stop-after must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def model_config(self, classes: list[str]) -> ModelConfig:
        shorter = self.shorter_side or int(round(self.size * 256 / 224))
        return ModelConfig(
            arch=self.arch,
            num_classes=len(classes),
            labels=list(classes),
            num_clusters=self.clusters,
            method=self.method,
            mode=self.mode,
            segments=self.segments,
            dropout=self.dropout,
            input=InputSpec(shorter_side=shorter, crop=self.size),
        )


# -- distributed ---------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where NCCL reduces

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            tdist.barrier()

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum ``t`` (a CPU tensor) over ranks, in place."""
        if self.enabled:
            on = t.to(self.device)
            tdist.all_reduce(on)
            t.copy_(on.cpu())
        return t

    def sync_buffers(self, model: nn.Module) -> None:
        """Give every rank rank 0's BatchNorm statistics, as DDP does at the start of each forward
        (after the last step each rank holds its own batch's), before evaluating or saving."""
        if self.enabled:
            for b in model.buffers():
                on = b.data.to(self.device)
                tdist.broadcast(on, 0)
                b.data.copy_(on.to(b.device))

    def gather_objects(self, obj: Any) -> list[Any]:
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world
        tdist.all_gather_object(out, obj)
        return out


def init_distributed(device: str) -> tuple[Dist, torch.device]:
    """The process group torchrun describes (gloo on CPU, NCCL on CUDA), and this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), resolve_device(device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendError(f"--device {device}: CUDA is not available")
    if use_cuda:
        torch.cuda.set_device(local)  # one GPU per process: LOCAL_RANK picks it, whatever --device said
    tdist.init_process_group("nccl" if use_cuda else "gloo")
    device_ = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    return Dist(rank, world, local, device_), device_


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BackendError(f"--device {device}: CUDA is not available (torch.cuda.is_available() is False)")
        dev = torch.device(device)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BackendError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
        return dev
    if device != "cpu":
        raise BackendError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")
    return torch.device("cpu")


def resolve_precision(precision: str | None, device: torch.device) -> str:
    if precision is None:
        return "fp16" if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise BackendError("--precision fp16 needs CUDA (mixed precision on the CPU: use bf16)")
    return precision


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


# -- model surgery -------------------------------------------------------------------------------
def freeze_batchnorm(model: nn.Module) -> None:
    """TSM's partial BN (``--freeze-bn``, as the paper for UCF101/HMDB51): every BatchNorm after
    the first keeps its running statistics and affine parameters fixed. Call after ``.train()``."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns[1:]:
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)


@contextmanager
def _batchnorm_stats_frozen(modules: list[nn.Module]):
    """Recomputation must not update BN running statistics a second time: momentum 0 leaves the
    running mean/var as they are (the recomputed graph must save what the first pass saved, so BN
    has to run the same code path), and the batch counter is put back afterwards."""
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in modules]
    for m in modules:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, count) in zip(modules, saved):
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)


def enable_activation_checkpointing(model: TSMResNet) -> None:
    """Checkpoint stem + layer1, the part that sees all T frames: their activations are recomputed
    in the backward pass instead of kept, so training memory no longer grows with T through them."""
    bns = [model.bn1] + [m for m in model.layer1.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    # the recomputation must not update the BatchNorm statistics a second time
    model.frames_runner = partial(
        checkpoint, use_reentrant=False, context_fn=lambda: (nullcontext(), _batchnorm_stats_frozen(bns))
    )


def load_init(model: TSMResNet, path: str | Path) -> str:
    """Start from any model folder's weights; a new head when its classes differ. Returns its hash."""
    src = read_config(path)
    if src.arch != model.config.arch:
        raise ModelError(f"{path}: --init model is arch {src.arch}, this run trains {model.config.arch}")
    state = read_weights(path)
    keep_head = src.labels == model.config.labels
    if not keep_head:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = model.state_dict()
    for key, value in own.items():
        if not keep_head and key.startswith("fc."):
            continue
        if key not in state or tuple(state[key].shape) != tuple(value.shape):
            raise ModelError(f"{path}: --init weights lack {key} with shape {tuple(value.shape)}")
    model.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in state.items() if k in own}})
    return weights_hash(path)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """TSM's policy: weight decay on conv and linear weights, none on BatchNorm and biases."""
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup, then cosine to 0 over the remaining steps (TSM's cosine, per step)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def state_hash(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# -- evaluation ----------------------------------------------------------------------------------
@dataclass
class EvalResult:
    labels: list[str]
    confusion: np.ndarray  # int64 [C, C]; rows: true class, columns: predicted
    top5_correct: int
    loss_sum: float
    cluster_ids: dict[int, list[int]] = field(default_factory=dict)  # tracked videos

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    @property
    def top1(self) -> float:
        return float(np.trace(self.confusion) / max(1, self.count))

    @property
    def top5(self) -> float:
        return self.top5_correct / max(1, self.count)

    @property
    def loss(self) -> float:
        return self.loss_sum / max(1, self.count)

    def per_class(self) -> dict[str, float | None]:
        rows = self.confusion.sum(1)
        return {
            name: (float(self.confusion[i, i] / rows[i]) if rows[i] else None) for i, name in enumerate(self.labels)
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "videos": self.count,
            "top1": self.top1,
            "top5": self.top5,
            "loss": self.loss,
            "per_class": self.per_class(),
            "labels": self.labels,
            "confusion": self.confusion.tolist(),
        }


@torch.no_grad()
def evaluate(
    model: TSMResNet,
    loader: DataLoader,
    device: torch.device,
    *,
    precision: str = "fp32",
    dist: Dist | None = None,
    track: int = 0,
    progress=None,
) -> EvalResult:
    """Top-1/top-5/loss/confusion over a loader of whole videos (the runtime's preprocessing).
    Under DDP each rank evaluates its shard and the counts are summed."""
    dist = dist or Dist()
    model.eval()
    c = model.config.num_classes
    confusion = torch.zeros(c, c, dtype=torch.long)
    top5 = torch.zeros((), dtype=torch.long)
    loss_sum = torch.zeros((), dtype=torch.float64)
    tracked: dict[int, list[int]] = {}
    k = min(5, c)
    for batch in loader:
        frames, labels = batch.frames.to(device, non_blocking=True), batch.labels.to(device)
        with autocast(device, precision):
            out = model(frames, batch.lengths.to(device))
        logits = out.logits.float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").double().cpu()
        pred = logits.argmax(1)
        confusion += torch.bincount((labels * c + pred).cpu(), minlength=c * c).reshape(c, c)
        top5 += (logits.topk(k, 1).indices == labels[:, None]).any(1).sum().cpu()
        if track and model.config.mode == "full":
            for i, idx in enumerate(batch.indices.tolist()):
                if idx < track:
                    tracked[idx] = [int(v) for v in out.cluster_ids[i, : int(batch.lengths[i])].tolist()]
        if progress is not None:
            progress(len(batch.labels))
    for t in (confusion, top5, loss_sum):
        dist.all_reduce(t)
    merged: dict[int, list[int]] = {}
    for part in dist.gather_objects(tracked):
        merged.update(part)
    return EvalResult(
        list(model.config.labels), confusion.numpy(), int(top5), float(loss_sum), dict(sorted(merged.items()))
    )


def eval_loader(
    videos: VideoList,
    config: ModelConfig,
    *,
    batch_size: int,
    workers: int,
    dist: Dist | None = None,
    pin: bool = False,
) -> DataLoader:
    dist = dist or Dist()
    ds = VideoDataset(videos, config.input, mode=config.mode, segments=config.segments, train=False)
    sampler = EpochSampler(len(ds), shuffle=False, rank=dist.rank, world=dist.world, pad=False)
    return DataLoader(
        ds,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_fn(),
        pin_memory=pin,
        generator=torch.Generator(),
    )


def map_to_model_classes(videos: VideoList, labels: list[str]) -> VideoList:
    """Relabel a dataset by class name onto a model's label order (unnamed classes map by index)."""
    if videos.classes == labels:
        return videos
    unnamed = all(n == f"class_{i}" for i, n in enumerate(videos.classes))
    if unnamed and len(videos.classes) <= len(labels):
        return VideoList(videos.records, list(labels), videos.source)
    missing = [n for n in videos.classes if n not in labels]
    if missing:
        raise TrainError(
            f"{videos.source}: class {missing[0]!r} is not one of the model's labels ({', '.join(labels[:6])}...)"
        )
    index = {n: labels.index(n) for n in videos.classes}
    records = [dataclasses.replace(r, label=index[videos.classes[r.label]]) for r in videos.records]
    return VideoList(records, list(labels), videos.source)


# -- reporting -----------------------------------------------------------------------------------
class Reporter:
    """Progress hooks; the CLI's implementation draws a rich progress bar. This one logs epochs."""

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None: ...

    def step(self, loss: float, top1: float) -> None: ...

    def start_eval(self, videos: int) -> None: ...

    def eval_step(self, videos: int) -> None: ...

    def end_epoch(self, row: dict[str, Any]) -> None:
        log.info("epoch %s: %s", row["epoch"], {k: v for k, v in row.items() if k != "epoch"})

    def close(self) -> None: ...


@dataclass
class TrainSummary:
    out: str
    epochs_done: int
    best_top1: float | None
    best_epoch: int | None
    last_top1: float | None
    stopped_early: bool
    seconds: float
    rank_weights_sha256: list[str]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- checkpoints ---------------------------------------------------------------------------------
def write_checkpoint(
    model: TSMResNet, path: Path, state: dict[str, Any] | None = None, args: dict | None = None
) -> None:
    """A model folder, with ``train_state/`` when ``state`` is given, swapped in atomically."""
    tmp = path.with_name(f".{path.name}.writing-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_model(model, tmp)
        if state is not None:
            (tmp / STATE_DIR).mkdir()
            torch.save(state, tmp / STATE_DIR / STATE_FILE)
            (tmp / STATE_DIR / ARGS_FILE).write_text(json.dumps(args, indent=2) + "\n")
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_train_state(out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    sdir = out / "last" / STATE_DIR
    if not (sdir / STATE_FILE).is_file():
        raise TrainError(f"{out}: nothing to resume (no last/{STATE_DIR}/{STATE_FILE})")
    try:
        state = torch.load(sdir / STATE_FILE, map_location="cpu", weights_only=True)
        args = json.loads((sdir / ARGS_FILE).read_text())
    except (OSError, RuntimeError, ValueError, EOFError) as e:
        raise TrainError(
            f"{sdir}: cannot read the train state ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    return state, args


def resume_config(cfg: TrainConfig, stored: dict[str, Any], given: set[str]) -> TrainConfig:
    """The stored config, with the runtime fields the user set; a changed training field is refused."""
    old = TrainConfig.from_dict(stored)
    for name in sorted(given):
        if name in TrainConfig.RUNTIME_FIELDS or name == "out":
            continue
        if getattr(cfg, name) != getattr(old, name):
            raise TrainError(
                f"--resume continues the run in {cfg.out} exactly; --{name.replace('_', '-')} "
                f"{getattr(cfg, name)!r} differs from its {getattr(old, name)!r} (use a new --out)"
            )
    return dataclasses.replace(old, **{n: getattr(cfg, n) for n in TrainConfig.RUNTIME_FIELDS}, out=cfg.out)


def _read_log(path: Path, upto: int) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if int(r["epoch"]) <= upto]


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def _trim_cluster_log(path: Path, upto: int) -> None:
    """Drop lines of epochs after ``upto`` (written by an interrupted run before its checkpoint)."""
    if path.is_file():
        lines = [
            ln for ln in path.read_text().splitlines(keepends=True) if ln.strip() and json.loads(ln)["epoch"] <= upto
        ]
        path.write_text("".join(lines))


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.6g}"


# -- the run -------------------------------------------------------------------------------------
def train(
    cfg: TrainConfig, *, resume: bool = False, given: set[str] | None = None, reporter: Reporter | None = None
) -> TrainSummary:
    """Train (or, with ``resume``, continue) the run that ``cfg`` describes. ``given`` names the
    options the user set explicitly (checked against the stored ones on resume)."""
    dist, device = init_distributed(cfg.device)
    try:
        return _train(cfg, resume, given or set(), reporter if dist.main else None, dist, device)
    finally:
        if dist.enabled and tdist.is_initialized():
            tdist.destroy_process_group()


def _train(
    cfg: TrainConfig, resume: bool, given: set[str], reporter: Reporter | None, dist: Dist, device: torch.device
) -> TrainSummary:
    started = time.time()
    out = Path(cfg.out)
    state: dict[str, Any] | None = None
    if resume:
        state, stored = read_train_state(out)
        cfg = resume_config(cfg, stored, given)
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TrainError(f"{out}: already exists and is not empty (use --resume to continue it, or a new --out)")
    cfg.validate()
    precision = resolve_precision(cfg.precision, device)
    reporter = reporter or (Reporter() if dist.main else None)

    train_list = open_source(cfg.data, classes_file=cfg.classes, root=cfg.root, role="train")
    val_path = cfg.val or default_val_source(cfg.data)
    val_list = None
    if val_path:
        val_list = open_source(
            val_path,
            classes_file=cfg.classes,
            root=cfg.root if cfg.val else None,
            classes=train_list.classes,
            role="val",
        )
    model_cfg = cfg.model_config(train_list.classes)

    torch.manual_seed(cfg.seed)  # same initial weights on every rank (DDP broadcasts rank 0's anyway)
    model = create_model(model_cfg, imagenet_weights=cfg.pretrained)
    source = None
    if cfg.init:
        source = load_init(model, cfg.init)
    elif cfg.pretrained:
        source = hashlib.sha256(Path(cfg.pretrained).read_bytes()).hexdigest()
    if cfg.checkpoint_activations:
        enable_activation_checkpointing(model)
    model.to(device)
    net: nn.Module = model
    if dist.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    torch.manual_seed(cfg.seed + dist.rank)  # each rank its own dropout masks (nanoGPT's seed offset)

    pad_to = cfg.frames if (cfg.mode == "full" or cfg.segments == 0) else 0
    train_ds = VideoDataset(
        train_list,
        model_cfg.input,
        mode=cfg.mode,
        segments=cfg.segments,
        frames=cfg.frames,
        train=True,
        seed=cfg.seed,
        augment=AugmentSpec(flip=cfg.flip),
    )
    sampler = EpochSampler(len(train_ds), seed=cfg.seed, rank=dist.rank, world=dist.world)
    drop_last = len(sampler) >= cfg.batch_size
    loader = DataLoader(
        train_ds,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.workers,
        collate_fn=collate_fn(pad_to),
        drop_last=drop_last,
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),
    )  # keeps the global RNG (dropout) out of the loader
    val_loader = None
    if val_list is not None:
        val_loader = eval_loader(
            val_list,
            model_cfg,
            batch_size=cfg.eval_batch_size or cfg.batch_size,
            workers=cfg.workers,
            dist=dist,
            pin=device.type == "cuda",
        )

    steps = len(loader)
    if steps == 0:
        raise TrainError(f"{train_list.source}: no training batches (videos: {len(train_list)})")
    optimizer = torch.optim.SGD(param_groups(model, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum)
    total, warmup = cfg.epochs * steps, int(round(cfg.warmup_epochs * steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup))
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")

    start_epoch, best_top1, best_epoch, rows = 0, None, None, []
    if state is not None:
        load_state(model, read_weights(out / "last"), str(out / "last"))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        rank_rng = dist.rank if dist.rank < len(state["rng_cpu"]) else 0
        torch.set_rng_state(state["rng_cpu"][rank_rng])
        if device.type == "cuda" and state.get("rng_cuda"):
            torch.cuda.set_rng_state(state["rng_cuda"][rank_rng], device)
        start_epoch, best_top1, best_epoch = int(state["epoch"]), state["best_top1"], state["best_epoch"]
        rows = _read_log(out / "log.csv", start_epoch)
        if dist.main:
            _trim_cluster_log(out / CLUSTER_LOG, start_epoch)
        if int(state.get("world", 1)) != dist.world:
            log.warning(
                "resuming a %s-process run with %s processes: batches differ from the original run",
                state.get("world", 1),
                dist.world,
            )
    elif dist.main:
        out.mkdir(parents=True, exist_ok=True)
    dist.barrier()

    stopped_early, last_top1 = False, None
    # frames per training video (a sample): watch keeps as many frames per cluster in its windows
    clip_lengths: list[int] = []
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        sampler.set_epoch(epoch)
        net.train()
        if cfg.freeze_bn:
            freeze_batchnorm(model)
        if reporter:
            reporter.start_epoch(epoch + 1, cfg.epochs, steps)
        sums = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, count
        for batch in loader:
            frames, labels = batch.frames.to(device, non_blocking=True), batch.labels.to(device, non_blocking=True)
            if len(clip_lengths) < 4096:
                clip_lengths += [int(n) for n in batch.lengths.tolist()]
            with autocast(device, precision):
                out_ = net(frames, batch.lengths.to(device))
            loss = F.cross_entropy(out_.logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            if cfg.clip_grad > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            correct = (out_.logits.detach().argmax(1) == labels).sum().item()
            sums += torch.tensor([loss.item() * len(labels), correct, len(labels)], dtype=torch.float64)
            if reporter:
                reporter.step(loss.item(), correct / len(labels))
        dist.all_reduce(sums)
        dist.sync_buffers(model)
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": _fmt(optimizer.param_groups[0]["lr"]),
            "train_loss": _fmt(sums[0].item() / sums[2].item()),
            "train_top1": _fmt(sums[1].item() / sums[2].item()),
            "val_loss": "",
            "val_top1": "",
            "val_top5": "",
            "best": "",
        }
        result = None
        if val_loader is not None:
            if reporter:
                reporter.start_eval(len(val_list))
            result = evaluate(
                model,
                val_loader,
                device,
                precision=precision,
                dist=dist,
                track=cfg.track_clusters,
                progress=reporter.eval_step if reporter else None,
            )
            last_top1 = result.top1
            row.update(val_loss=_fmt(result.loss), val_top1=_fmt(result.top1), val_top5=_fmt(result.top5))
            improved = best_top1 is None or result.top1 > best_top1
            if improved:
                best_top1, best_epoch = result.top1, epoch + 1
            row["best"] = "*" if improved else ""
        else:
            improved = False
        row["epoch_s"] = f"{time.time() - t0:.1f}"
        rows.append(row)

        rng_cpu = dist.gather_objects(torch.get_rng_state())
        rng_cuda = dist.gather_objects(torch.cuda.get_rng_state(device)) if device.type == "cuda" else None
        if dist.main:
            trained = {
                "data": train_list.source,
                "epochs": epoch + 1,
                "top1": last_top1,
                "source": source,
                "seed": cfg.seed,
                "val": val_list.source if val_list else None,
                # the median frames of a training video (a resumed run keeps what the first run saw)
                "clip_frames": int(statistics.median(clip_lengths))
                if clip_lengths
                else model.config.trained.get("clip_frames"),
            }
            model.config = model.config.replace(trained=trained)
            train_state = {
                "epoch": epoch + 1,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng_cpu": rng_cpu,
                "rng_cuda": rng_cuda,  # one per rank
                "best_top1": best_top1,
                "best_epoch": best_epoch,
                "world": dist.world,
            }
            if result is not None and result.cluster_ids:
                paths = [str(val_list.records[i].path) for i in result.cluster_ids]
                with open(out / CLUSTER_LOG, "a") as f:
                    f.write(
                        json.dumps({"epoch": epoch + 1, "paths": paths, "ids": list(result.cluster_ids.values())})
                        + "\n"
                    )
            _write_log(out / "log.csv", rows)
            if improved:
                write_checkpoint(model, out / "best")
            write_checkpoint(model, out / "last", train_state, cfg.to_dict())  # last: what --resume trusts
        if reporter:
            reporter.end_epoch(row)
        dist.barrier()
        if cfg.stop_after is not None and epoch + 1 >= cfg.stop_after and epoch + 1 < cfg.epochs:
            stopped_early = True
            break

    hashes = dist.gather_objects(state_hash(model))
    summary = TrainSummary(
        str(out), len(rows), best_top1, best_epoch, last_top1, stopped_early, round(time.time() - started, 1), hashes
    )
    if dist.main:
        (out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
        if len(set(hashes)) > 1:
            raise TrainError(f"DDP ranks ended with different weights: {hashes}")
    if reporter:
        reporter.close()
    return summary


def evaluate_model(
    model_path: str | Path | None,
    data: str | Path,
    *,
    classes_file: str | Path | None = None,
    root: str | Path | None = None,
    batch_size: int = 4,
    workers: int = 2,
    device: str = "auto",
    precision: str | None = None,
    progress=None,
) -> EvalResult:
    """``fvdeploy eval``: a model folder (default: the bundled one) on a list or folder of videos,
    through the same evaluation as the trainer's (whole videos, the runtime's preprocessing)."""
    from fvdeploy.bundle import load_model, resolve_model_path

    path = resolve_model_path(model_path)
    model = load_model(path)
    dev = resolve_device(device)
    prec = resolve_precision(precision or "fp32", dev)
    videos = open_source(data, classes_file=classes_file, root=root, role="val")
    videos = map_to_model_classes(videos, list(model.config.labels))
    loader = eval_loader(videos, model.config, batch_size=batch_size, workers=workers, pin=dev.type == "cuda")
    return evaluate(model.to(dev), loader, dev, precision=prec, progress=progress)
