"""The Move4 generator: deterministic for a seed, real MP4 files read back through the training
loader, and the digit really moves in the labelled direction (measured from the decoded pixels)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from conftest import run_cli

from fvdeploy.io.sources import read_video
from fvdeploy.training.datasets import VideoDataset, open_source
from fvdeploy.training.move4 import CLASSES, KINDS, Move4Spec, render_video, write_move4

SPEC = Move4Spec(frames=24, size=32)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def move4(tmp_path_factory):
    return write_move4(tmp_path_factory.mktemp("m4") / "data", train=12, test=8, spec=SPEC, seed=7)


def _digest(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "move4.json"
    }


def test_same_seed_same_files_other_seed_other_videos(move4, tmp_path):
    again = write_move4(tmp_path / "again", train=12, test=8, spec=SPEC, seed=7)
    assert _digest(again) == _digest(move4)
    other = render_video(SPEC, 8, "train", 0)
    assert not np.array_equal(other.frames, render_video(SPEC, 7, "train", 0).frames)


def test_layout_and_lists_read_back_through_the_loader(move4):
    assert (move4 / "classes.txt").read_text().split() == list(CLASSES)
    train = open_source(move4, role="train")
    test = open_source(move4, role="val")
    assert train.classes == list(CLASSES) and len(train) == 12 and len(test) == 8
    assert [r.label for r in train.records] == [i % 4 for i in range(12)]  # balanced, class i % 4
    for r in train.records + test.records:
        assert r.path.parent.name == CLASSES[r.label] and r.path.suffix == ".mp4"
    sample = VideoDataset(test, _spec(32))[0]
    assert sample.frames.shape == (SPEC.frames, 3, 32, 32) and sample.length == SPEC.frames


def _spec(size):
    from fvdeploy.config import InputSpec

    return InputSpec(shorter_side=size, crop=size)


def _digit_centre(frame: np.ndarray) -> tuple[float, float] | None:
    """Centroid of the white digit: the background never exceeds 150, the digit is 255."""
    weight = (frame.min(axis=2).astype(np.float64) - 190).clip(min=0)
    if weight.sum() < 50:
        return None
    ys, xs = np.mgrid[: frame.shape[0], : frame.shape[1]]
    return float((xs * weight).sum() / weight.sum()), float((ys * weight).sum() / weight.sum())


@pytest.mark.parametrize("split", ["train", "test"])
def test_the_digit_moves_in_the_labelled_direction(move4, split):
    meta = [json.loads(line) for line in (move4 / f"{split}_frames.jsonl").read_text().splitlines()]
    for row in meta:
        frames = read_video(move4 / row["path"])  # the decoded MP4, compression and all
        assert len(frames) == SPEC.frames == len(row["kinds"])
        centres = [_digit_centre(f) for f, k in zip(frames, row["kinds"]) if k == KINDS["motion"]]
        assert all(c is not None for c in centres), row["path"]
        xy = np.array(centres)
        step = np.arange(len(xy))
        vx, vy = np.polyfit(step, xy[:, 0], 1)[0], np.polyfit(step, xy[:, 1], 1)[0]
        name = CLASSES[row["label"]]
        along, across = (vx, vy) if name in ("move_left", "move_right") else (vy, vx)
        sign = 1 if name in ("move_right", "move_down") else -1
        assert sign * along > 0.25, (row["path"], name, vx, vy)  # at least a quarter pixel per frame
        assert abs(across) < 0.2 * abs(along), (row["path"], name, vx, vy)


def test_one_distractor_chunk_with_every_kind(move4):
    for line in (move4 / "train_frames.jsonl").read_text().splitlines():
        kinds = json.loads(line)["kinds"]
        chunk = [i for i, k in enumerate(kinds) if k != "m"]
        assert chunk == list(range(chunk[0], chunk[-1] + 1)), kinds  # one consecutive chunk
        assert set(kinds[chunk[0] : chunk[-1] + 1]) == {"k", "b", "d"}
        assert 0.25 * SPEC.frames - 1 <= len(chunk) <= 0.5 * SPEC.frames
        video = render_video(SPEC, 7, "train", 0)
        black = [i for i, k in enumerate(video.kinds) if k == "k"]
        assert video.frames[black].max() == 0


def test_train_and_test_digits_are_disjoint_images():
    from fvdeploy.training.move4 import TARGET_DIGITS, digit_pool, load_digits

    _, labels = load_digits()
    train, test = digit_pool(labels, TARGET_DIGITS, "train"), digit_pool(labels, TARGET_DIGITS, "test")
    assert len(set(train) & set(test)) == 0 and len(test) == 500 and len(train) == 2000


def test_cli_refuses_a_non_empty_folder(move4):
    r = run_cli("make-move4", move4, "--train", "4", "--test", "0")
    assert r.returncode == 1
    assert r.stderr.strip().startswith("error:") and "not empty" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("make-move4", str(move4) + "_new", "--size", "33")
    assert r.returncode == 1 and "even" in r.stderr and "Traceback" not in r.stderr


def test_chunk_length_option_is_honoured_and_bounded():
    from fvdeploy.training.move4 import Move4Error

    spec = Move4Spec(frames=32, size=32, chunk=(0.5, 0.75))
    lengths = [32 - render_video(spec, 1, "train", i).kinds.count("m") for i in range(8)]
    assert all(16 <= n <= 24 for n in lengths) and len(set(lengths)) > 1
    with pytest.raises(Move4Error, match="at most|<= 0.75"):
        render_video(Move4Spec(chunk=(0.5, 0.9)), 1, "train", 0)


SPARSE = Move4Spec(frames=32, size=32, action_frames=4)


@pytest.fixture(scope="module")
def sparse4(tmp_path_factory):
    return write_move4(tmp_path_factory.mktemp("m4s") / "data", train=0, test=12, spec=SPARSE, seed=3)


def test_sparse_target_only_inside_one_run_moving_in_the_labelled_direction(sparse4):
    """From the decoded MP4 pixels: the target digit (0-4) shows in exactly one run of K frames and
    crosses several pixels per frame in its class's direction; outside the run no frame shows it."""
    from fvdeploy.training.move4 import TARGET_DIGITS

    meta = [json.loads(line) for line in (sparse4 / "test_frames.jsonl").read_text().splitlines()]
    assert len(meta) == 12 and len({r["label"] for r in meta}) == 4
    for row in meta:
        kinds = row["kinds"]
        run = [i for i, k in enumerate(kinds) if k == KINDS["motion"]]
        assert run == list(range(run[0], run[0] + 4)), kinds  # one run of exactly K consecutive frames
        assert row["digit"] in TARGET_DIGITS
        video = render_video(SPARSE, 3, "test", int(row["path"][-9:-4]))
        assert video.kinds == kinds and [i for i, p in enumerate(video.positions) if p] == run
        assert video.frames[[i for i, k in enumerate(kinds) if k == "k"]].max(initial=0) == 0
        frames = read_video(sparse4 / row["path"])
        xy = np.array([_digit_centre(frames[i]) for i in run])
        vx, vy = np.polyfit(np.arange(4), xy[:, 0], 1)[0], np.polyfit(np.arange(4), xy[:, 1], 1)[0]
        name = CLASSES[row["label"]]
        along, across = (vx, vy) if name in ("move_left", "move_right") else (vy, vx)
        sign = 1 if name in ("move_right", "move_down") else -1
        assert sign * along > 2.0, (row["path"], name, vx, vy)  # clearly visible between two frames
        assert abs(across) < 0.2 * abs(along), (row["path"], name, vx, vy)
        # Background-only frames hold no white digit at all; distractor frames hold a digit 5-9.
        assert all(_digit_centre(frames[i]) is None for i, k in enumerate(kinds) if k == "b")


