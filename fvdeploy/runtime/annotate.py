"""An annotated copy of a video (like mmaction2's long-video demo): every frame with the label and
score of the span it belongs to (a cluster or TSM segment of ``classify``, a window of ``watch``)
burned in, plus a timeline strip along the bottom with a cursor at the frame.

A second decoding pass after classification, streamed chunk by chunk into the encoder
(``fvdeploy.io.encode``: H.264 in MP4 with the index at the front, or VP9 in WebM, which browsers
play): memory is one decode chunk plus the strip, whatever the length. The output has the input's
frame size (rounded to even sides, as 4:2:0 video needs), rate and frame count; it is written to a
temporary file beside the target and renamed at the end (mode 0666 less the umask), so an interrupt
leaves nothing half-written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..drawing import palette
from ..errors import FvdeployError
from ..io.encode import VideoEncoder, even_size
from .names import ANNOTATE_EXTENSIONS


@dataclass(frozen=True)
class Span:
    """Frames ``[start_frame, end_frame)`` (end exclusive, as in the JSON) labelled ``label``."""

    start_frame: int
    end_frame: int
    label: str
    score: float


def pieces(spans: Iterable[Span]) -> list[Span]:
    """Non-overlapping pieces in frame order: where spans overlap (watch windows with a stride
    shorter than the window) the later-starting span takes over from its start."""
    ordered = sorted(spans, key=lambda s: (s.start_frame, s.end_frame))
    out: list[Span] = []
    for i, s in enumerate(ordered):
        end = s.end_frame if i + 1 == len(ordered) else min(s.end_frame, max(s.start_frame, ordered[i + 1].start_frame))
        if end > s.start_frame:
            out.append(Span(s.start_frame, end, s.label, s.score))
    return out


def decode_chunks(path: str | Path, chunk: int = 32) -> Iterator[np.ndarray]:
    """BGR ``uint8 [k, H, W, 3]`` chunks of ``path`` in display order, decoded by the same frame
    source (and so the same damage recovery) as the classification, so the frame counts agree."""
    from ..io.sources import FrameBatch, open_source

    for batch in open_source(str(path)).batches(chunk):
        if isinstance(batch, FrameBatch):
            yield batch.frames


def _strip(
    pcs: list[Span], total: int, width: int, height: int, colours: dict[str, tuple[int, int, int]]
) -> np.ndarray:
    strip = np.full((height, width, 3), 40, np.uint8)
    for p in pcs:
        a = int(p.start_frame * width / total)
        b = max(a + 1, int(p.end_frame * width / total))
        strip[:, a:b] = colours[p.label]
    return strip


def annotate_video(
    source: str | Path,
    spans: Iterable[Span],
    out: str | Path,
    *,
    fps: float | None = None,
    title: str = "",
    progress: Callable[[int, int], None] | None = None,
    total_frames: int | None = None,
) -> Path:
    """Write ``out``: ``source`` with each frame's span label and score and a timeline strip.

    ``spans`` cover frames (end exclusive); frames no span covers show no label. ``fps``: the
    output rate (default: the source's, else 25). ``progress(done, total)`` after each chunk.
    Returns ``out``. Raises ``FvdeployError`` when the encoder cannot write ``out`` (unknown
    extension: use .mp4 or .webm; PyAV missing) and ``VideoError`` when ``source`` cannot be decoded.
    """
    out = Path(out)
    if out.suffix.lower() not in ANNOTATE_EXTENSIONS:
        raise FvdeployError(
            f"{out}: annotated videos are written as {' or '.join(ANNOTATE_EXTENSIONS)} (browser-playable), "
            f"not {out.suffix or 'no extension'!r}"
        )
    pcs = pieces(spans)
    total = total_frames or (pcs[-1].end_frame if pcs else 1)
    labels = list(dict.fromkeys(p.label for p in pcs))
    colours = dict(zip(labels, palette(max(1, len(labels)))))
    writer: VideoEncoder | None = None
    done = 0
    try:
        chunks = decode_chunks(source)
        piece = 0
        strip = None
        for chunk in chunks:
            h, w = chunk.shape[1:3]
            if writer is None:
                if fps is None or not fps > 0:
                    fps = _source_fps(source) or 25.0
                writer = VideoEncoder(out, *even_size(w, h), float(fps))
                strip_h = max(6, h // 24)
                strip = _strip(pcs, max(total, 1), w, strip_h, colours)
                scale = max(0.35, min(1.2, w / 900))
                thick = max(1, int(round(scale * 2)))
            assert strip is not None  # set with the writer, on the first chunk
            for frame in chunk:
                while piece < len(pcs) and pcs[piece].end_frame <= done:
                    piece += 1
                img = np.ascontiguousarray(frame)
                img[h - strip.shape[0] :] = strip
                x = min(w - 1, int(done * w / max(total, 1)))
                img[h - strip.shape[0] :, max(0, x - 1) : x + 1] = 255
                if piece < len(pcs) and pcs[piece].start_frame <= done:
                    p = pcs[piece]
                    _label(img, f"{p.label} {p.score:.2f}", colours[p.label], scale, thick)
                if title and w >= 320:
                    _label(img, title, (200, 200, 200), scale * 0.7, max(1, thick - 1), row=2)
                writer.write(img)
                done += 1
            if progress is not None:
                progress(done, total)
        if writer is None:
            raise FvdeployError(f"{source}: no frames to annotate")
        done_writer, writer = writer, None
        done_writer.close()
    finally:
        if writer is not None:
            writer.abort()
    return out


def _label(img: np.ndarray, text: str, colour: tuple[int, int, int], scale: float, thick: int, row: int = 1) -> None:
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(3, th // 3)
    y = row * (th + base + 2 * pad)
    cv2.rectangle(img, (0, y - th - base - 2 * pad), (tw + 2 * pad + 8, y), (0, 0, 0), -1)
    cv2.rectangle(img, (0, y - th - base - 2 * pad), (5, y), colour, -1)
    cv2.putText(
        img, text, (8 + pad, y - base - pad), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA
    )


def _source_fps(source: str | Path) -> float | None:
    cap = cv2.VideoCapture(str(source))
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    return float(fps) if fps and np.isfinite(fps) and fps > 0 else None
