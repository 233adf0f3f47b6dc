"""Moving decoded frames to the compute device.

On CUDA, frames go up as uint8 (4x less traffic than float) from page-locked host buffers that are
allocated once and reused, copied with ``non_blocking`` on a side stream so the copy of chunk k+1
overlaps the compute of chunk k. On the CPU, frames are used where they are.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class HostStager:
    def __init__(self, device: torch.device, slots: int = 3) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.slots = slots
        self._buffers: list[Tensor | None] = [None] * slots
        self._events: list[torch.cuda.Event | None] = [None] * slots
        self._next = 0
        self._stream = torch.cuda.Stream(device) if self.cuda else None

    def upload(self, frames) -> Tensor:
        """``uint8 [k, H, W, 3]`` (numpy, or a tensor already on the device) -> tensor on the device,
        ready for use on the current stream."""
        if isinstance(frames, Tensor):
            return frames.to(self.device)
        array = np.ascontiguousarray(frames)
        if not self.cuda:
            return torch.from_numpy(array)
        i = self._next
        self._next = (i + 1) % self.slots
        nbytes = array.nbytes
        previous = self._events[i]
        if previous is not None:
            previous.synchronize()  # the previous copy out of this buffer has finished
        buffer = self._buffers[i]
        if buffer is None or buffer.numel() < nbytes:
            # grown only when frames get bigger: pinned allocation is slow, so never per chunk
            buffer = self._buffers[i] = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
        host = buffer[:nbytes]
        host.numpy()[:] = array.reshape(-1)
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._stream):
            dev = host.to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self._stream)
            self._events[i] = event
        compute.wait_stream(self._stream)  # type: ignore[arg-type]  # set when cuda; compute waits for this copy only
        dev.record_stream(compute)  # allocated on the side stream, used on the compute stream
        return dev.view(array.shape)
