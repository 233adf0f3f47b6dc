"""Timeline PNGs (``--visualize``): written whole with the usual permissions, the expected size, a
presentation-seconds axis (frames when a result has no seconds) and one colour per label."""

from __future__ import annotations

import os
import stat

import cv2
import numpy as np
import pytest

from fvdeploy.records import Segment, VideoResult
from fvdeploy.runtime.visualize import WIDTH, palette, plot_timeline
from fvdeploy.watch.timeline import TimelineRecorder, write_timeline

LABELS = ["walk", "run", "jump", "sit", "wave", "clap", "kick"]


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _result(seconds: bool) -> VideoResult:
    """100 frames, variable frame rate: the first 50 frames span 1 s, the last 50 span 9 s. Two
    clusters with the same label, so colour by cluster and colour by label differ."""
    bounds = [(0, 30, 0.0, 0.6, "run"), (30, 50, 0.6, 1.0, "run"), (50, 100, 1.0, 10.0, "jump")]
    segs = [Segment(a, b, s if seconds else None, e if seconds else None, label, 0.9) for a, b, s, e, label in bounds]
    return VideoResult(
        path="v.mp4",
        label="jump",
        score=0.8,
        num_frames=100,
        fps=None,
        duration_s=10.0 if seconds else None,
        segments=segs,
        run={"mode": "full"},
    )


def _bar_colour(img: np.ndarray, fraction: float) -> tuple[int, ...]:
    # the segments bar spans x 84 .. WIDTH - 20, rows 60 .. 88 (see render_timeline)
    x = int(round(84 + fraction * (WIDTH - 20 - 84)))
    return tuple(int(v) for v in img[74, x])


@pytest.mark.parametrize("seconds", [True, False])
def test_classify_timeline_png_mode_size_axis_and_label_colours(tmp_path, umask_022, seconds):
    path = plot_timeline(_result(seconds), None, tmp_path / "t.png", LABELS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    img = cv2.imread(str(path))
    # title rows, bar, axis, label rows (no thumbnails), one legend row of the two labels present
    assert img.shape == (60 + 28 + 44 + 0 + 58 + 20 + 8, WIDTH, 3)
    colour = {name: tuple(c) for name, c in zip(LABELS, palette(len(LABELS)))}  # the model's label order
    # at 25% of the axis: seconds -> t = 2.5 s, inside the 9-second "jump" cluster; frames -> frame 25, "run"
    assert _bar_colour(img, 0.25) == colour["jump" if seconds else "run"]
    assert _bar_colour(img, 0.03) == colour["run"] and _bar_colour(img, 0.9) == colour["jump"]
    if not seconds:  # both "run" clusters share a colour (by label, not by cluster index)
        assert _bar_colour(img, 0.15) == _bar_colour(img, 0.45) == colour["run"]


def test_legend_rows_grow_with_the_labels_present(tmp_path, umask_022):
    segs = [Segment(i * 10, i * 10 + 10, i / 2, i / 2 + 0.5, name, 0.5) for i, name in enumerate(LABELS)]
    result = VideoResult(
        path="v.mp4",
        label="walk",
        score=0.5,
        num_frames=70,
        fps=20.0,
        duration_s=3.5,
        segments=segs,
        run={"mode": "full"},
    )
    img = cv2.imread(str(plot_timeline(result, None, tmp_path / "t.png")))
    assert img.shape == (60 + 28 + 44 + 58 + 2 * 20 + 8, WIDTH, 3)  # 7 labels, 5 per legend row


def test_watch_timeline_png_mode_and_size(tmp_path, umask_022):
    rec = TimelineRecorder("cam", LABELS, threshold=0.5)
    rec.windows = [(0.0, 2.0, 1, 0.9), (1.0, 3.0, 2, 0.3)]
    rec.events = [(0.0, 2.0, 1, 0.9)]
    path = write_timeline(rec, tmp_path / "w.png")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    img = cv2.imread(str(path))
    assert img.shape[1] == WIDTH and img.shape[0] == 60 + 22 + 34 + 40 + 30 + 58 + 20 * 2 + 16
