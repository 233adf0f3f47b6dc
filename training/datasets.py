"""Video datasets for training and evaluation: where the videos are, how a sample is cut from one.

Sources (:func:`open_source`):

- **A folder per class**: ``root/<class>/<video file>`` (any of ``fvdeploy.io.VIDEO_EXTENSIONS``)
  or ``root/<class>/<folder of extracted frames>/``. Classes are the sorted folder names.
- **A list file**, one video per line, TSM / mmaction2 style (``#`` comments and blank lines skipped):

  ============================  =====================================================
  ``path label``                a video file, or a folder of extracted frames
  ``frames_dir num_frames label``  a folder of extracted frames; its first ``num_frames``
                                images in natural name order (``img_00001.jpg``, ...)
  ``path``                      label = the name of the file's parent folder (UCF101's
                                ``testlist0N.txt``); needs a class file
  ============================  =====================================================

  ``label`` is a class index or a class name. Paths are relative to ``--root`` (default: the list
  file's folder). A class file (``--classes``) holds one name per line (index = line number from
  0, names may contain spaces: Something-Something's ``category.txt``), or ``index name`` lines
  (UCF101's ``classInd.txt``, from 1): integer labels in the lists then count from that file's
  first index. Without a class file, names are taken from the videos' parent folders when each
  label has exactly one, else ``class_0``, ``class_1``, ...
- **A dataset folder** with ``train.txt`` (and ``val.txt`` or ``test.txt``, ``classes.txt``), as
  ``fvdeploy make-move4`` writes: ``--data DIR`` trains on ``train.txt`` and evaluates on the other.

How a sample is cut from a video (full mode, and TSM with ``segments=0``, "TSM-all"):

- evaluation: every frame, the whole video, exactly as the runtime classifies it;
- training: every frame, in batches with a fixed number F of frames per video (``frames``). A
  shorter video is padded by repeating its last frame and carries its true length, which the
  model uses so that padding changes neither its clusters nor its means. A longer video
  (T > F) is read as ``s = ceil(T / F)`` interleaved sub-videos (frames ``o, o+s, o+2s, ...``):
  each spans the whole video, so a video-level label stays true, and epoch e takes offset
  ``o = (e + index) mod s``, so s consecutive epochs use every frame exactly once.

TSM mode with K segments samples K frames: a random frame inside each of K equal segments while
training, the centre of each at evaluation (``fvdeploy.ops.sampling.tsm_indices``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from fvdeploy.config import InputSpec
from fvdeploy.errors import FvdeployError, VideoError
from fvdeploy.io.sources import read_video
from fvdeploy.io.transforms import preprocess
from fvdeploy.io.video import VIDEO_EXTENSIONS
from fvdeploy.ops.sampling import tsm_indices

from .augment import AugmentSpec, augment_frames, flip_allowed

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class DatasetError(FvdeployError):
    """A dataset folder, list file or class file is missing or malformed."""


@dataclass(frozen=True)
class VideoRecord:
    path: Path
    label: int
    num_frames: int | None = None  # the listed frame count of an extracted-frames folder


@dataclass
class VideoList:
    records: list[VideoRecord]
    classes: list[str]
    source: str  # what was read, for messages and the ``trained`` metadata

    def __len__(self) -> int:
        return len(self.records)


# -- class files and list files ------------------------------------------------------------------
def read_class_file(path: str | Path) -> tuple[list[str], int]:
    """Class names and the index of the first class (0, or e.g. 1 for UCF101's ``classInd.txt``)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: class file not found")
    rows = [line.strip() for line in path.read_text().splitlines()]
    rows = [r for r in rows if r and not r.startswith("#")]
    if not rows:
        raise DatasetError(f"{path}: class file is empty")
    split = [r.split(maxsplit=1) for r in rows]
    if all(len(s) == 2 and _is_int(s[0]) for s in split):
        indices = [int(s[0]) for s in split]
        base = min(indices)
        if sorted(indices) != list(range(base, base + len(indices))):
            raise DatasetError(f"{path}: class indices must be consecutive, got {indices[:5]}...")
        names = [name for _, name in sorted(((int(i), n.strip()) for i, n in split))]
    else:
        names, base = rows, 0
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DatasetError(f"{path}: class {dup!r} is listed twice")
    return names, base


def _is_int(token: str) -> bool:
    return re.fullmatch(r"-?\d+", token) is not None


def parse_list(
    path: str | Path, *, classes: list[str] | None = None, base: int = 0, root: str | Path | None = None
) -> VideoList:
    """Read a list file (see the module docstring). Every listed path must exist."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: list file not found")
    root = Path(root) if root is not None else path.parent
    name_to_index = {n: i for i, n in enumerate(classes)} if classes is not None else None
    records, names_seen = [], []
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{lineno}"
        tokens = line.split()
        num_frames = None
        if len(tokens) == 1:
            rel, label_token = tokens[0], Path(tokens[0]).parent.name
            if name_to_index is None:
                raise DatasetError(
                    f"{where}: a line without a label needs a class file (--classes) to read the folder name {label_token!r}"
                )
        elif len(tokens) >= 3 and _is_int(tokens[-2]) and (root / " ".join(tokens[:-2])).is_dir():
            rel, num_frames, label_token = " ".join(tokens[:-2]), int(tokens[-2]), tokens[-1]
            if num_frames < 1:
                raise DatasetError(f"{where}: frame count must be >= 1, got {num_frames}")
        else:
            rel, label_token = " ".join(tokens[:-1]), tokens[-1]
        video = root / rel
        if not video.exists():
            raise DatasetError(f"{where}: {video} not found")
        if _is_int(label_token):
            label = int(label_token) - base
            if label < 0 or (classes is not None and label >= len(classes)):
                raise DatasetError(
                    f"{where}: label {label_token} is outside the {len(classes) if classes else '?'} classes"
                    + (f" (numbered from {base})" if classes else "")
                )
        elif name_to_index is not None:
            if label_token not in name_to_index:
                raise DatasetError(f"{where}: unknown class {label_token!r}")
            label = name_to_index[label_token]
        else:
            if label_token not in names_seen:
                names_seen.append(label_token)
            label = -1 - names_seen.index(label_token)  # resolved below, once all names are known
        records.append(VideoRecord(video, label, num_frames))
    if not records:
        raise DatasetError(f"{path}: no videos listed")
    if classes is None:
        if names_seen and any(r.label >= 0 for r in records):
            raise DatasetError(f"{path}: mixes class names and class indices; give a class file (--classes)")
        if names_seen:
            classes = sorted(names_seen)
            records = [VideoRecord(r.path, classes.index(names_seen[-1 - r.label]), r.num_frames) for r in records]
        else:
            classes = _names_from_folders(records)
    return VideoList(records, classes, str(path))


def _names_from_folders(records: list[VideoRecord]) -> list[str]:
    """Class names for integer labels without a class file: parent folder names when consistent."""
    n = max(r.label for r in records) + 1
    parents: dict[int, set[str]] = {}
    for r in records:
        parents.setdefault(r.label, set()).add(r.path.parent.name)
    names = [next(iter(parents[i])) if len(parents.get(i, ())) == 1 else None for i in range(n)]
    if all(names) and len(set(names)) == n:
        return names  # type: ignore[return-value]
    return [f"class_{i}" for i in range(n)]


def scan_folder(root: str | Path, classes: list[str] | None = None) -> VideoList:
    """``root/<class>/<video or frames folder>``. With ``classes``, folder names map onto them."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = classes if classes is not None else [p.name for p in class_dirs]
    index = {n: i for i, n in enumerate(names)}
    records = []
    for d in class_dirs:
        if d.name not in index:
            raise DatasetError(f"{d}: class folder {d.name!r} is not one of the model's classes")
        for item in sorted(d.iterdir()):
            if item.name.startswith("."):
                continue
            if (item.is_file() and item.suffix.lower() in VIDEO_EXTENSIONS) or (item.is_dir() and _images(item)):
                records.append(VideoRecord(item, index[d.name]))
    if not records:
        raise DatasetError(f"{root}: no videos found in class folders (expected {root}/<class>/<video>)")
    return VideoList(records, list(names), str(root))


def open_source(
    data: str | Path,
    *,
    classes_file: str | Path | None = None,
    root: str | Path | None = None,
    classes: list[str] | None = None,
    role: str = "train",
) -> VideoList:
    """A list file, a folder per class, or a dataset folder (``train.txt`` for role ``train``,
    ``val.txt`` or ``test.txt`` for role ``val``). ``classes`` (e.g. the training set's) fixes the
    class order; a class file given too must agree with it."""
    data = Path(data)
    if not data.exists():
        raise DatasetError(f"{data}: not found")
    listed = None
    if data.is_dir():
        names = ("train.txt",) if role == "train" else ("val.txt", "test.txt")
        listed = next((data / n for n in names if (data / n).is_file()), None)
        if listed is not None and classes_file is None and (data / "classes.txt").is_file():
            classes_file = data / "classes.txt"
    base = 0
    if classes_file is not None:
        file_classes, base = read_class_file(classes_file)
        if classes is not None and file_classes != classes:
            raise DatasetError(f"{classes_file}: classes differ from the training set's")
        classes = file_classes
    if data.is_dir() and listed is None:
        return scan_folder(data, classes)
    return parse_list(listed or data, classes=classes, base=base, root=root)


def default_val_source(data: str | Path) -> Path | None:
    """The evaluation list of a dataset folder, if it has one."""
    data = Path(data)
    if data.is_dir():
        for n in ("val.txt", "test.txt"):
            if (data / n).is_file():
                return data / n
    return None


# -- decoding ------------------------------------------------------------------------------------
def _images(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)])


