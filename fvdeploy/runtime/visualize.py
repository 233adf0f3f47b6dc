"""A timeline picture per video (like the paper's Fig. 7/8): the segments (clusters, or TSM
segments) on a seconds axis coloured by label, with a thumbnail per segment, its label and score,
and a legend. Drawn with OpenCV: no plotting dependency."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..drawing import nice_step, palette, write_png
from ..records import VideoResult

WIDTH = 1280


def _text(
    img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45, color=(30, 30, 30), thick: int = 1
) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def _span(s, seconds: bool) -> tuple[float, float]:
    return (float(s.start_s), float(s.end_s)) if seconds else (float(s.start_frame), float(s.end_frame))


def render_timeline(result: VideoResult, thumbnails=None, labels: list[str] | None = None) -> np.ndarray:
    """The timeline of one result as a BGR uint8 image, ``WIDTH`` pixels wide: the segments on an
    axis of presentation seconds (frames when the result has no seconds, e.g. an array without
    fps), coloured by label, with a thumbnail, label, score and time span per segment, and a legend
    of the labels present with their share of the video. ``labels``: the model's labels, so a label
    has the same colour in every picture of a run (and in ``watch``'s); default: the labels in
    order of appearance."""
    segs = result.segments
    seconds = bool(segs) and all(s.start_s is not None and s.end_s is not None for s in segs)
    present = list(dict.fromkeys(s.label for s in segs))
    names = list(labels) if labels is not None and set(present) <= set(labels) else present
    cols = dict(zip(names, palette(max(1, len(names)))))
    share: dict[str, float] = {}
    for s in segs:
        a, b = _span(s, seconds)
        share[s.label] = share.get(s.label, 0.0) + max(0.0, b - a)
    legend = sorted(present, key=lambda name: -share[name])

    n = max(1, len(segs))
    margin, left, bar_top, bar_h = 20, 84, 60, 28
    x0, x1 = left, WIDTH - margin
    slot_w = (WIDTH - 2 * margin) // n
    thumb_h = 72 if thumbnails is not None else 0
    axis_y = bar_top + bar_h
    row = axis_y + 44
    legend_cols = 5
    legend_y = row + thumb_h + 58
    height = legend_y + 20 * ((len(legend) + legend_cols - 1) // legend_cols) + 8
    img = np.full((height, WIDTH, 3), 250, np.uint8)
    title = Path(result.path).name if result.path else "video"
    _text(img, f"{title}: {result.label} ({result.score:.2f})", (margin, 24), 0.6, thick=2)
    secs = f", {result.duration_s:.2f} s" if result.duration_s else ""
    fps = f" at {result.fps:g} fps" if result.fps else ""
    _text(
        img,
        f"{result.num_frames} frames{fps}{secs}, {len(segs)} segments ({result.run.get('mode', '')}), "
        f"axis in {'presentation seconds' if seconds else 'frames (no timestamps)'}",
        (margin, 44),
    )

    spans = [_span(s, seconds) for s in segs]
    t0 = min((a for a, _ in spans), default=0.0)
    t1 = max((b for _, b in spans), default=1.0)
    if t1 <= t0:
        t1 = t0 + 1.0

    def x(t: float) -> int:
        return int(round(x0 + (t - t0) / (t1 - t0) * (x1 - x0)))

    _text(img, "segments", (margin, bar_top + 19), 0.4)
    for s, (a, b) in zip(segs, spans):
        cv2.rectangle(img, (x(a), bar_top), (max(x(a), x(b) - 1), bar_top + bar_h), cols[s.label], -1)
    for a, _ in spans[1:]:  # every boundary, also between neighbours with the same label
        cv2.line(img, (x(a), bar_top), (x(a), bar_top + bar_h), (250, 250, 250), 1)
    cv2.rectangle(img, (x0, bar_top), (x1, bar_top + bar_h), (80, 80, 80), 1)
    # the axis: ticks at round steps, about ten of them
    step = nice_step((t1 - t0) / 10)
    if not seconds:
        step = max(1.0, step)
    _text(img, "time (s)" if seconds else "frames", (margin, axis_y + 18), 0.4)
    t = float(np.ceil(t0 / step) * step)
    while t <= t1 + 1e-9:
        cv2.line(img, (x(t), axis_y), (x(t), axis_y + 5), (80, 80, 80), 1)
        tick = f"{t:.10g}"
        _text(img, tick, (min(max(x(t) - 4 * len(tick), x0 - 4), x1 - 8 * len(tick)), axis_y + 18), 0.38)
        t += step

    fmt = "{:.2f}" if seconds else "{:.0f}"
    for i, (s, (a, b)) in enumerate(zip(segs, spans)):
        cx = margin + i * slot_w + slot_w // 2
        col = cols[s.label]
        cv2.line(img, (x((a + b) / 2), bar_top + bar_h), (cx, row - 4), col, 1, cv2.LINE_AA)
        if thumbnails is not None:
            thumb = thumbnails.nearest((s.start_frame + s.end_frame) // 2)
            if thumb is not None:
                w = min(slot_w - 6, int(thumb.shape[1] * thumb_h / thumb.shape[0]))
                tile = cv2.resize(thumb, (max(1, w), thumb_h), interpolation=cv2.INTER_AREA)
                img[row : row + thumb_h, cx - w // 2 : cx - w // 2 + w] = tile
                cv2.rectangle(img, (cx - w // 2 - 1, row - 1), (cx - w // 2 + w, row + thumb_h), col, 2)
        label = s.label if len(s.label) * 7 < slot_w else s.label[: max(1, slot_w // 7 - 1)] + "."
        _text(img, label, (cx - min(slot_w, len(label) * 7) // 2, row + thumb_h + 16), 0.4)
        when = f"{s.score:.2f}  {fmt.format(a)}-{fmt.format(b)}{' s' if seconds else ''}"
        if len(when) * 6 > slot_w:
            when = f"{s.score:.2f}"
        _text(img, when, (cx - min(slot_w, len(when) * 6) // 2, row + thumb_h + 32), 0.35)

    total = sum(share.values()) or 1.0
    for i, name in enumerate(legend):
        lx, ly = margin + (i % legend_cols) * ((WIDTH - 2 * margin) // legend_cols), legend_y + 20 * (i // legend_cols)
        cv2.rectangle(img, (lx, ly - 10), (lx + 14, ly + 2), cols[name], -1)
        _text(img, f"{name[:30]}  {share[name] / total:.0%}", (lx + 20, ly), 0.4)
    return img


def plot_timeline(result: VideoResult, thumbnails, path: str | Path, labels: list[str] | None = None) -> Path:
    """Write the timeline PNG (``render_timeline``) atomically (temp file + rename), mode 0666 less
    the umask. Raises ``FvdeployError`` when the file cannot be written."""
    return write_png(render_timeline(result, thumbnails, labels), path)