def test_sparse_distractors_surround_the_run_and_carry_no_direction():
    kinds = [render_video(SPARSE, 5, "train", i).kinds for i in range(24)]
    starts = [k.index("m") for k in kinds]
    assert len(set(starts)) > 6  # the run is at a random place
    assert {"k", "b", "d"} <= set("".join(kinds))
    for k in kinds:
        assert k.count("m") == 4 and all(len(r) <= 6 for r in _runs(k) if r[0] != "m")


def _runs(kinds: str) -> list[str]:
    import itertools

    return ["".join(g) for _, g in itertools.groupby(kinds)]


def test_sparse_mode_is_deterministic_and_leaves_the_default_mode_alone():
    a, b = render_video(SPARSE, 9, "train", 3), render_video(SPARSE, 9, "train", 3)
    assert np.array_equal(a.frames, b.frames) and a.kinds == b.kinds
    assert render_video(SPARSE, 10, "train", 3).kinds != a.kinds or not np.array_equal(
        render_video(SPARSE, 10, "train", 3).frames, a.frames
    )
    default = render_video(Move4Spec(frames=32, size=32), 9, "train", 3)
    assert default.kinds.count("m") >= 16  # one chunk of 8-16 frames, the rest motion


def test_sampling_coverage_counts_videos_where_tsm_sees_two_run_frames(sparse4, tmp_path):
    from fvdeploy.training.move4 import Move4Error, run_frames_sampled, sampling_coverage

    # 32 frames, 8 segments: centre frames 2, 6, 10, ... ; 16 segments: 1, 3, 5, ...
    assert run_frames_sampled("k" * 2 + "m" * 4 + "k" * 26, 8) == 1
    assert run_frames_sampled("k" * 2 + "m" * 4 + "k" * 26, 16) == 2
    assert run_frames_sampled("m" * 32, 8) == 8
    # K = 4 of 32: the centre frames of TSM-8 are 4 apart, so it never reads two run frames;
    # TSM-16's are 2 apart, so it always reads exactly two.
    assert sampling_coverage(sparse4, "test", 8) == 0.0
    assert sampling_coverage(sparse4, "test", 16) == 1.0
    assert sampling_coverage(sparse4, "test", 8, at_least=1) == 1.0
    three = write_move4(tmp_path / "k3", train=0, test=16, spec=Move4Spec(frames=32, size=32, action_frames=3), seed=1)
    assert 0.0 < sampling_coverage(three, "test", 16) < 1.0  # a run of 3 catches one or two of TSM-16's
    with pytest.raises(Move4Error, match="not found"):
        sampling_coverage(tmp_path / "nowhere")