def read_frames(record: VideoRecord) -> np.ndarray:
    """All frames of a record, ``uint8 [T, H, W, 3]`` BGR (decoded by OpenCV, like the runtime)."""
    if not record.path.is_dir():
        return read_video(record.path)
    files = _images(record.path)
    if record.num_frames is not None:
        if len(files) < record.num_frames:
            raise VideoError(f"{record.path}: listed with {record.num_frames} frames but holds {len(files)} images")
        files = files[: record.num_frames]
    if not files:
        raise VideoError(f"{record.path}: no images in the frames folder")
    frames = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise VideoError(f"{f}: not an image OpenCV can read")
        if frames and img.shape != frames[0].shape:
            raise VideoError(f"{f}: size {img.shape[1]}x{img.shape[0]} differs from the folder's first image")
        frames.append(img)
    return np.stack(frames)


# -- samples -------------------------------------------------------------------------------------
def strided_indices(num_frames: int, cap: int, offset: int) -> np.ndarray:
    """Frames of interleaved sub-video ``offset mod s`` of a video, ``s = ceil(T / cap)``."""
    if cap <= 0 or num_frames <= cap:
        return np.arange(num_frames)
    stride = math.ceil(num_frames / cap)
    return np.arange(offset % stride, num_frames, stride)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A per-(epoch, video) seed: augmentation does not depend on worker count or order."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0] >> 1)


