"""The one GPU-utilisation sampler of the benchmarks, and a device sync for timing."""

from __future__ import annotations

import subprocess
import threading


def sync(device) -> None:
    """Wait for ``device``'s queued work (CUDA); nothing on the CPU."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


class GpuSampler:
    """Utilisation of one GPU in percent (0-100, the unit NVML and nvidia-smi report), sampled
    every ``interval_s`` in a thread while the ``with`` block runs. NVML through torch first, else
    nvidia-smi; on a CPU device, or when neither answers, there are no samples and ``mean`` is None.

    ``device``: a ``torch.device`` (or anything with ``.type`` and ``.index``).
    """

    def __init__(self, device, interval_s: float = 0.5) -> None:
        self.index = device.index or 0
        self.interval_s = interval_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True) if device.type == "cuda" else None

    def _read(self) -> float | None:
        try:
            import torch

            return float(torch.cuda.utilization(self.index))
        except Exception:  # no pynvml: ask nvidia-smi
            try:
                r = subprocess.run(
                    [
                        "nvidia-smi",
                        "-i",
                        str(self.index),
                        "--query-gpu=utilization.gpu",
                        "--format=csv,noheader,nounits",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=5,
                )
                return float(r.stdout.strip().splitlines()[0])
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            value = self._read()
            if value is None:
                return
            self.samples.append(value)

    def __enter__(self) -> GpuSampler:
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def mean(self) -> float | None:
        """Mean utilisation in percent, one decimal; None without samples."""
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None
