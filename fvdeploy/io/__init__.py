"""Every way frames come in: the frame source (files, URLs, cameras, arrays, iterators), the OpenCV
(files, cameras), PyAV (network URLs) and NVDEC decoders behind it, and preprocessing.

Names import lazily (OpenCV and torch load with the first use); ``io.names`` is free of both."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    **{
        name: ".sources"
        for name in (
            "ArraySource",
            "Dropped",
            "FrameBatch",
            "FrameReader",
            "FrameSource",
            "IteratorSource",
            "NvdecSource",
            "OpenCVSource",
            "Resumed",
            "open_source",
            "read_video",
        )
    },
    **{
        name: ".transforms"
        for name in ("center_crop", "normalize", "preprocess", "resize", "resized_size", "shrink", "to_input")
    },
    **{
        name: ".video"
        for name in (
            "VIDEO_EXTENSIONS",
            "FolderScan",
            "VideoInfo",
            "find_videos",
            "frame_fingerprint",
            "open_capture",
            "probe",
            "scan_folder",
        )
    },
    "DECODERS": ".names",
    "PyAVSource": ".pyav",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .names import DECODERS
    from .pyav import PyAVSource
    from .sources import (
        ArraySource,
        Dropped,
        FrameBatch,
        FrameReader,
        FrameSource,
        IteratorSource,
        NvdecSource,
        OpenCVSource,
        Resumed,
        open_source,
        read_video,
    )
    from .transforms import center_crop, normalize, preprocess, resize, resized_size, shrink, to_input
    from .video import (
        VIDEO_EXTENSIONS,
        FolderScan,
        VideoInfo,
        find_videos,
        frame_fingerprint,
        open_capture,
        probe,
        scan_folder,
    )

__all__ = [
    "DECODERS",
    "VIDEO_EXTENSIONS",
    "ArraySource",
    "Dropped",
    "FolderScan",
    "FrameBatch",
    "FrameReader",
    "FrameSource",
    "IteratorSource",
    "NvdecSource",
    "OpenCVSource",
    "PyAVSource",
    "Resumed",
    "VideoInfo",
    "center_crop",
    "find_videos",
    "frame_fingerprint",
    "normalize",
    "open_capture",
    "open_source",
    "preprocess",
    "probe",
    "read_video",
    "resize",
    "resized_size",
    "scan_folder",
    "shrink",
    "to_input",
]
