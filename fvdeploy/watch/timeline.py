"""A timeline picture per watched source: each window's top label over the share of time it stands
for (pale below the threshold), its score as a curve, the events as coloured bars with their
labels, and gaps (a dropped stream) in grey. Drawn with OpenCV, like ``visualize.py``.

The recorder keeps a bounded number of windows for an endless stream: past the limit, every other
one is dropped (the picture loses detail, not its extent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..drawing import nice_step, palette, write_png
from ..records import Event, Gap, StreamEnd, WindowResult

WIDTH = 1280
MAX_WINDOWS = 20000


@dataclass
class TimelineRecorder:
    """Collects what one stream's timeline needs, in bounded memory."""

    stream: str
    labels: list[str]
    threshold: float
    windows: list[tuple[float, float, int, float]] = field(default_factory=list)  # start, end, label, score
    events: list[tuple[float, float, int, float]] = field(default_factory=list)
    gaps: list[tuple[float, float]] = field(default_factory=list)
    unit: str = "s"
    end: StreamEnd | None = None
    truth: list[tuple[float, float, int]] = field(default_factory=list)  # known actions, for docs and tests
    thin: int = 1
    _seen: int = 0

    def add(self, item) -> None:
        if isinstance(item, WindowResult):
            self._seen += 1
            if self._seen % self.thin:
                return
            start, end = self._span(item.start_s, item.end_s, item.start_frame, item.end_frame)
            self.windows.append((start, end, self.labels.index(item.label), item.score))
            if len(self.windows) > MAX_WINDOWS:
                self.windows, self.thin = self.windows[::2], self.thin * 2
        elif isinstance(item, Event):
            start, end = self._span(item.start_s, item.end_s, item.start_frame, item.end_frame)
            self.events.append((start, end, self.labels.index(item.label), item.score))
            if len(self.events) > MAX_WINDOWS:
                self.events = self.events[::2]
        elif isinstance(item, Gap) and item.start_s is not None and item.end_s is not None:
            self.gaps.append((item.start_s, item.end_s))
        elif isinstance(item, StreamEnd):
            self.end = item

    def _span(self, start_s, end_s, start_frame, end_frame) -> tuple[float, float]:
        if start_s is None or end_s is None:
            self.unit = "frames"
            return float(start_frame), float(end_frame)
        return float(start_s), float(end_s)


def _text(img, text, org, scale=0.45, color=(30, 30, 30), thick=1) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def _shares(windows: list[tuple[float, float, int, float]]) -> list[tuple[float, float]]:
    """Each window's share: from the midpoint with the previous centre to the midpoint with the next,
    cut to the window (as events are placed, see watch_events.py)."""
    centres = [(s + e) / 2 for s, e, _, _ in windows]
    out = []
    for i, (s, e, _, _) in enumerate(windows):
        lo = s if i == 0 else min(max((centres[i - 1] + centres[i]) / 2, s), e)
        hi = e if i == len(windows) - 1 else min(max((centres[i] + centres[i + 1]) / 2, s), e)
        out.append((lo, hi))
    return out


