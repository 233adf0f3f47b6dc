"""``--annotate OUT.mp4`` of ``classify`` and ``watch``: the checks before the run and the second
pass after it (``fvdeploy.runtime.annotate``)."""

from __future__ import annotations

from pathlib import Path

from .app import progress_bar, usage_error


def check_target(path: Path, force: bool) -> None:
    """Before any work: an existing file is refused unless --force; the extension must be one the
    writer knows."""
    from ..runtime.names import ANNOTATE_EXTENSIONS

    if path.suffix.lower() not in ANNOTATE_EXTENSIONS:
        raise usage_error(
            f"--annotate {path}: write {' or '.join(ANNOTATE_EXTENSIONS)} (H.264 in MP4 or VP9 in WebM: browsers play them)"
        )
    if path.exists() and not force:
        raise usage_error(f"{path} exists (use --force to overwrite it)")
    if path.is_dir():
        raise usage_error(f"--annotate {path} is a folder; name a video file")
    if path.exists() and not path.is_file():  # the finished video replaces it: never a device or pipe
        raise usage_error(f"--annotate {path} is not a regular file (a device, pipe or socket); name a video file")


def _write(source: str, spans, out: Path, fps, title: str, total: int, show_progress: bool) -> Path:
    from ..runtime.annotate import annotate_video

    with progress_bar(show_progress) as bar:
        task = bar.add_task("annotating", total=total or None, unit="frames") if bar else None
        return annotate_video(
            source,
            spans,
            out,
            fps=fps,
            title=title,
            total_frames=total,
            progress=(lambda done, n: bar.update(task, completed=done)) if bar else None,
        )


def annotate_result(result, out: Path, *, show_progress: bool) -> Path:
    """``classify``: the result's segments (clusters or TSM segments)."""
    from ..runtime.annotate import Span

    spans = [Span(s.start_frame, s.end_frame, s.label, s.score) for s in result.segments]
    return _write(
        result.path,
        spans,
        out,
        result.fps,
        f"{Path(result.path).name}: {result.label} {result.score:.2f}",
        result.num_frames,
        show_progress,
    )


def annotate_windows(source: str, windows, out: Path, *, fps, show_progress: bool) -> Path:
    """``watch FILE``: its windows (a later window takes over where windows overlap)."""
    from ..runtime.annotate import Span

    spans = [Span(w.start_frame, w.end_frame, w.label, w.score) for w in windows]
    total = max((w.end_frame for w in windows), default=0)
    return _write(source, spans, out, fps, Path(source).name, total, show_progress)
