"""``fvdeploy info MODEL``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app, guarded, usage_error


@app.command()
@guarded
def info(
    model_arg: Annotated[
        Optional[Path], typer.Argument(help="Model folder (same as --model).", metavar="MODEL", show_default=False)
    ] = None,
    model: Annotated[
        Optional[Path],
        typer.Option(
            "--model", "-m", help="Model folder (config.json + model.safetensors); default: the bundled model."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json/--no-json", help="Print the whole config.json.")] = False,
) -> None:
    """Print a model's config: arch, classes, clusters, method, mode, input size, parameters."""
    if model is not None and model_arg is not None and model != model_arg:
        raise usage_error("name the model once: MODEL or --model")
    model = model if model is not None else model_arg
    from rich.console import Console
    from rich.table import Table

    from ..bundle import load_model, resolve_model_path

    path = resolve_model_path(model)
    net = load_model(path)
    cfg = net.config
    if as_json:
        typer.echo(json.dumps(cfg.to_dict(), indent=2))
        return
    from ..models import count_parameters

    t = Table(show_header=False, box=None)
    labels = ", ".join(cfg.labels[:8]) + (f", ... ({cfg.num_classes} in all)" if cfg.num_classes > 8 else "")
    rows = [
        ("model", str(path)),
        ("arch", cfg.arch),
        ("classes", f"{cfg.num_classes}: {labels}"),
        ("mode", cfg.mode if cfg.mode == "full" else f"tsm, {cfg.segments or 'all'} segments"),
        ("num_clusters", str(cfg.num_clusters)),
        ("method", cfg.method),
        (
            "input",
            f"shorter side {cfg.input.shorter_side}, centre crop {cfg.input.crop}, {cfg.input.color.upper()}, "
            f"scale {cfg.input.scale}, {cfg.input.interpolation}",
        ),
        ("parameters", f"{count_parameters(net) / 1e6:.2f} M"),
    ]
    if cfg.trained:
        rows.append(("trained", json.dumps(cfg.trained)))
    for k, v in rows:
        t.add_row(f"[bold]{k}[/]", v)
    Console().print(t)
