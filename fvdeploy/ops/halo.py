"""Run a per-frame-window function over a long video in bounded memory.

Stem + ``layer1`` of a TSM network is not per-frame: each shifted block mixes a frame with its two
neighbours, so frame t's output depends on frames ``t-h .. t+h`` (``h`` = number of shifted blocks,
the *halo*). Computing a chunk with ``h`` extra frames of context on each side and keeping only the
middle gives exactly the whole-video result; the ends of the true video keep their zero padding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor


def stream_with_halo(
    fn: Callable[[Tensor], Tensor], chunks: Iterable[Tensor], halo: int, min_frames: int = 1
) -> Iterator[Tensor]:
    """Apply ``fn: [k, ...] -> [k, ...]`` (a window of consecutive frames) to a stream of chunks.

    Yields output chunks that, concatenated, equal ``fn`` on the whole video padded to
    ``min_frames`` by repeating its last frame. Each call of ``fn`` sees at most
    ``len(chunk) + 2 * halo`` frames (plus what arrived before ``min_frames`` were seen).
    """
    buf: Tensor | None = None  # frames not yet emitted, preceded by `left` frames of context
    left = 0
    seen = 0
    for chunk in chunks:
        if chunk.shape[0] == 0:
            continue
        buf = chunk if buf is None else torch.cat([buf, chunk])
        seen += chunk.shape[0]
        ready = buf.shape[0] - left - halo  # frames whose right context has arrived
        if seen < min_frames or ready <= 0:
            continue
        yield fn(buf)[left : left + ready]
        keep = min(halo, left + ready)
        buf = buf[left + ready - keep :]
        left = keep
    if buf is None:
        return
    if seen < min_frames:
        buf = torch.cat([buf, buf[-1:].expand(min_frames - seen, *buf.shape[1:])])
    if buf.shape[0] > left:
        yield fn(buf)[left:]


def rechunk(chunks: Iterable[Tensor], size: int) -> Iterator[Tensor]:
    """Regroup a stream of ``[k, ...]`` chunks into chunks of exactly ``size`` (the last may be shorter)."""
    pending: list[Tensor] = []
    count = 0
    for chunk in chunks:
        while chunk.shape[0]:
            take = min(size - count, chunk.shape[0])
            pending.append(chunk[:take])
            count += take
            chunk = chunk[take:]
            if count == size:
                yield pending[0] if len(pending) == 1 else torch.cat(pending)
                pending, count = [], 0
    if pending:
        yield torch.cat(pending)