class Sample(NamedTuple):
    frames: Tensor  # float [T, 3, crop, crop]
    label: int
    length: int
    index: int


class VideoDataset(Dataset):
    """Decodes and prepares one sample per key; a key is ``index`` or ``(index, epoch)``.

    Training samples (``train=True``) are cut and augmented as the module docstring says, from a
    generator seeded by ``(seed, epoch, index)``; evaluation samples are the whole video through
    ``fvdeploy.io.transforms.preprocess`` with the model's InputSpec, as the runtime does.
    """

    def __init__(
        self,
        videos: VideoList,
        spec: InputSpec,
        *,
        mode: str = "full",
        segments: int = 8,
        frames: int = 0,
        train: bool = False,
        seed: int = 0,
        augment: AugmentSpec | None = None,
    ) -> None:
        self.videos = videos
        self.spec = spec
        self.mode = mode
        self.segments = segments
        self.frames = frames
        self.train = train
        self.seed = seed
        self.augment = augment or AugmentSpec()
        self.flip_ok = flip_allowed(videos.classes, self.augment.flip)

    def __len__(self) -> int:
        return len(self.videos.records)

    def frame_indices(self, num_frames: int, index: int, epoch: int, gen: torch.Generator) -> np.ndarray:
        if self.mode == "tsm" and self.segments > 0:
            return tsm_indices(num_frames, self.segments, random=self.train, generator=gen).numpy()
        if not self.train:
            return np.arange(num_frames)
        return strided_indices(num_frames, self.frames, epoch + index)

    def __getitem__(self, key: int | tuple[int, int]) -> Sample:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        record = self.videos.records[index]
        video = read_frames(record)
        gen = torch.Generator().manual_seed(sample_seed(self.seed, epoch, index))
        frames = torch.from_numpy(video[self.frame_indices(len(video), index, epoch, gen)])
        if self.train:
            x = augment_frames(frames, self.spec, gen, self.augment, flip=self.flip_ok[record.label])
        else:
            x = preprocess(frames, self.spec, color="bgr")
        return Sample(x, record.label, x.shape[0], index)


class Batch(NamedTuple):
    frames: Tensor  # [B, T, 3, h, w], padded by repeating each video's last frame
    labels: Tensor  # long [B]
    lengths: Tensor  # long [B], valid frames per video
    indices: Tensor  # long [B], positions in the VideoList


def collate(samples: list[Sample], pad_to: int = 0) -> Batch:
    """Stack samples, padding each to ``max(pad_to, longest)`` frames by repeating its last frame."""
    t = max([pad_to] + [s.frames.shape[0] for s in samples])
    frames = [torch.cat([s.frames, s.frames[-1:].expand(t - s.frames.shape[0], *s.frames.shape[1:])]) for s in samples]
    return Batch(
        torch.stack(frames),
        torch.tensor([s.label for s in samples], dtype=torch.long),
        torch.tensor([s.length for s in samples], dtype=torch.long),
        torch.tensor([s.index for s in samples], dtype=torch.long),
    )


def collate_fn(pad_to: int = 0):
    return partial(collate, pad_to=pad_to)


class EpochSampler(Sampler):
    """Yields ``(index, epoch)`` keys: a seeded permutation per epoch, split across DDP ranks.

    With ``pad=True`` (training) every rank gets the same number of keys, wrapping around the
    permutation as ``DistributedSampler`` does; evaluation uses ``pad=False`` so no video counts twice.
    """

    def __init__(
        self, size: int, *, seed: int = 0, shuffle: bool = True, rank: int = 0, world: int = 1, pad: bool = True
    ) -> None:
        self.size, self.seed, self.shuffle, self.rank, self.world, self.pad = size, seed, shuffle, rank, world, pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, -1 & 0xFFFFFFFF))
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        if self.pad and self.world > 1:
            total = math.ceil(self.size / self.world) * self.world
            order += order[: total - self.size]
        return order[self.rank :: self.world]

    def __iter__(self):
        return iter([(i, self.epoch) for i in self._indices()])

    def __len__(self) -> int:
        return len(self._indices())
