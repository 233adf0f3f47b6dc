from .transforms import center_crop, normalize, preprocess, resize, resized_size
from .video import (
    VIDEO_EXTENSIONS,
    BackgroundReader,
    VideoDecodeReport,
    VideoInfo,
    find_videos,
    frame_fingerprint,
    iter_frame_chunks,
    open_capture,
    probe,
    read_video,
)

__all__ = [
    "VIDEO_EXTENSIONS",
    "BackgroundReader",
    "VideoDecodeReport",
    "VideoInfo",
    "center_crop",
    "find_videos",
    "frame_fingerprint",
    "iter_frame_chunks",
    "normalize",
    "open_capture",
    "preprocess",
    "probe",
    "read_video",
    "resize",
    "resized_size",
]
