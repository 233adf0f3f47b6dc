"""``fvdeploy train``, ``fvdeploy eval`` and ``fvdeploy make-move4`` (the training part)."""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .app import app, err, guarded, progress_bar, usage_error
from .choices import Arch, Method, Mode, Precision


class Flip(str, Enum):
    auto = "auto"
    none = "none"


def _stats_column() -> Any:
    from rich.progress import TextColumn

    return TextColumn("{task.fields[stats]}")


def _seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class RichReporter:
    """Per-step progress of ``train``. On a terminal: a bar per epoch with steps/s, ETA and the running
    loss and accuracy (``progress`` from ``progress_bar``). Elsewhere (a log file): one plain line at
    most every ``every_s`` seconds inside an epoch. One line per finished epoch either way; with
    ``quiet`` nothing at all (the summary still goes to stdout, log.csv has every epoch)."""

    def __init__(self, progress: Any = None, *, quiet: bool = False, every_s: float = 30.0) -> None:
        self.progress = progress
        self.quiet = quiet
        self.every_s = every_s
        self.task: Any = None

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        import time

        self.loss_sum, self.acc_sum, self.n, self.steps = 0.0, 0.0, 0, steps
        self.name = f"epoch {epoch}/{epochs}"
        self.t0 = self.last_line = time.perf_counter()
        if self.progress is not None:
            self.task = self.progress.add_task(self.name, total=steps, unit="steps", stats="")

    def _stats(self) -> str:
        return f"loss {self.loss_sum / self.n:.3f}  acc {self.acc_sum / self.n:.1%}"

    def step(self, loss: float, top1: float) -> None:
        import time

        self.loss_sum, self.acc_sum, self.n = self.loss_sum + loss, self.acc_sum + top1, self.n + 1
        if self.progress is not None:
            # refresh now: a step is slow next to a redraw, and the first epoch's bar should not wait
            self.progress.update(self.task, advance=1, stats=self._stats(), refresh=True)
            return
        now = time.perf_counter()
        if self.quiet or now - self.last_line < self.every_s or self.n >= self.steps:
            return
        self.last_line = now
        rate = self.n / max(now - self.t0, 1e-9)
        eta = (self.steps - self.n) / rate
        err.print(
            f"{self.name}  step {self.n}/{self.steps}  {rate:.2f} steps/s  ETA {_seconds(eta)}  {self._stats()}",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )

    def start_eval(self, videos: int) -> None:
        if self.progress is not None:
            self.progress.remove_task(self.task)
            self.task = self.progress.add_task("evaluating", total=videos, unit="videos", stats="")

    def eval_step(self, videos: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=videos, refresh=True)

    def end_epoch(self, row: dict[str, Any]) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
        if self.quiet:
            return
        parts = [
            f"epoch {row['epoch']}",
            f"loss {float(row['train_loss']):.4f}",
            f"train top-1 {float(row['train_top1']):.2%}",
        ]
        if row.get("val_top1"):
            parts += [
                f"val loss {float(row['val_loss']):.4f}",
                f"val top-1 {float(row['val_top1']):.2%}",
                f"top-5 {float(row['val_top5']):.2%}",
            ]
        parts.append(f"{row['epoch_s']} s" + ("  best" if row.get("best") else ""))
        err.print("  ".join(parts), highlight=False, soft_wrap=True, markup=False)

    def close(self) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None


def _given(ctx: typer.Context) -> set[str]:
    """Options the user wrote (or set by environment), as opposed to defaults."""
    return {
        name
        for name in ctx.params
        if getattr(ctx.get_parameter_source(name), "name", "") in ("COMMANDLINE", "ENVIRONMENT")
    }


