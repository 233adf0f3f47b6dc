"""Evidence clips (``watch --clips``): each event as a video a browser plays, cut from the frames
as decoded, in bounded memory. Here without a model (a scripted stream of windows, so the frames a
clip must hold are known exactly); the bundled model's clips are checked in test_watch_events.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from clips import mp4_boxes, probe_video

from fvdeploy.records import Event
from fvdeploy.watch.clips import StreamClips
from fvdeploy.watch.events import EventRules, EventTracker, WindowSpan

LABELS = ("a", "b", "c")
FPS = 10.0
H, W = 48, 64
BITS = 10


def coded_frame(i: int) -> np.ndarray:
    """A frame that shows its number: ten black/white bars (binary), robust to lossy coding."""
    img = np.full((H, W, 3), 60, np.uint8)
    for b in range(BITS):
        if (i >> b) & 1:
            img[:, b * 6 : b * 6 + 5] = 255
        else:
            img[:, b * 6 : b * 6 + 5] = 0
    return img


def read_codes(path) -> list[int]:
    import av

    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            g = f.to_ndarray(format="gray")
            out.append(sum(1 << b for b in range(BITS) if g[:, b * 6 + 1 : b * 6 + 4].mean() > 128))
    return out


def scripted(pos: int) -> tuple[float, ...]:
    """Each window's label by its centre: 'a' over [40, 120), a flicker of 'b' at [150, 158),
    'a' again over [200, 300) broken by one confused window, no action elsewhere."""
    if 40 <= pos < 120 or (200 <= pos < 300 and not 240 <= pos < 245):
        return (0.9, 0.05, 0.05)
    if 150 <= pos < 158:
        return (0.05, 0.9, 0.05)
    return (0.4, 0.25, 0.35)


def run_stream(folder, total=340, window=20, stride=5, batch=7, rules=None, segments=()):
    """Feed ``total`` frames in batches and the windows as they close (as the watcher does); a
    position in ``segments`` ends the segment there (a drop). Returns events, the clips object."""
    rules = rules or EventRules(0.8, 0.5, 1.0, 2.0)
    tracker = EventTracker("rtsp://cam/live", rules, "stream", lambda pos, end: (pos / FPS, pos), FPS, LABELS)
    clips = StreamClips(folder, "rtsp://cam/live", tracker, FPS, "bgr", "stream", max_kept=window + stride + batch + 21)
    events: list[Event] = []
    seg, k = 0, 0
    # batches as a reader delivers them: a drop ends a batch (its marker comes after its frames)
    cuts = sorted({*range(0, total, batch), *segments, total})
    for first, stop in zip(cuts, cuts[1:]):
        n = stop - first
        frames = np.stack([coded_frame(i) for i in range(first, first + n)])
        clips.feed(first, frames, np.arange(first, first + n), np.arange(first, first + n) / FPS)
        while seg + k * stride + window <= first + n:
            a = seg + k * stride
            p = scripted(a + window // 2)
            top = int(np.argmax(p))
            events += tracker.add(WindowSpan(a, a + window, LABELS[top], p[top], probs=p))
            clips.update()
            k += 1
        if stop in segments:
            events += tracker.close()
            clips.segment_end()
            seg, k = stop, 0
    events += tracker.close()
    clips.segment_end()
    return events, clips


def test_each_event_is_a_clip_of_exactly_its_frames(tmp_path):
    events, clips = run_stream(tmp_path)
    # the 'b' flicker (0.8 s < 2 s) is dropped; 'a' is joined across its one confused window
    assert [(e.label, e.start_frame, e.end_frame) for e in events] == [("a", 37, 117), ("a", 197, 297)]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [e.clip.replace(".mp4", x) for e in events for x in (".json", ".mp4")], names
    for e in events:
        path = tmp_path / e.clip
        assert read_codes(path) == list(range(e.start_frame, e.end_frame))
        info = probe_video(path)
        assert info["codec"] == "h264" and (info["width"], info["height"]) == (W, H)
        assert info["duration"] == pytest.approx(e.end_s - e.start_s, abs=1e-3)
        boxes = mp4_boxes(path)
        assert boxes.index("moov") < boxes.index("mdat"), boxes
        side = json.loads(path.with_suffix(".json").read_text())
        assert side["clip"] == e.clip and side["frames"] == e.end_frame - e.start_frame
        assert (side["label"], side["start_s"], side["end_s"], side["source"]) == (
            e.label,
            e.start_s,
            e.end_s,
            e.stream,
        )
    # bounded: what is kept undecided stays within the window, the stride, a batch and the merge gap
    assert clips.peak_kept <= 20 + 5 + 7 + 21 and clips.missed == 0


def test_a_clip_never_spans_a_drop_and_nothing_is_overwritten(tmp_path):
    (tmp_path / "cam_live_0001_a.mp4").write_bytes(b"mine")
    events, _ = run_stream(tmp_path, segments=(250,))
    assert [(e.label, e.start_frame, e.end_frame) for e in events] == [("a", 37, 117), ("a", 197, 237), ("a", 250, 297)]
    assert (tmp_path / "cam_live_0001_a.mp4").read_bytes() == b"mine"
    assert events[0].clip == "cam_live_0001_a-1.mp4"
    for e in events:
        assert read_codes(tmp_path / e.clip) == list(range(e.start_frame, e.end_frame))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_dropped_candidates_leave_no_file(tmp_path):
    events, _ = run_stream(tmp_path, rules=EventRules(0.8, 0.5, 0.0, 20.0))  # nothing lasts 20 s
    assert events == [] and list(tmp_path.iterdir()) == []
