"""Move4: a controlled video dataset like the paper's Move4MNIST (§4), generated from a seed.

Four classes, ``move_up``, ``move_down``, ``move_left``, ``move_right``: a handwritten digit (0-4,
from the bundled MNIST subset) moves in a straight line over a textured background that itself
drifts in a random direction (the camera moves too). One consecutive chunk of distractor frames,
25-50% of the video by default (``chunk``, up to 75%), is inserted at a random place; it holds three runs, in random order, of

- ``black``: all-black frames,
- ``background``: the moving background alone,
- ``distractor``: a non-target digit (5-9) at a new random position in every frame,

so that sampling a few frames can miss the motion. The target digit's motion pauses during the
chunk and resumes where it stopped: only the ``motion`` frames carry the label.

Sparse-action mode (``Move4Spec.action_frames = K``, ``make-move4 --action-frames K``): the target
digit is visible in only one run of K consecutive ``motion`` frames at a random place, crossing 60-100%
of the free room in those K frames (several pixels per frame); every other frame is a distractor
(runs of 1-6 black, background-only or jumping-distractor frames in random order). With 32 frames and
K = 4, TSM-8's test sampling (centre frames 4 apart) sees at most one frame of the run, so a single
still of the digit, never its motion: :func:`sampling_coverage` measures that for a generated set.

Every video is a function of ``(seed, split, index)`` alone (its own ``numpy`` generator), so a
dataset is reproducible file for file, and any single video can be regenerated. Train and test
draw their digits from disjoint MNIST images (every fifth image of each digit goes to test).

Files written by :func:`write_move4`::

    OUT/classes.txt                  the four class names, in label order
    OUT/{train,test}.txt             "relative/path.mp4 label" lines (the list format of datasets.py)
    OUT/{train,test}_frames.jsonl    per video: path, label, digit, per-frame kinds (m/k/b/d letters)
    OUT/{train,test}/<class>/NNNNN.mp4
    OUT/move4.json                   the parameters, for the record
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from fvdeploy.assets import ASSETS
from fvdeploy.errors import FvdeployError

CLASSES = ("move_up", "move_down", "move_left", "move_right")
DIRECTIONS = {"move_up": (0.0, -1.0), "move_down": (0.0, 1.0), "move_left": (-1.0, 0.0), "move_right": (1.0, 0.0)}
TARGET_DIGITS = (0, 1, 2, 3, 4)
DISTRACTOR_DIGITS = (5, 6, 7, 8, 9)
KINDS = {"motion": "m", "black": "k", "background": "b", "distractor": "d"}
SPLITS = {"train": 0, "test": 1}
DIGITS_FILE = ASSETS / "mnist_5k.npz"  # package data: found the same way installed or in a checkout
FOURCC = "mp4v"  # the MPEG-4 encoder every opencv-python wheel has (no H.264 encoder there)

# Brightness ranges: the background stays at or below 150 so the white digit (255) remains the
# brightest thing in a frame, as in MNIST-on-video datasets; this is also what lets the tests
# locate the digit from the pixels.
BACKGROUND_MAX = 150
DIGIT_FRACTION = 0.42  # digit side / frame side: 27 px at 64 px, like MNIST's own 28


class Move4Error(FvdeployError):
    """Bad Move4 parameters or an output folder that cannot be written."""


@dataclass
class Move4Spec:
    frames: int = 32
    size: int = 64
    fps: float = 25.0
    chunk: tuple[float, float] = (0.25, 0.5)  # distractor chunk length, as a fraction of frames
    action_frames: int | None = None  # sparse mode: the target is visible in only this many consecutive frames

    def validate(self) -> None:
        if self.action_frames is not None and not (2 <= self.action_frames <= self.frames // 2):
            raise Move4Error(
                f"--action-frames must be between 2 (motion needs two frames) and half of --frames "
                f"({self.frames // 2}), got {self.action_frames}"
            )
        if self.frames < 8:
            raise Move4Error(f"--frames must be >= 8 (the distractor chunk needs room), got {self.frames}")
        if self.size < 16 or self.size % 2:
            raise Move4Error(
                f"--size must be an even number >= 16 (the MPEG-4 encoder needs even sizes), got {self.size}"
            )
        lo, hi = self.chunk
        if not (0 < lo <= hi <= 0.75):
            raise Move4Error(
                f"--chunk needs 0 < LO <= HI <= 0.75 (a quarter of the frames must show the motion), got {lo},{hi}"
            )


@dataclass
class Move4Video:
    frames: np.ndarray  # uint8 [T, S, S, 3], BGR
    label: int
    digit: int
    kinds: str  # one letter per frame, see KINDS
    positions: list[tuple[float, float] | None] = field(default_factory=list)  # digit top-left on motion frames


@lru_cache(maxsize=1)
def load_digits(path: str | Path = DIGITS_FILE) -> tuple[np.ndarray, np.ndarray]:
    """The bundled MNIST subset: ``images uint8 [N, 28, 28]``, ``labels uint8 [N]``."""
    path = Path(path)
    if not path.is_file():
        raise Move4Error(f"{path}: the bundled MNIST digits are missing (reinstall fvdeploy)")
    with np.load(path) as data:
        return data["images"], data["labels"]


def digit_pool(labels: np.ndarray, digits: tuple[int, ...], split: str) -> np.ndarray:
    """Indices of images of ``digits`` that belong to ``split`` (every fifth image of a digit is test)."""
    out = []
    for d in digits:
        idx = np.flatnonzero(labels == d)
        keep = (np.arange(len(idx)) % 5 == 0) if split == "test" else (np.arange(len(idx)) % 5 != 0)
        out.append(idx[keep])
    return np.concatenate(out)


def video_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS[split], index]))


def _texture(rng: np.random.Generator, side: int) -> np.ndarray:
    """A smooth coloured noise texture, float32 [side, side, 3] in [lo, hi] with hi <= BACKGROUND_MAX."""
    acc = np.zeros((side, side, 3), np.float32)
    for cells, weight in ((3, 0.45), (7, 0.25), (15, 0.15), (31, 0.15)):
        noise = rng.random((cells, cells, 3), dtype=np.float32)
        acc += weight * cv2.resize(noise, (side, side), interpolation=cv2.INTER_CUBIC)
    acc = (acc - acc.min()) / max(float(acc.max() - acc.min()), 1e-6)
    lo, hi = rng.uniform(0, 40), rng.uniform(100, BACKGROUND_MAX)
    return (lo + acc * (hi - lo)).astype(np.float32)


def _place(alpha: np.ndarray, x: float, y: float, size: int) -> np.ndarray:
    """The digit's alpha map (float [d, d]) with its top-left at sub-pixel (x, y) on a size x size canvas."""
    m = np.float32([[1, 0, x], [0, 1, y]])
    return cv2.warpAffine(alpha, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _digit_alpha(images: np.ndarray, index: int, side: int) -> np.ndarray:
    """The digit's coverage at ``side`` px, strokes saturated: averaging a 28 px digit down to 13 px
    would otherwise leave it a faint grey smear, no brighter than the background."""
    alpha = cv2.resize(images[index].astype(np.float32) / 255.0, (side, side), interpolation=cv2.INTER_AREA)
    return np.clip(alpha * (2.0 * 28 / side if side < 28 else 2.0), 0, 1)


def _chunk_kinds(rng: np.random.Generator, t_total: int, chunk: tuple[float, float]) -> list[str]:
    """Default mode: one distractor chunk (length, place, and its three runs, each at least one frame)."""
    lo, hi = chunk
    chunk_len = int(rng.integers(max(3, round(lo * t_total)), max(3, round(hi * t_total)) + 1))
    chunk_start = int(rng.integers(0, t_total - chunk_len + 1))
    cuts = np.sort(rng.choice(np.arange(1, chunk_len), 2, replace=False))
    run_lengths = np.diff([0, *cuts.tolist(), chunk_len])
    run_kinds = rng.permutation(["black", "background", "distractor"])
    kinds = ["motion"] * t_total
    pos = chunk_start
    for kind, n in zip(run_kinds, run_lengths):
        kinds[pos : pos + n] = [str(kind)] * int(n)
        pos += int(n)
    return kinds


SPARSE_RUN = (1, 6)  # lengths of the distractor runs around the action, in frames


def _sparse_kinds(rng: np.random.Generator, t_total: int, action: int) -> list[str]:
    """Sparse mode: one run of ``action`` motion frames at a random place, distractor runs elsewhere.

    Consecutive distractor runs differ in kind, so that no run is longer than ``SPARSE_RUN[1]``."""
    start = int(rng.integers(0, t_total - action + 1))
    kinds = ["motion"] * t_total
    for lo, hi in ((0, start), (start + action, t_total)):
        t, last = lo, None
        while t < hi:
            kind = str(rng.choice([k for k in ("black", "background", "distractor") if k != last]))
            n = min(int(rng.integers(SPARSE_RUN[0], SPARSE_RUN[1] + 1)), hi - t)
            kinds[t : t + n] = [kind] * n
            t, last = t + n, kind
    return kinds


def render_video(
    spec: Move4Spec, seed: int, split: str, index: int, label: int | None = None, kinds: str | None = None
) -> Move4Video:
    """Render video ``index`` of ``split``; its class is ``index % 4`` unless ``label`` is given.
    ``kinds`` (one letter of ``KINDS`` per frame, ``spec.frames`` of them) replaces the drawn
    distractor layout: all-distractor videos for the recordings below.

    Raises :class:`Move4Error` for invalid ``spec`` or ``kinds``."""
    spec.validate()
    if kinds is not None and (len(kinds) != spec.frames or set(kinds) - set(KINDS.values())):
        raise Move4Error(f"kinds must be {spec.frames} letters of {''.join(KINDS.values())}, got {kinds!r}")
    images, digit_labels = load_digits()
    rng = video_rng(seed, split, index)
    t_total, s = spec.frames, spec.size
    label = index % len(CLASSES) if label is None else label
    d = max(6, int(round(s * DIGIT_FRACTION)))

    if kinds is not None:
        letters = {v: k for k, v in KINDS.items()}
        kind_list = [letters[c] for c in kinds]
    elif spec.action_frames:
        kind_list = _sparse_kinds(rng, t_total, spec.action_frames)
    else:
        kind_list = _chunk_kinds(rng, t_total, spec.chunk)
    motion_frames = kind_list.count("motion")

    # The target digit's straight path: 60-100% of the free room along the axis of motion.
    pool = digit_pool(digit_labels, TARGET_DIGITS, split)
    target = int(rng.choice(pool))
    alpha = _digit_alpha(images, target, d)
    room = s - d
    travel = rng.uniform(0.6, 1.0) * room
    step = travel / max(1, motion_frames - 1)
    along0 = rng.uniform(0, room - travel)
    across = rng.uniform(0, room)
    dx, dy = DIRECTIONS[CLASSES[label]]
    if dx + dy < 0:  # moving towards 0: start at the far end
        along0 += travel

    # The background drifts in any direction, up to 0.75 px per frame at 64 px.
    margin = int(np.ceil(0.75 * s / 64 * t_total)) + 2
    texture = _texture(rng, s + 2 * margin)
    angle = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(0.25, 0.75) * s / 64
    bg_x0, bg_y0 = rng.uniform(-margin / 2, margin / 2, size=2)

    distractor_pool = digit_pool(digit_labels, DISTRACTOR_DIGITS, split)
    frames = np.zeros((t_total, s, s, 3), np.uint8)
    positions: list[tuple[float, float] | None] = []
    m = 0  # motion frames drawn so far
    for t, kind in enumerate(kind_list):
        if kind == "black":
            positions.append(None)
            continue
        cx = (s + 2 * margin) / 2 + bg_x0 + np.cos(angle) * speed * t
        cy = (s + 2 * margin) / 2 + bg_y0 + np.sin(angle) * speed * t
        frame = cv2.getRectSubPix(texture, (s, s), (float(cx), float(cy)))
        a = None
        if kind == "motion":
            along = along0 + (dx + dy) * step * m
            x, y = (along, across) if dx else (across, along)
            a = _place(alpha, x, y, s)
            positions.append((float(x), float(y)))
            m += 1
        else:
            positions.append(None)
            if kind == "distractor":
                other = _digit_alpha(images, int(rng.choice(distractor_pool)), d)
                a = _place(other, *rng.uniform(0, room, size=2), s)
        if a is not None:
            frame = frame * (1 - a[..., None]) + 255.0 * a[..., None]
        frames[t] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    return Move4Video(frames, label, int(digit_labels[target]), "".join(KINDS[k] for k in kind_list), positions)


def write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*FOURCC), fps, (w, h))
    if not writer.isOpened():
        raise Move4Error(f"{path}: OpenCV cannot open an {FOURCC} MP4 writer (opencv built without FFmpeg?)")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()