def render(rec: TimelineRecorder) -> np.ndarray:
    margin, top = 24, 60
    win_y, win_h = top + 22, 34
    ev_y, ev_h = win_y + win_h + 40, 30
    truth_y = ev_y + ev_h + 14
    if rec.truth:
        ev_h2 = 22
        legend_extra = ev_h2 + 14
    else:
        ev_h2 = legend_extra = 0
    legend_y = ev_y + ev_h + 58 + legend_extra
    height = legend_y + 20 * ((len(rec.labels) + 5) // 6) + 16
    img = np.full((height, WIDTH, 3), 250, np.uint8)
    cols = palette(len(rec.labels))
    spans = [(s, e) for s, e, _, _ in rec.windows + rec.events] + rec.gaps + [(s, e) for s, e, _ in rec.truth]
    t0 = min((s for s, _ in spans), default=0.0)
    t1 = max((e for _, e in spans), default=1.0)
    if t1 <= t0:
        t1 = t0 + 1.0
    x0, x1 = margin + 60, WIDTH - margin

    def x(t: float) -> int:
        return int(round(x0 + (t - t0) / (t1 - t0) * (x1 - x0)))

    end = rec.end
    n_windows, n_events = len(rec.windows) * rec.thin, len(rec.events)
    title = f"{rec.stream}: {n_windows} window{'s' * (n_windows != 1)}, {n_events} event{'s' * (n_events != 1)}"
    if end is not None and end.window_frames:
        title += f" (window {end.window_frames} frames, stride {end.stride_frames}, {end.fps or '?'} fps, time: {end.time_basis})"
    _text(img, title, (margin, 24), 0.55, thick=2)
    if end is not None and end.error:
        _text(img, f"ended with an error: {end.error}"[:150], (margin, 44), 0.4, (0, 0, 180))
    _text(img, "windows", (margin, win_y + 22), 0.4)
    _text(img, "events", (margin, ev_y + 20), 0.4)
    for (lo, hi), (_, _, label, score) in zip(_shares(rec.windows), rec.windows):
        c = np.array(cols[label], np.float32)
        if score < rec.threshold:  # pale: not confident enough to count towards an event
            c = 0.35 * c + 0.65 * 250
        cv2.rectangle(img, (x(lo), win_y), (max(x(lo), x(hi) - 1), win_y + win_h), tuple(int(v) for v in c), -1)
    # the score of the top label, and the threshold
    thr_y = int(win_y + win_h - rec.threshold * win_h)
    for px in range(x0, x1, 8):
        cv2.line(img, (px, thr_y), (min(px + 4, x1), thr_y), (90, 90, 90), 1)
    pts = [
        (x((lo + hi) / 2), int(win_y + win_h - w[3] * win_h)) for (lo, hi), w in zip(_shares(rec.windows), rec.windows)
    ]
    if len(pts) > 1:
        cv2.polylines(img, [np.array(pts, np.int32)], False, (40, 40, 40), 1, cv2.LINE_AA)
    cv2.rectangle(img, (x0, win_y), (x1, win_y + win_h), (120, 120, 120), 1)
    for s, e, label, _score in rec.events:
        cv2.rectangle(img, (x(s), ev_y), (max(x(s), x(e) - 1), ev_y + ev_h), cols[label], -1)
        name = rec.labels[label]
        if (x(e) - x(s)) > 7 * len(name):
            _text(img, name, (x(s) + 3, ev_y + 20), 0.4, (20, 20, 20))
    for s, e in rec.gaps:
        cv2.rectangle(img, (x(s), win_y), (max(x(s) + 1, x(e)), ev_y + ev_h), (160, 160, 160), -1)
        _text(img, "gap", (x(s) + 2, ev_y + ev_h + 14), 0.35, (90, 90, 90))
    cv2.rectangle(img, (x0, ev_y), (x1, ev_y + ev_h), (120, 120, 120), 1)
    if rec.truth:
        _text(img, "truth", (margin, truth_y + 16), 0.4, (90, 90, 90))
        for s, e, label in rec.truth:
            cv2.rectangle(img, (x(s), truth_y), (max(x(s), x(e) - 1), truth_y + ev_h2), cols[label], 2)
    # axis
    axis_y = ev_y + ev_h + 28 + legend_extra
    cv2.line(img, (x0, axis_y - 10), (x1, axis_y - 10), (120, 120, 120), 1)
    step = nice_step((t1 - t0) / 10)
    _text(img, "time (s)" if rec.unit == "s" else "frames", (margin, axis_y + 6), 0.4)
    t = np.ceil(t0 / step) * step
    while t <= t1 + 1e-9:
        cv2.line(img, (x(t), axis_y - 14), (x(t), axis_y - 6), (120, 120, 120), 1)
        tick = f"{t:.10g}"
        _text(img, tick, (x(t) - 4 * len(tick), axis_y + 6), 0.35)
        t += step
    for i, name in enumerate(rec.labels):
        lx, ly = margin + (i % 6) * 205, legend_y + 20 * (i // 6)
        cv2.rectangle(img, (lx, ly - 10), (lx + 14, ly + 2), cols[i], -1)
        _text(img, name[:28], (lx + 20, ly), 0.4)
    return img


def write_timeline(rec: TimelineRecorder, path: str | Path) -> Path:
    """Write the PNG atomically (temp file + rename)."""
    return write_png(render(rec), path)
