"""``fvdeploy watch SOURCE...``: windowed classification and action events for long recordings,
cameras and network streams, several at once on one device.

Output: one JSON line per window, event, gap and stream end (flushed as it happens) to ``--output``
or, when stdout is not a terminal (or with ``--json``), to stdout. On a terminal, a live view on
stderr shows each stream's current label and last events. Stopping with Ctrl-C, SIGTERM or SIGHUP closes
the open events, finishes the output and the pictures, and exits 128 + the signal's number (130,
143, 129: docs/design.md#signals); otherwise 0, or 1 when a source failed.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..config import LIMITS
from ..watch.rules import EventRules
from .app import app, err, guarded, print_error, usage_error
from .choices import BackendName, Method, Precision

MAX_CLUSTERS = LIMITS["num_clusters"][0]


def _png_path(folder: Path, stream: str, used: set[Path]) -> Path:
    """A PNG name for this stream that neither this run nor the user's folder already has."""
    stem = (
        re.sub(r"[^A-Za-z0-9._-]+", "_", Path(stream).stem if "://" not in stream else stream.split("://", 1)[1]).strip(
            "_"
        )
        or "stream"
    )
    candidate, n = folder / f"{stem[:80]}.png", 1
    while candidate in used or candidate.exists():
        candidate, n = folder / f"{stem[:80]}-{n}.png", n + 1
    used.add(candidate)
    return candidate


class _Stop(Exception):
    pass


