"""``fvdeploy classify PATH...``: the main job."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app, err, guarded, print_error, progress_bar, status, usage_error
from .choices import BackendName, Decoder, Method, Mode, Precision
from .output import open_output, still_to_do
from .report import emit
from .signals import interruptible


def _visual_path(folder: Path, source: str, used: set[Path]) -> Path:
    """A PNG name for this video that neither this run nor the user's folder already has."""
    stem = Path(source).stem or "video"
    candidate, n = folder / f"{stem}.png", 1
    while candidate in used or candidate.exists():
        candidate, n = folder / f"{stem}-{n}.png", n + 1
    used.add(candidate)
    return candidate


@app.command()
@guarded
@interruptible  # SIGTERM and SIGHUP behave as Ctrl-C (exit 143, 129)
def classify(
    paths: Annotated[
        Optional[list[str]],
        typer.Argument(
            help="Video files, directories (searched recursively) or globs.", show_default=False, metavar="VIDEO"
        ),
    ] = None,
    model: Annotated[
        Optional[Path], typer.Option("--model", "-m", help="Model folder; default: the bundled model.")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="How many labels to report.", min=1)] = 5,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    backend: Annotated[BackendName, typer.Option(help="Inference backend. No silent fallback.")] = BackendName.auto,
    precision: Annotated[Optional[Precision], typer.Option(help="Default: fp16 on CUDA, fp32 on CPU.")] = None,
    mode: Annotated[
        Optional[Mode], typer.Option(help="full: every frame, G clusters; tsm: K sampled frames. Default: as trained.")
    ] = None,
    segments: Annotated[
        Optional[int], typer.Option(help="With --mode tsm: frames sampled per video (0 = every frame).", min=0)
    ] = None,
    clusters: Annotated[
        Optional[int], typer.Option(help="Full mode: number of clusters G (default: as trained).", min=1)
    ] = None,
    method: Annotated[
        Optional[Method], typer.Option(help="Full mode: clustering method (default: as trained).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json/--no-json", help="One JSON object per video on stdout.")] = False,
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", help="Write JSON Lines to this file (FILE.partial until the run ends)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force/--no-force", help="Overwrite an existing --output or --annotate file.")
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--no-resume",
            help="Continue --output (or the FILE.partial an interrupted run left), skipping inputs it records.",
        ),
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict/--no-strict", help="Exit 1 when a result is partial (frames lost), not only when an input fails."
        ),
    ] = False,
    manifest: Annotated[Optional[Path], typer.Option(help="A file with one input path per line.")] = None,
    shard: Annotated[
        Optional[str], typer.Option(help="I/N: process only the I-th of N disjoint slices of the sorted inputs.")
    ] = None,
    visualize: Annotated[
        Optional[Path], typer.Option(help="Write one timeline PNG per video into this folder.")
    ] = None,
    annotate: Annotated[
        Optional[Path],
        typer.Option(
            help="Write this video (one input only): each frame with its segment's label and score, and a timeline strip."
        ),
    ] = None,
    max_memory: Annotated[
        Optional[int],
        typer.Option(
            "--max-memory", help="MiB the runtime may hold beyond the model (default 1024 CPU, 2048 CUDA).", min=16
        ),
    ] = None,
    chunk_size: Annotated[
        Optional[int], typer.Option(help="Frames per stem+layer1 call (default: from --max-memory).", min=1)
    ] = None,
    decoder: Annotated[
        Optional[Decoder], typer.Option(help="Default: auto on CUDA (nvdec when available), opencv on CPU.")
    ] = None,
    decode_workers: Annotated[
        Optional[int], typer.Option(help="Videos decoded ahead in parallel (default: from the CPU count).", min=1)
    ] = None,
    devices: Annotated[
        Optional[str], typer.Option(help="One worker process per device: 'all', '0,1,2,3' (GPUs) or 'cpu,cpu'.")
    ] = None,
    features_precision: Annotated[
        Optional[Precision], typer.Option(help="Precision of stem+layer1, whose signs the clustering reads.")
    ] = None,
    fast_resize: Annotated[  # noqa: ARG001  (an old spelling that must still parse; it never did anything)
        bool,
        typer.Option(
            "--fast-resize/--no-fast-resize",
            help="No effect: frames are always resized in uint8 now (kept so old scripts still run).",
            hidden=True,
        ),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet/--no-quiet",
            "-q",
            help="No progress and no table (results still go to stdout, --output and stderr).",
        ),
    ] = False,
    topk_alias: Annotated[Optional[int], typer.Option("--topk", hidden=True, min=1)] = None,
    ray: Annotated[
        Optional[str],
        typer.Option(
            "--ray",
            help="Run on a Ray cluster: auto (the cluster this machine is in, or RAY_ADDRESS), an address (ray://head:10001), or local (start one here). Needs fvdeploy[ray].",
            rich_help_panel="Ray",
        ),
    ] = None,
    ray_actors: Annotated[
        int, typer.Option(help="Actors, each loading the model once.", min=1, rich_help_panel="Ray")
    ] = 1,
    ray_gpus_per_actor: Annotated[
        float, typer.Option(help="GPUs per actor (1 on GPU nodes; 0: CPU actors).", min=0, rich_help_panel="Ray")
    ] = 0,
    ray_cpus_per_actor: Annotated[
        float,
        typer.Option(help="CPUs per actor (a CPU actor runs torch on as many threads).", min=0, rich_help_panel="Ray"),
    ] = 1,
    ray_batch_size: Annotated[
        int, typer.Option(help="Videos sent to an actor at a time.", min=1, rich_help_panel="Ray")
    ] = 4,
    ray_retries: Annotated[
        int,
        typer.Option(
            help="Restarts of a dead actor and retries of its batch (-1: no limit).", min=-1, rich_help_panel="Ray"
        ),
    ] = -1,
) -> None:
    """Classify videos of any length: label, top-k and per-cluster segments for each.

    Exit status: 0 when every input was classified (a partial result, frames lost, adds one
    stderr line; --strict makes it 1), 1 when any input failed or the model could not load,
    2 for usage errors, 130 when interrupted (Ctrl-C), 143 on SIGTERM, 129 on SIGHUP."""
    from ..runtime.inputs import expand_inputs, parse_shard, read_manifest, take_shard
    from ..runtime.options import ClassifyOptions, OptionsError

    names = list(paths or [])
    options = ClassifyOptions(
        model=str(model) if model is not None else None,
        device=device,
        backend=backend.value,
        precision=precision.value if precision else None,
        features_precision=features_precision.value if features_precision else None,
        mode=mode.value if mode else None,
        segments=segments,
        clusters=clusters,
        method=method.value if method else None,
        top_k=topk_alias if topk_alias is not None else top_k,
        max_memory=max_memory,
        chunk_size=chunk_size,
        decoder=decoder.value if decoder else None,
        decode_workers=decode_workers,
    )
    try:
        options.validate()
    except OptionsError as e:
        raise usage_error(str(e)) from None
    if as_json and output is not None:
        raise usage_error("--json and --output are alternatives; pick one")
    if resume and output is None:
        raise usage_error("--resume applies to --output")
    if force and output is None and annotate is None:
        raise usage_error("--force applies to --output and --annotate")
    if force and resume:
        raise usage_error("--force and --resume are alternatives; pick one")
    try:
        shard_spec = parse_shard(shard) if shard is not None else None
    except ValueError as e:
        raise usage_error(str(e)) from None
    if manifest is not None:
        try:
            names += read_manifest(manifest)
        except (OSError, UnicodeDecodeError) as e:  # the list of work itself: nothing to do without it
            raise usage_error(f"--manifest {manifest}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    if not names:
        raise usage_error("no inputs: name video files, directories or globs, or --manifest FILE")
    if devices is not None and device != "auto":
        raise usage_error("--device and --devices are alternatives; pick one")
    if ray is not None and (devices is not None or visualize is not None or annotate is not None):
        raise usage_error("--ray runs on a cluster's actors: --devices, --visualize and --annotate are for one machine")
    skipped: list[str] = []
    if ray is not None:
        from ..distributed import expand_paths  # also lists object-storage folders (s3://bucket/prefix/)

        inputs = take_shard(expand_paths(names), shard_spec)
    else:
        inputs = take_shard(expand_inputs(names, skipped), shard_spec)
    for line in skipped:  # a folder scan never drops a file silently
        print_error(line, "warning", "yellow")
    if annotate is not None:
        from .annotate import check_target

        if devices is not None:
            raise usage_error("--annotate runs in this process; drop --devices")
        if len(inputs) != 1:
            raise usage_error(f"--annotate writes one video; got {len(inputs)} inputs")
        check_target(annotate, force)

    writer = open_output(output, force=force, resume=resume)  # JSONL or Parquet: one set of guarantees
    inputs = still_to_do(inputs, writer)
    try:
        failed, partial, rows = _run(
            inputs,
            writer,
            options,
            devices=devices,
            visualize=visualize,
            as_json=as_json,
            quiet=quiet,
            annotate=annotate,
            ray=dict(
                address=ray,
                actors=ray_actors,
                num_gpus=ray_gpus_per_actor,
                num_cpus=ray_cpus_per_actor,
                batch_size=ray_batch_size,
                retries=ray_retries,
            )
            if ray is not None
            else None,
        )
    except BaseException:
        if writer is not None:
            writer.abort()  # complete lines stay in FILE.partial for --resume
        raise
    if writer is not None:
        writer.close()
    if not as_json and not quiet and rows:
        _print_table(rows)
    if failed or (strict and partial):
        raise typer.Exit(1)


def _run(
    inputs,
    writer,
    options,
    *,
    devices,
    visualize,
    as_json,
    quiet,
    annotate,
    ray=None,
) -> tuple[int, int, list]:
    # what every process loads the model with (this one, --devices workers, Ray actors)
    load_kwargs = {k: v for k, v in dataclasses.asdict(options).items() if k not in ("device", "decode_workers")}
    device, decode_workers = options.device, options.decode_workers
    show_progress = not quiet and err.is_terminal
    if ray is not None:
        from .classify_ray import classify_on_ray

        failed, rows = classify_on_ray(
            inputs,
            writer,
            as_json,
            show_progress=show_progress,
            device=device,
            decode_workers=decode_workers,
            load_kwargs=load_kwargs,
            **ray,
        )
        return failed, sum(r.partial for r in rows), rows
    device_list = None
    if devices is not None:
        from ..runtime.workers import parse_devices

        try:
            device_list = parse_devices(devices)
        except ValueError as e:
            raise usage_error(str(e)) from None
    else:
        from ..runtime import Classifier

        with status("loading the model", show_progress):
            clf = Classifier.load(options=options, bound_heap=True)  # flat RSS over long videos (docs/runtime.md)
    if visualize is not None:
        visualize.mkdir(parents=True, exist_ok=True)
    rows, used_png, failed, partial = [], set(), 0, 0
    good = [i.path for i in inputs if i.error is None]
    pngs = {p: _visual_path(visualize, p, used_png) for p in good} if visualize is not None else {}

    with progress_bar(show_progress) as progress:
        videos_task = progress.add_task("videos", total=len(inputs), unit="videos") if progress else None
        frames_task = (
            progress.add_task("frames", total=None, unit="frames") if progress and device_list is None else None
        )

        def on_frames(done: int, total: int) -> None:
            progress.update(frames_task, completed=done, total=total or None)

        if device_list is not None:
            from ..runtime.workers import classify_on_devices

            stream = classify_on_devices(
                good,
                device_list,
                {k: (str(v) if isinstance(v, Path) else v) for k, v in load_kwargs.items()},
                [pngs.get(p) for p in good] if pngs else None,
            )
        else:
            stream = clf.classify_many(
                good, progress=on_frames if progress else None, visualize=(lambda src: pngs[str(src)]) if pngs else None
            )
        for item in inputs:
            result = None if item.error is not None else next(stream)
            error = item.error if result is None else result.error
            if progress:
                progress.advance(videos_task)
                if frames_task is not None:
                    progress.reset(frames_task, total=None)
            failed += emit(item.path, result, error, writer, as_json, rows)
    partial = sum(r.partial for r in rows)
    if annotate is not None and rows:
        from .annotate import annotate_result

        path = annotate_result(rows[0], annotate, show_progress=show_progress)
        err.print(f"annotated video: {path}", highlight=False, soft_wrap=True, markup=False)
    return failed, partial, rows


def _print_table(results) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False)
    # frames as [start, end): the JSON's convention (end exclusive)
    for col in ("video", "label", "score", "frames", "segments ([start, end) frames: label)"):
        table.add_column(col, overflow="fold")
    for r in results:
        segs = ", ".join(f"[{s.start_frame}, {s.end_frame}): {s.label}" for s in r.segments[:16])
        name = r.path + (" (partial)" if r.partial else "")
        table.add_row(name, r.label, f"{r.score:.3f}", str(r.num_frames), segs)
    Console().print(table)
