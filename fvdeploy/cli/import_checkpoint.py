"""``fvdeploy import-checkpoint SRC --out DIR``."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app, err, guarded, print_error, usage_error
from .choices import Method, Mode


class Source(str, Enum):
    tsm = "tsm"
    mmaction2 = "mmaction2"
    torchvision = "torchvision"
    auto = "auto"


@app.command("import-checkpoint")
@guarded
def import_checkpoint(
    src: Annotated[
        Path, typer.Argument(help="The .pth file: official TSM, mmaction2, or torchvision ImageNet ResNet-18/50.")
    ],
    out_dir: Annotated[
        Optional[Path],
        typer.Option("--out-dir", help="Model folder to write (config.json + model.safetensors). Required."),
    ] = None,
    source: Annotated[
        Source, typer.Option("--from", help="Layout of SRC; auto detects it from the keys.")
    ] = Source.auto,
    labels: Annotated[
        Optional[str],
        typer.Option(
            help="Class names: kinetics400, sthv2, or a file with one name per line. Default: from the file's dataset."
        ),
    ] = None,
    mode: Annotated[
        Optional[Mode],
        typer.Option(help="Default inference mode. Default: tsm for TSM checkpoints, full for torchvision."),
    ] = None,
    segments: Annotated[
        Optional[int],
        typer.Option(
            help="TSM mode: K segments (0 = every frame). Default: the count the checkpoint was trained with, else 8."
        ),
    ] = None,
    clusters: Annotated[Optional[int], typer.Option(help="Full mode: G clusters. Default: the segment count.")] = None,
    method: Annotated[Method, typer.Option(help="Full mode: clustering method.")] = Method.cumulative,
    force: Annotated[
        bool,
        typer.Option(
            "--force/--no-force",
            help="Replace --out-dir if it is an existing model folder (its export/ and train_state/ go too).",
        ),
    ] = False,
    out: Annotated[Optional[Path], typer.Option("--out", hidden=True)] = None,
) -> None:
    """Convert a published TSM checkpoint into a model folder (nothing in SRC is executed)."""
    if out is not None and out_dir is not None and out != out_dir:
        raise usage_error("--out is the old spelling of --out-dir; pass one")
    out = out_dir if out_dir is not None else out
    if out is None:
        raise usage_error("--out-dir DIR is required (the model folder to write)")
    from ..importers import ImportOptions
    from ..importers import import_checkpoint as run_import

    options = ImportOptions(
        source=source.value,
        labels=labels,
        mode=mode.value if mode else None,
        segments=segments,
        clusters=clusters,
        method=method.value,
        force=force,
    )
    result = run_import(src, out, options)
    cfg = result.config
    for warning in result.warnings:
        print_error(warning, "warning", "yellow")
    mode_text = (
        f"tsm, {cfg.segments or 'all'} segments"
        if cfg.mode == "tsm"
        else f"full, {cfg.num_clusters} clusters ({cfg.method})"
    )
    err.print(
        f"imported {result.layout} checkpoint {src.name}: {cfg.arch}, {cfg.num_classes} classes "
        f"({result.labels_from}), default mode {mode_text} -> {result.path}",
        highlight=False,
        soft_wrap=True,
    )
    typer.echo(
        json.dumps(
            {
                "model": str(result.path),
                "layout": result.layout,
                "arch": cfg.arch,
                "num_classes": cfg.num_classes,
                "labels": result.labels_from,
                "mode": cfg.mode,
                "segments": cfg.segments,
                "num_clusters": cfg.num_clusters,
                "method": cfg.method,
                "source_sha256": result.sha256,
                "warnings": result.warnings,
            }
        )
    )