@app.command()
@guarded
def watch(
    sources: Annotated[
        Optional[list[str]],
        typer.Argument(
            help="Video files, directories, camera indices (0, 1, ...) or stream URLs (rtsp://, http://, ...).",
            show_default=False,
        ),
    ] = None,
    window: Annotated[float, typer.Option(help="Window length in seconds.", min=0.001)] = 8.0,
    stride: Annotated[float, typer.Option(help="Seconds between window starts.", min=0.001)] = 2.0,
    window_frames: Annotated[
        Optional[int], typer.Option(help="Window length in frames (with --stride-frames; overrides seconds).", min=1)
    ] = None,
    stride_frames: Annotated[
        Optional[int], typer.Option(help="Frames between window starts (with --window-frames).", min=1)
    ] = None,
    enter: Annotated[
        float,
        typer.Option(
            "--enter", help="An event starts at a window whose top label has this probability.", min=0.0, max=1.0
        ),
    ] = EventRules.enter,
    exit_: Annotated[
        Optional[float],
        typer.Option(
            "--exit",
            help="... and goes on while the next windows give its label at least this (hysteresis; <= --enter). Default: 0.7, or --enter if lower.",
            min=0.0,
            max=1.0,
            show_default=False,
        ),
    ] = None,
    merge_gap: Annotated[
        float,
        typer.Option(
            "--merge-gap",
            help="Seconds: runs of one label this close join into one event (if nothing long came between).",
            min=0.0,
        ),
    ] = EventRules.merge_gap_s,
    min_duration: Annotated[
        float, typer.Option("--min-duration", help="Drop events shorter than this many seconds.", min=0.0)
    ] = EventRules.min_duration_s,
    clips: Annotated[
        Optional[Path],
        typer.Option(
            "--clips",
            help="Folder: write each event as a clip a browser plays (H.264 MP4) with a JSON sidecar.",
        ),
    ] = None,
    events_only: Annotated[
        bool, typer.Option("--events-only/--no-events-only", help="Report events (and stream ends), not every window.")
    ] = False,
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", help="Write JSON Lines here (FILE.partial until the watch ends)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force/--no-force", help="Overwrite an existing --output or --annotate file.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json/--no-json", help="JSON Lines on stdout even on a terminal.")] = False,
    visualize: Annotated[
        Optional[Path], typer.Option(help="Write a timeline PNG per source into this folder at the end.")
    ] = None,
    realtime: Annotated[
        bool,
        typer.Option(
            "--realtime/--no-realtime",
            help="Pace files at their frame rate, like a camera (frames are dropped if the device falls behind).",
        ),
    ] = False,
    live: Annotated[
        Optional[bool],
        typer.Option(
            "--live/--no-live",
            help="Treat every source as live: drop frames when behind, reconnect when it drops. Default: rtsp/rtmp/udp/srt URLs and cameras are live; files and http(s) URLs are read to their end.",
            show_default=False,
        ),
    ] = None,
    fps: Annotated[
        Optional[float], typer.Option(help="Frame rate to assume, overriding what the sources announce.", min=0.001)
    ] = None,
    retries: Annotated[
        int, typer.Option(help="Reconnection attempts when a network stream or camera drops.", min=0)
    ] = 5,
    retry_delay: Annotated[
        float, typer.Option(help="Seconds before the first reconnection attempt (doubling, at most 10).", min=0.0)
    ] = 1.0,
    model: Annotated[
        Optional[Path], typer.Option("--model", "-m", help="Model folder; default: the bundled model.")
    ] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    backend: Annotated[BackendName, typer.Option(help="Inference backend. No silent fallback.")] = BackendName.auto,
    precision: Annotated[Optional[Precision], typer.Option(help="Default: fp16 on CUDA, fp32 on CPU.")] = None,
    clusters: Annotated[
        Optional[int],
        typer.Option(
            help="Clusters G per window. Default: as many as keep the frames per cluster the model was trained "
            "with (its config's trained.clip_frames; 50 for the bundled model's 8-s windows at 25 fps), else as trained.",
            min=1,
        ),
    ] = None,
    method: Annotated[Optional[Method], typer.Option(help="Clustering method (default: as trained).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Labels reported per window.", min=1)] = 3,
    max_memory: Annotated[
        Optional[int],
        typer.Option(
            "--max-memory",
            help="MiB the watch may hold beyond the model, all streams together (default 1024 CPU, 2048 CUDA).",
            min=16,
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet/--no-quiet", "-q", help="No live view (results still go to stdout or --output).")
    ] = False,
    annotate: Annotated[
        Optional[Path],
        typer.Option(
            help="One video file only: write it (.mp4 H.264 or .webm VP9, browser-playable) with each window's label and score and a timeline strip."
        ),
    ] = None,
    topk_alias: Annotated[Optional[int], typer.Option("--topk", hidden=True, min=1)] = None,
    threshold_alias: Annotated[Optional[float], typer.Option("--threshold", hidden=True, min=0.0, max=1.0)] = None,
) -> None:
    """Watch long recordings, cameras and streams: a label per window, action events as they end."""
    from ..runtime.jsonl import JsonlWriter, OutputExists

    if not sources:
        raise usage_error("no sources: name video files, directories, camera indices or stream URLs")
    if (window_frames is None) != (stride_frames is None):
        raise usage_error("--window-frames and --stride-frames go together")
    top_k = topk_alias if topk_alias is not None else top_k
    enter = threshold_alias if threshold_alias is not None else enter
    if clusters is not None and clusters > MAX_CLUSTERS:
        raise usage_error(f"--clusters must be at most {MAX_CLUSTERS}, got {clusters}")
    if exit_ is not None and exit_ > enter:
        raise usage_error(f"--exit {exit_} exceeds --enter {enter}: an event goes on while its label keeps --exit")
    if clips is not None:
        if clips.exists() and not clips.is_dir():
            raise usage_error(f"--clips {clips} is a file; name a folder")
        try:
            clips.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise usage_error(f"--clips {clips}: cannot create the folder ({e.strerror or e})") from None
    if force and output is None and annotate is None:
        raise usage_error("--force applies to --output and --annotate")
    if annotate is not None:
        from .annotate import check_target

        if len(sources) != 1 or not Path(sources[0]).is_file():
            raise usage_error("--annotate needs exactly one video file as the source")
        check_target(annotate, force)
        if events_only:  # the annotated video labels each window: events alone would leave it unwritten
            raise usage_error("--annotate labels every window; it cannot go with --events-only")
    if as_json and output is not None:
        raise usage_error("--json and --output are alternatives; pick one")

    from ..runtime import Classifier
    from ..watch import Watcher, WatchOptions

    options = WatchOptions(
        window_s=window,
        stride_s=stride,
        window_frames=window_frames,
        stride_frames=stride_frames,
        enter=enter,
        exit=exit_,
        merge_gap_s=merge_gap,
        min_duration_s=min_duration,
        clips=clips,
        clusters=clusters,
        events_only=events_only,
        realtime=realtime,
        fps=fps,
        retries=retries,
        retry_delay_s=retry_delay,
        live=live,
    )
    options.validate()
    writer = None
    if output is not None:
        try:
            writer = JsonlWriter(output, force=force, resumable=False)  # a watch has no --resume
        except OutputExists as e:
            raise usage_error(str(e)) from None
        except OSError as e:
            raise usage_error(f"{output}: cannot write ({e.strerror or e})") from None
    to_stdout = writer is None and (as_json or not sys.stdout.isatty())
    live = not quiet and err.is_terminal and not (to_stdout and sys.stdout.isatty())
    try:
        clf = Classifier.load(
            model,
            device=device,
            backend=backend.value,
            num_clusters=clusters,
            method=method.value if method else None,
            precision=precision.value if precision else None,
            max_memory_mib=max_memory,
            topk=top_k,
            mode="full",
            bound_heap=True,  # flat RSS over hours of stream (docs/runtime.md)
        )
        watcher = Watcher(clf, options)
        items = watcher.run(sources)
        windows: list | None = [] if annotate is not None else None
        failed, stopped_by = _consume(watcher, items, clf, options, writer, to_stdout, live, visualize, windows)
    finally:
        if writer is not None:
            writer.close()
    if annotate is not None and windows:
        from .annotate import annotate_windows

        path = annotate_windows(sources[0], windows, annotate, fps=fps, show_progress=not quiet and err.is_terminal)
        err.print(f"annotated video: {path}", highlight=False, soft_wrap=True, markup=False)
    if stopped_by:
        err.print(f"interrupted ({signal.Signals(stopped_by).name})", highlight=False, markup=False)
        raise typer.Exit(128 + stopped_by)
    if failed:
        raise typer.Exit(1)


def _consume(
    watcher,
    items,
    clf,
    options,
    writer,
    to_stdout: bool,
    live: bool,
    visualize: Path | None,
    windows: list | None = None,
) -> int:
    """Write, show and draw every item; returns how many streams failed and the signal that stopped
    the watch (0: none). The first Ctrl-C, SIGTERM or SIGHUP winds the watch down (open events close,
    outputs finish); a second one stops at once."""
    from ..records import Event, StreamEnd, WindowResult, dumps
    from ..watch.timeline import TimelineRecorder, write_timeline

    view = LiveView() if live else None
    recorders: dict[str, TimelineRecorder] = {}
    events: list = []
    failed = 0
    stopping: list[int] = []

    def on_signal(signum, frame):
        if stopping:
            raise _Stop()
        stopping.append(signum)
        err.print("stopping: finishing the open windows and events (again to stop at once)", highlight=False)
        watcher.finish()

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    for sig in previous:
        signal.signal(sig, on_signal)
    try:
        with view.live() if view is not None else nullcontext():
            try:
                for item in items:
                    record = item.to_dict()
                    if writer is not None:
                        writer.write(record)
                    if to_stdout:
                        try:
                            sys.stdout.write(dumps(record) + "\n")
                            sys.stdout.flush()
                        except BrokenPipeError:  # the reader went away (| head): stop quietly
                            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                            to_stdout = False
                            break
                    if view is not None:
                        view.add(item)
                    if visualize is not None:
                        rec = recorders.get(item.stream)
                        if rec is None:
                            rec = recorders[item.stream] = TimelineRecorder(
                                item.stream, clf.config.labels, options.rules().enter
                            )
                        rec.add(item)
                    if isinstance(item, Event):
                        events.append(item)
                    if windows is not None and isinstance(item, WindowResult):
                        windows.append(item)
                    if isinstance(item, StreamEnd) and item.error:
                        failed += 1
                        if view is None:
                            print_error(item.error)
                        else:
                            view.errors.append(item.error)
            except (KeyboardInterrupt, _Stop):
                err.print("stopped", highlight=False)
                stopping[:1] = stopping[:1] or [signal.SIGINT]
            finally:
                items.close()
        if view is not None:
            for e in view.errors:
                print_error(str(e))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if visualize is not None:
        used: set[Path] = set()
        visualize.mkdir(parents=True, exist_ok=True)
        for name, rec in recorders.items():
            path = write_timeline(rec, _png_path(visualize, name, used))
            err.print(f"timeline: {path}", highlight=False)
    if not to_stdout and sys.stdout.isatty():
        _print_events(events)
    return failed, (stopping[0] if stopping else 0)


def _print_events(events) -> None:
    from rich.console import Console
    from rich.table import Table

    if not events:
        Console().print("no events")
        return
    table = Table()
    for col in ("stream", "label", "score", "start", "end", "frames [start, end)"):
        table.add_column(col, overflow="fold")

    def t(v: float | None) -> str:
        return "" if v is None else f"{v:.2f}s"

    for e in events:
        table.add_row(
            e.stream, e.label, f"{e.score:.2f}", t(e.start_s), t(e.end_s), f"[{e.start_frame}, {e.end_frame})"
        )
    Console().print(table)


class LiveView:
    """Per stream: state, frames, the current window's label and the last events (rich, on stderr)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}
        self.errors: list[str] = []
        self._live = None

    def live(self):
        from rich.live import Live

        self._live = Live(self._table(), console=err, refresh_per_second=4, transient=False)
        return self._live

    def add(self, item) -> None:
        from ..records import Event, Gap, StreamEnd, WindowResult

        row = self.rows.setdefault(
            item.stream, {"state": "watching", "label": "", "frames": 0, "events": [], "t": time.time()}
        )
        if isinstance(item, WindowResult):
            row["label"] = f"{item.label} {item.score:.2f}"
            row["frames"] = item.end_frame
            row["latency"] = item.latency_s
        elif isinstance(item, Event):
            when = "" if item.start_s is None else f" {item.start_s:.1f}-{item.end_s:.1f}s"
            row["events"] = (row["events"] + [f"{item.label}{when}"])[-3:]
        elif isinstance(item, Gap):
            row["state"] = f"reconnected ({item.attempts} tries)"
        elif isinstance(item, StreamEnd):
            row["state"] = "failed" if item.error else "ended"
            row["frames"] = item.frames
            row["dropped"] = item.dropped_frames
        if self._live is not None:
            self._live.update(self._table())

    def _table(self):
        from rich.table import Table

        table = Table(title="fvdeploy watch", title_justify="left")
        for col in ("stream", "state", "frames", "now", "latency", "last events"):
            table.add_column(col, overflow="fold")
        for name, r in self.rows.items():
            latency = f"{r['latency']:.2f}s" if "latency" in r else ""
            table.add_row(name, r["state"], str(r["frames"]), r["label"], latency, ", ".join(r["events"]))
        return table