@app.command()
@guarded
def train(
    ctx: typer.Context,
    out_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--out-dir",
            help="Run folder: last/ and best/ model folders, log.csv, summary.json. Must be new or empty unless --resume. Required.",
        ),
    ] = None,
    data: Annotated[
        Optional[Path],
        typer.Option(
            help="Training videos: a list file, a folder per class, or a dataset folder with train.txt (e.g. from make-move4). Not needed with --resume."
        ),
    ] = None,
    val: Annotated[
        Optional[Path], typer.Option(help="Evaluation videos (default: the dataset folder's val.txt or test.txt).")
    ] = None,
    classes: Annotated[
        Optional[Path], typer.Option(help="Class file: one name per line, or 'index name' lines (UCF101 classInd.txt).")
    ] = None,
    root: Annotated[
        Optional[Path],
        typer.Option(help="Folder that list-file paths are relative to (default: the list file's folder)."),
    ] = None,
    arch: Annotated[Arch, typer.Option(help="Backbone.")] = Arch.resnet18,
    mode: Annotated[
        Mode, typer.Option(help="full: every frame, G clusters after layer1; tsm: K sampled frames (TSM).")
    ] = Mode.full,
    clusters: Annotated[int, typer.Option(help="G, clusters per video (full mode).")] = 8,
    method: Annotated[Method, typer.Option(help="Temporal clustering (full mode).")] = Method.cumulative,
    segments: Annotated[
        int, typer.Option(help="K, frames sampled per video in tsm mode; 0 = all frames (TSM-all).")
    ] = 8,
    frames: Annotated[
        int,
        typer.Option(
            help="Frames per video in a training batch (full mode, TSM-all): shorter videos are padded, longer ones read as interleaved sub-videos; 0 = no cap."
        ),
    ] = 32,
    size: Annotated[int, typer.Option(help="Input crop side in pixels.")] = 224,
    shorter_side: Annotated[
        Optional[int],
        typer.Option(help="Frames are resized to this shorter side before cropping (default: size x 256/224)."),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Epochs (the cosine schedule spans them).")] = 25,
    batch_size: Annotated[int, typer.Option(help="Videos per batch, per process.")] = 8,
    eval_batch_size: Annotated[
        Optional[int], typer.Option(help="Videos per evaluation batch (default: --batch-size).")
    ] = None,
    lr: Annotated[float, typer.Option(help="Peak learning rate (SGD).")] = 0.01,
    momentum: Annotated[float, typer.Option(help="SGD momentum.")] = 0.9,
    weight_decay: Annotated[
        float, typer.Option(help="Weight decay on conv/linear weights (none on BN and biases).")
    ] = 5e-4,
    warmup_epochs: Annotated[float, typer.Option(help="Linear warmup before the cosine decay, in epochs.")] = 0.0,
    clip_grad: Annotated[float, typer.Option(help="Clip the gradient norm to this (0: off).")] = 20.0,
    dropout: Annotated[float, typer.Option(help="Dropout before the classifier.")] = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, order and augmentation.")] = 0,
    precision: Annotated[
        Optional[Precision], typer.Option(help="fp32 | fp16 | bf16 (autocast; default fp16 on CUDA, fp32 on CPU).")
    ] = None,
    pretrained: Annotated[
        Optional[Path], typer.Option(help="Local torchvision ImageNet .pth for the backbone.")
    ] = None,
    init: Annotated[
        Optional[Path], typer.Option(help="Start from this model folder (a new head when its classes differ).")
    ] = None,
    freeze_bn: Annotated[
        bool,
        typer.Option(
            "--freeze-bn/--no-freeze-bn",
            help="Freeze every BatchNorm but the first (TSM's partial BN, the paper's UCF101/HMDB51 setting).",
        ),
    ] = False,
    checkpoint_activations: Annotated[
        bool,
        typer.Option(
            "--checkpoint-activations/--no-checkpoint-activations",
            help="Recompute stem + layer1 in the backward pass instead of storing their activations.",
        ),
    ] = False,
    flip: Annotated[
        Flip, typer.Option(help="auto: flip left-right except classes a mirror changes (move_left, ...); none: never.")
    ] = Flip.auto,
    track_clusters: Annotated[
        int,
        typer.Option(help="Record the clusters of this many evaluation videos after each epoch (cluster_ids.jsonl)."),
    ] = 8,
    workers: Annotated[int, typer.Option(help="DataLoader decoding processes per training process.")] = 2,
    device: Annotated[
        str, typer.Option(help="auto | cpu | cuda | cuda:N (under torchrun: the local rank's GPU).")
    ] = "auto",
    stop_after: Annotated[
        Optional[int],
        typer.Option(help="Stop after this epoch (the schedule still spans --epochs); --resume continues."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--no-resume", help="Continue the run in --out-dir exactly where its last finished epoch left it."
        ),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet/--no-quiet", "-q", help="No progress and no per-epoch lines (the summary still goes to stdout)."
        ),
    ] = False,
    out: Annotated[Optional[Path], typer.Option("--out", hidden=True)] = None,
) -> None:
    """Train a full-video (or TSM) model. Run under torchrun for several GPUs or nodes.

    Prints the summary as JSON on stdout; progress and per-epoch lines go to stderr.
    """
    from fvdeploy.training.loop import TrainConfig
    from fvdeploy.training.loop import train as run

    if out is not None and out_dir is not None and out != out_dir:
        raise usage_error("--out is the old spelling of --out-dir; pass one")
    out = out_dir if out_dir is not None else out
    if out is None:
        raise usage_error("--out-dir DIR is required (the run folder)")
    if min(workers, epochs, batch_size) < 0 or epochs == 0 or batch_size == 0:
        raise usage_error("--epochs and --batch-size must be >= 1, --workers >= 0")
    if data is None and not resume:
        raise usage_error("--data is required (a resumed run reads it from its train state)")
    cfg = TrainConfig(
        data=str(data) if data else "",
        out=str(out),
        val=str(val) if val else None,
        classes=str(classes) if classes else None,
        root=str(root) if root else None,
        arch=arch.value,
        mode=mode.value,
        clusters=clusters,
        method=method.value,
        segments=segments,
        frames=frames,
        size=size,
        shorter_side=shorter_side,
        epochs=epochs,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        warmup_epochs=warmup_epochs,
        clip_grad=clip_grad,
        dropout=dropout,
        seed=seed,
        precision=precision.value if precision else None,
        pretrained=str(pretrained) if pretrained else None,
        init=str(init) if init else None,
        freeze_bn=freeze_bn,
        checkpoint_activations=checkpoint_activations,
        flip=flip.value,
        track_clusters=track_clusters,
        workers=workers,
        device=device,
        stop_after=stop_after,
    )
    with progress_bar(not quiet and err.is_terminal, _stats_column()) as bar:
        reporter = RichReporter(bar, quiet=quiet)
        try:
            summary = run(cfg, resume=resume, given=_given(ctx) - {"resume", "quiet", "out_dir"}, reporter=reporter)
        finally:
            reporter.close()
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun: one summary, from rank 0
        typer.echo(json.dumps(summary.to_dict()))