def test_action_frames_option_is_bounded_and_reaches_the_cli(tmp_path):
    from fvdeploy.training.move4 import Move4Error

    with pytest.raises(Move4Error, match="--action-frames"):
        render_video(Move4Spec(frames=32, size=32, action_frames=1), 1, "train", 0)
    r = run_cli(
        "make-move4", str(tmp_path / "s"), "--train", "4", "--test", "0", "--size", "32", "--action-frames", "3"
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["action_frames"] == 3
    assert all(
        json.loads(line)["kinds"].count("m") == 3
        for line in (tmp_path / "s" / "train_frames.jsonl").read_text().splitlines()
    )
    assert json.loads((tmp_path / "s" / "move4.json").read_text())["spec"]["action_frames"] == 3


def test_recordings_of_known_actions(tmp_path):
    from fvdeploy.training.move4 import Move4Error, render_recording, write_recording

    rec = render_recording(("move_left", "move_up"), action_s=2.0, gap_s=1.0, fps=25.0, seed=3)
    # 1 s of distractors, 2 s of each action, 1 s between and after: 7 s
    assert rec.frames.shape == (175, 64, 64, 3) and len(rec.kinds) == 175
    assert rec.actions == [("move_left", 25, 75), ("move_up", 100, 150)]
    assert rec.spans_s() == [("move_left", 1.0, 3.0), ("move_up", 4.0, 6.0)]
    inside = {i for _, a, b in rec.actions for i in range(a, b)}
    # motion only inside the actions; every clip of an action also has Move4's distractor chunk
    assert all(i in inside for i, k in enumerate(rec.kinds) if k == KINDS["motion"])
    assert all(KINDS["motion"] in rec.kinds[a:b] and set(rec.kinds[a:b]) > {KINDS["motion"]} for _, a, b in rec.actions)
    assert np.array_equal(
        rec.frames, render_recording(("move_left", "move_up"), action_s=2.0, gap_s=1.0, seed=3).frames
    )
    only = render_recording([], gap_s=3.0, seed=3)
    assert only.actions == [] and len(only.frames) == 75 and KINDS["motion"] not in only.kinds
    assert set(only.kinds) == {KINDS["black"], KINDS["background"], KINDS["distractor"]}
    with pytest.raises(Move4Error, match="unknown Move4 classes"):
        render_recording(("jump",))
    with pytest.raises(Move4Error):
        render_recording([])  # nothing at all
    path = write_recording(tmp_path / "r.mp4", rec)
    truth = json.loads(path.with_suffix(".mp4.json").read_text())
    assert truth["frames"] == 175 and truth["actions"][1] == ["move_up", 100, 150, 4.0, 6.0]
    assert len(read_video(path)) == 175
