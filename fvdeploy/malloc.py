"""Keep glibc's heap from growing with video length.

PyTorch on the CPU allocates and frees many multi-megabyte tensors per chunk. glibc serves large
blocks with mmap, but raises its mmap threshold each time such a block is freed, after which the
same sizes come from the heap, which fragments: peak RSS then grows with the number of chunks even
though the live tensors do not (measured: 243 -> 338 MiB from 3,000 to 10,000 frames at a 256 MiB
budget; flat at 190 MiB with a fixed threshold). Fixing the threshold (which also stops its
adjustment) keeps memory flat. Set FVDEPLOY_MALLOC_TUNING=0 to leave malloc alone.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_MMAP_THRESHOLD = -3
THRESHOLD_BYTES = 256 * 1024
_done = False


def bound_heap_growth() -> bool:
    """Fix glibc's mmap threshold once per process; False where that does not apply."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("FVDEPLOY_MALLOC_TUNING", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        _done = bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    return _done


def fixed_threshold() -> int:
    """The mmap threshold :func:`bound_heap_growth` fixed in this process (0: none, glibc adjusts
    its own). Blocks above it are fresh mappings, a page fault per 4 KiB, however often the same
    size comes back: code that frees and reallocates big buffers in a loop may want to know."""
    return THRESHOLD_BYTES if _done else 0