@app.command("eval")
@guarded
def eval_cmd(
    data: Annotated[
        Path, typer.Option(help="Videos: a list file, a folder per class, or a dataset folder (val.txt / test.txt).")
    ],
    model: Annotated[
        Optional[Path], typer.Option("--model", "-m", help="Model folder (default: the bundled model).")
    ] = None,
    classes: Annotated[
        Optional[Path], typer.Option(help="Class file of the list (names are matched to the model's labels).")
    ] = None,
    root: Annotated[Optional[Path], typer.Option(help="Folder that list-file paths are relative to.")] = None,
    confusion: Annotated[Optional[Path], typer.Option(help="Write the confusion matrix as a PNG here.")] = None,
    force: Annotated[bool, typer.Option("--force/--no-force", help="Overwrite an existing --confusion file.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json/--no-json", help="Print the whole result (with the confusion matrix) as JSON.")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Videos per batch.")] = 4,
    workers: Annotated[int, typer.Option(help="Decoding processes.")] = 2,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "auto",
    precision: Annotated[Precision, typer.Option(help="fp32 | fp16 | bf16.")] = Precision.fp32,
) -> None:
    """Top-1, top-5 and per-class accuracy of a model on labelled videos (the trainer's evaluation)."""
    from rich.console import Console
    from rich.table import Table

    from fvdeploy.training.loop import evaluate_model
    from fvdeploy.training.plots import confusion_png

    if confusion is not None and confusion.exists() and not force:
        raise usage_error(f"{confusion} exists (use --force to overwrite it)")
    with progress_bar(err.is_terminal) as bar:
        task = bar.add_task("evaluating", total=None, unit="videos") if bar else None
        result = evaluate_model(
            model,
            data,
            classes_file=classes,
            root=root,
            batch_size=batch_size,
            workers=workers,
            device=device,
            precision=precision.value,
            progress=(lambda n: bar.update(task, advance=n)) if bar else None,
        )
    if confusion is not None:
        confusion_png(result.confusion, result.labels, confusion, title=f"{data}: top-1 {result.top1:.2%}")
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    t = Table(title=f"{result.count} videos: top-1 {result.top1:.2%}, top-5 {result.top5:.2%}, loss {result.loss:.4f}")
    t.add_column("class")
    t.add_column("videos", justify="right")
    t.add_column("accuracy", justify="right")
    counts = result.confusion.sum(1)
    for (name, acc), n in zip(result.per_class().items(), counts):
        t.add_row(name, str(int(n)), "-" if acc is None else f"{acc:.2%}")
    Console().print(t)


@app.command("make-move4")
@guarded
def make_move4(
    out: Annotated[Path, typer.Argument(help="New (or empty) folder for the dataset.")],
    train: Annotated[int, typer.Option(help="Training videos (classes balanced).")] = 1800,
    test: Annotated[int, typer.Option(help="Test videos.")] = 600,
    frames: Annotated[int, typer.Option(help="Frames per video.")] = 32,
    size: Annotated[int, typer.Option(help="Frame side in pixels (even).")] = 64,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same files.")] = 0,
    fps: Annotated[float, typer.Option(help="Frame rate written in the files.")] = 25.0,
    chunk: Annotated[
        str, typer.Option(help="LO,HI: the distractor chunk's length as a fraction of the frames (at most 0.75).")
    ] = "0.25,0.5",
    action_frames: Annotated[
        Optional[int],
        typer.Option(
            help="Sparse action: the digit is visible and moving in only this many consecutive frames (e.g. 4 of 32), distractors elsewhere; --chunk is then ignored."
        ),
    ] = None,
) -> None:
    """Generate a Move4MNIST-style dataset: a digit moving up/down/left/right over a moving
    textured background, with a chunk of black, background-only and distractor-digit frames."""
    from fvdeploy.training.move4 import Move4Spec, write_move4

    try:
        lo, hi = (float(v) for v in chunk.split(","))
    except ValueError:
        raise usage_error(f"--chunk takes two fractions LO,HI (e.g. 0.25,0.5), got {chunk!r}") from None
    spec = Move4Spec(frames=frames, size=size, fps=fps, chunk=(lo, hi), action_frames=action_frames)
    with progress_bar(err.is_terminal) as bar:
        task = bar.add_task("rendering", total=train + test, unit="videos") if bar else None
        path = write_move4(
            out,
            train=train,
            test=test,
            spec=spec,
            seed=seed,
            progress=(lambda done, total: bar.update(task, completed=done)) if bar else None,
        )
    typer.echo(
        json.dumps(
            {
                "out": str(path),
                "train": train,
                "test": test,
                "frames": frames,
                "size": size,
                "seed": seed,
                "chunk": [lo, hi],
                "action_frames": action_frames,
            }
        )
    )
