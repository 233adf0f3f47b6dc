"""Decoding on the GPU with NVIDIA's PyNvVideoCodec (NVDEC), frames handed to torch without a host copy.

PyNvVideoCodec (pip ``pynvvideocodec``, the ``fvdeploy[nvdec]`` extra) bundles its own demuxer and
returns decoded surfaces through DLPack / ``__cuda_array_interface__``. We ask for the native NV12
surface and convert it to RGB on the GPU ourselves, with the BT.601 limited-range matrix that
FFmpeg's swscale (and so OpenCV) applies by default, so NVDEC and OpenCV frames agree to within
rounding and chroma upsampling.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator

import torch
from torch import Tensor

from ..errors import BackendError, VideoError
from .video import declared_fps

INSTALL_HINT = "pip install 'fvdeploy[nvdec]' (PyNvVideoCodec)"


def import_nvc():
    try:
        import PyNvVideoCodec as nvc  # noqa: N813
    except ImportError:
        raise BackendError(f"--decoder nvdec needs PyNvVideoCodec, which is not installed: {INSTALL_HINT}") from None
    except OSError as e:  # the bundled extension found no CUDA runtime/driver
        raise BackendError(f"--decoder nvdec: PyNvVideoCodec cannot load ({str(e).splitlines()[0]})") from None
    return nvc


def probe_nvdec() -> str | None:
    """None when NVDEC decoding can work here, else what is missing (one line)."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        ctypes.CDLL("libnvcuvid.so.1")
    except OSError:
        return (
            "the driver's NVDEC library libnvcuvid.so.1 is missing (install the NVIDIA driver's video/decode component)"
        )
    try:
        import_nvc()
    except BackendError as e:
        return str(e)
    return None


def nv12_to_rgb(nv12: Tensor, height: int, width: int) -> Tensor:
    """NV12 ``uint8 [..., H*3/2, W]`` (Y plane, then interleaved UV at half resolution) -> ``uint8
    [..., H, W, 3]`` RGB, BT.601 limited range (swscale's default), nearest-neighbour chroma
    upsampling. Takes a whole batch of surfaces: a dozen kernels per chunk rather than per frame."""
    lead = nv12.shape[:-2]
    y = nv12[..., :height, :].float()
    uv = nv12[..., height : height + height // 2, :].reshape(*lead, height // 2, width // 2, 2).float()
    uv = uv.repeat_interleave(2, -3).repeat_interleave(2, -2)[..., :height, :width, :]
    c = (y - 16.0) * 1.164383
    u, v = uv[..., 0] - 128.0, uv[..., 1] - 128.0
    r = c + 1.596027 * v
    g = c - 0.391762 * u - 0.812968 * v
    b = c + 2.017232 * u
    return torch.stack([r, g, b], -1).round_().clamp_(0, 255).to(torch.uint8)


class NvdecReader:
    """Decode a file on GPU ``gpu_id``; yields ``uint8 [k, H, W, 3]`` RGB CUDA tensors."""

    def __init__(self, path: str, gpu_id: int, batch: int = 16) -> None:
        nvc = import_nvc()
        self.nvc, self.path, self.gpu_id, self.batch = nvc, path, gpu_id, batch
        try:
            self.decoder = nvc.ThreadedDecoder(
                path,
                buffer_size=max(batch, 8),
                gpu_id=gpu_id,
                use_device_memory=True,
                output_color_type=nvc.OutputColorType.NATIVE,
            )
            meta = self.decoder.get_stream_metadata()
        except Exception as e:  # PyNvVideoCodec raises plain Exception/RuntimeError for unsupported input
            raise VideoError(
                f"{path}: NVDEC cannot decode this file ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
            ) from None
        self.width, self.height = int(meta.width), int(meta.height)
        self.fps = declared_fps(getattr(meta, "average_fps", 0) or 0)
        self.frame_count_hint = int(getattr(meta, "num_frames", 0) or 0)

    def _to_rgb(self, frames) -> Tensor:
        surfaces = [torch.from_dlpack(f) for f in frames]
        for surface in surfaces:
            if surface.dtype != torch.uint8 or surface.dim() != 2 or surface.shape[0] != self.height * 3 // 2:
                raise VideoError(
                    f"{self.path}: NVDEC returned a {tuple(surface.shape)} {surface.dtype} surface; only 8-bit "
                    "4:2:0 (NV12) video is supported with --decoder nvdec, use --decoder opencv"
                )
        # the copy into one batch also releases the decoder's surfaces before the next call reuses them
        return nv12_to_rgb(torch.stack(surfaces), self.height, self.width)

    def chunks(self) -> Iterator[Tensor]:
        with torch.cuda.device(self.gpu_id):
            while True:
                frames = self.decoder.get_batch_frames(self.batch)
                if len(frames) == 0:
                    return
                yield self._to_rgb(frames)

    def read_range(self, start: int, stop: int) -> Iterator[Tensor]:
        """Frames ``[start, stop)`` again (frame-accurate seek by index)."""
        nvc = self.nvc
        dec = nvc.SimpleDecoder(
            self.path, gpu_id=self.gpu_id, use_device_memory=True, output_color_type=nvc.OutputColorType.NATIVE
        )
        with torch.cuda.device(self.gpu_id):
            for s in range(start, stop, self.batch):
                frames = dec.get_batch_frames_by_index(list(range(s, min(stop, s + self.batch))))
                yield self._to_rgb(frames)