def write_move4(
    out: str | Path,
    *,
    train: int = 1800,
    test: int = 600,
    spec: Move4Spec | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Generate a Move4 dataset into ``out`` (a new or empty folder), atomically.

    Classes are balanced: video i has class ``i % 4``. ``progress(done, total)`` is called per video.
    """
    spec = spec or Move4Spec()
    spec.validate()
    if train < 0 or test < 0 or train + test == 0:
        raise Move4Error(f"need some videos: --train {train} --test {test}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise Move4Error(f"{out}: already exists and is not empty (refusing to overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "classes.txt").write_text("".join(f"{c}\n" for c in CLASSES))
        total, done = train + test, 0
        for split, count in (("train", train), ("test", test)):
            lines, meta = [], []
            for c in CLASSES:
                (tmp / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                video = render_video(spec, seed, split, i)
                rel = f"{split}/{CLASSES[video.label]}/{i:05d}.mp4"
                write_mp4(tmp / rel, video.frames, spec.fps)
                lines.append(f"{rel} {video.label}\n")
                meta.append(
                    json.dumps({"path": rel, "label": video.label, "digit": video.digit, "kinds": video.kinds}) + "\n"
                )
                done += 1
                if progress is not None:
                    progress(done, total)
            (tmp / f"{split}.txt").write_text("".join(lines))
            (tmp / f"{split}_frames.jsonl").write_text("".join(meta))
        record = {
            "generator": "fvdeploy make-move4",
            "seed": seed,
            "train": train,
            "test": test,
            "spec": asdict(spec),
            "classes": list(CLASSES),
            "codec": FOURCC,
            "target_digits": list(TARGET_DIGITS),
            "distractor_digits": list(DISTRACTOR_DIGITS),
        }
        (tmp / "move4.json").write_text(json.dumps(record, indent=2) + "\n")
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_frame_kinds(out: str | Path, split: str) -> dict[str, dict]:
    """The per-video ground truth of a generated split, keyed by relative path."""
    path = Path(out) / f"{split}_frames.jsonl"
    if not path.is_file():
        raise Move4Error(f"{path}: not found (is {out} a Move4 folder?)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["path"]: r for r in rows}


def run_frames_sampled(kinds: str, segments: int) -> int:
    """How many ``motion`` frames TSM-``segments``' test sampling (the centre frame of each of
    ``segments`` equal segments, :func:`fvdeploy.ops.sampling.tsm_indices`) reads from a video whose
    per-frame kinds are ``kinds`` (the letters of ``*_frames.jsonl``)."""
    from fvdeploy.ops.sampling import tsm_indices  # torch: only when asked

    return sum(kinds[i] == KINDS["motion"] for i in tsm_indices(len(kinds), segments).tolist())


def sampling_coverage(out: str | Path, split: str = "test", segments: int = 8, at_least: int = 2) -> float:
    """The fraction (0-1) of the videos of a generated ``split`` in which TSM-``segments``' test
    sampling reads at least ``at_least`` motion frames: the chance that sampling sees the motion at
    all (one frame shows where the digit is, not where it goes).

    Raises :class:`Move4Error` when ``out`` has no ``{split}_frames.jsonl`` or it is empty."""
    rows = read_frame_kinds(out, split).values()
    if not rows:
        raise Move4Error(f"{Path(out) / f'{split}_frames.jsonl'}: no videos")
    return sum(run_frames_sampled(r["kinds"], segments) >= at_least for r in rows) / len(rows)


# -- long recordings of known actions (for windowed classification: ``fvdeploy watch``) ----------------


@dataclass
class Recording:
    """A long generated recording and where its actions are.

    ``frames`` uint8 ``[T, S, S, 3]`` BGR at ``fps``; ``actions`` the true spans, each ``(label,
    start_frame, end_frame)`` with ``end_frame`` exclusive (frame ``t`` lies at ``t / fps`` s)."""

    frames: np.ndarray
    fps: float
    actions: list[tuple[str, int, int]]
    kinds: str = ""  # one letter of KINDS per frame

    def spans_s(self) -> list[tuple[str, float, float]]:
        """``actions`` in seconds."""
        return [(label, a / self.fps, b / self.fps) for label, a, b in self.actions]


RECORDING_INDEX = 100_000  # clip indices of recordings start here: clear of any generated dataset's


def _distractor_kinds(rng: np.random.Generator, frames: int) -> str:
    """Three runs (black, background alone, a jumping non-target digit) in random order, each at
    least one frame: a Move4 distractor chunk as long as the clip, no motion frame."""
    cuts = np.sort(rng.choice(np.arange(1, frames), 2, replace=False))
    lengths = np.diff([0, *cuts.tolist(), frames])
    order = rng.permutation(["black", "background", "distractor"])
    return "".join(KINDS[str(k)] * int(n) for k, n in zip(order, lengths))


def render_recording(
    labels: tuple[str, ...] | list[str] = CLASSES,
    *,
    action_s: float = 10.0,
    gap_s: float = 0.0,
    fps: float = 25.0,
    size: int = 64,
    clip_frames: int = 32,
    chunk: tuple[float, float] = (0.25, 0.5),
    seed: int = 0,
    split: str = "test",
) -> Recording:
    """A recording of actions back to back, one per entry of ``labels`` (class names; an empty
    list gives a distractor-only recording of ``gap_s``), each ``action_s`` seconds long, with
    ``gap_s`` seconds of distractor frames before the first, between each two and after the last.

    An action is Move4 clips of its class one after the other, ``clip_frames`` frames each (the
    last one cut to fit): every clip a new digit, background and path, with Move4's own distractor
    chunk (``chunk``, a fraction of each clip) inside it, as the model saw in training. Its true
    span is all of its frames (the unit Move4 labels is the clip, chunk included). Distractor
    stretches are clips of only the three distractor kinds. Every frame is a function of ``seed``
    (``split`` picks the MNIST digits: test digits were never trained on).

    Raises :class:`Move4Error` for an unknown label, a non-positive length or a bad clip spec."""
    unknown = [x for x in labels if x not in CLASSES]
    if unknown:
        raise Move4Error(f"unknown Move4 classes {unknown}: choose from {', '.join(CLASSES)}")
    if action_s <= 0 or gap_s < 0 or fps <= 0 or (not labels and gap_s == 0):
        raise Move4Error(
            f"need action_s > 0, gap_s >= 0 (> 0 without actions) and fps > 0; got {action_s}, {gap_s}, {fps}"
        )
    spec = Move4Spec(frames=clip_frames, size=size, fps=fps, chunk=chunk)
    spec.validate()
    counter = iter(range(RECORDING_INDEX, RECORDING_INDEX + 10**6))

    letters: list[str] = []

    def stretch(n: int, label: int | None) -> list[np.ndarray]:
        out, left = [], n
        while left > 0:
            index = next(counter)
            kinds = None if label is not None else _distractor_kinds(video_rng(seed, split, index), clip_frames)
            video = render_video(spec, seed, split, index, label=0 if label is None else label, kinds=kinds)
            out.append(video.frames[:left])
            letters.append(video.kinds[:left])
            left -= len(out[-1])
        return out

    action_n, gap_n = round(action_s * fps), round(gap_s * fps)
    parts: list[np.ndarray] = stretch(gap_n, None)
    actions, pos = [], gap_n
    for name in labels:
        parts += stretch(action_n, CLASSES.index(name))
        actions.append((name, pos, pos + action_n))
        pos += action_n
        parts += stretch(gap_n, None)
        pos += gap_n
    return Recording(np.concatenate(parts), fps, actions, "".join(letters))


def write_recording(path: str | Path, recording: Recording) -> Path:
    """Write ``recording`` as an MP4 (MPEG-4 Part 2, as the dataset's clips) and its truth beside it
    as ``PATH.json`` (``fps``, ``frames``, ``actions`` [[label, start_frame, end_frame, start_s, end_s]])."""
    path = Path(path)
    write_mp4(path, recording.frames, recording.fps)
    truth = {
        "fps": recording.fps,
        "frames": len(recording.frames),
        "actions": [[lab, a, b, a / recording.fps, b / recording.fps] for lab, a, b in recording.actions],
    }
    path.with_suffix(path.suffix + ".json").write_text(json.dumps(truth, indent=1) + "\n")
    return path
