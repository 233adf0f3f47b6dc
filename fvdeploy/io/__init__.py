"""Every way frames come in: the frame source (files, URLs, cameras, arrays, iterators), the OpenCV
and NVDEC decoders behind it, and preprocessing."""

from .sources import (
    DECODERS,
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
from .transforms import center_crop, normalize, preprocess, resize, resized_size
from .video import VIDEO_EXTENSIONS, FolderScan, VideoInfo, find_videos, frame_fingerprint, open_capture, probe, scan_folder

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
]
