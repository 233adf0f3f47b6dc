"""Dataset sources (folder per class, list files, frames folders, class files), padding with
lengths, the long-video rule, augmentation that is one draw per video, and evaluation samples that
are exactly the runtime's preprocessing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import tiny_config

from fvdeploy.config import InputSpec
from fvdeploy.errors import VideoError
from fvdeploy.io.sources import read_video
from fvdeploy.io.transforms import preprocess
from fvdeploy.models import create_model
from fvdeploy.training.augment import AugmentSpec, augment_frames, flip_allowed, mirror_sensitive
from fvdeploy.training.datasets import (
    DatasetError,
    EpochSampler,
    VideoDataset,
    VideoRecord,
    collate,
    open_source,
    parse_list,
    read_class_file,
    read_frames,
    scan_folder,
    strided_indices,
)
from fvdeploy.training.move4 import write_mp4

SPEC = InputSpec(shorter_side=32, crop=32)


def _frames(t: int, seed: int, h: int = 40, w: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (t, h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """root/<class>/ with MP4 files and one extracted-frames folder, like UCF101 after extraction."""
    root = tmp_path_factory.mktemp("ds") / "videos"
    for c, name in enumerate(["Archery", "Bowling"]):
        (root / name).mkdir(parents=True)
        for i in range(2):
            write_mp4(root / name / f"v_{name}_{i}.mp4", _frames(6 + i, 10 * c + i), 25)
    frames_dir = root / "Bowling" / "v_Bowling_frames"
    frames_dir.mkdir()
    for i, f in enumerate(_frames(12, 99), 1):  # img_1 .. img_12: natural order, not 1, 10, 11, 12, 2
        cv2.imwrite(str(frames_dir / f"img_{i}.png"), f)
    (root / "Bowling" / "notes.txt").write_text("not a video")
    return root


def test_folder_per_class(tree):
    videos = scan_folder(tree)
    assert videos.classes == ["Archery", "Bowling"]
    assert [(r.path.name, r.label) for r in videos.records] == [
        ("v_Archery_0.mp4", 0),
        ("v_Archery_1.mp4", 0),
        ("v_Bowling_0.mp4", 1),
        ("v_Bowling_1.mp4", 1),
        ("v_Bowling_frames", 1),
    ]
    assert len(read_frames(videos.records[1])) == 7


def test_frames_folder_natural_order_and_listed_count(tree):
    folder = tree / "Bowling" / "v_Bowling_frames"
    frames = read_frames(VideoRecord(folder, 1))
    assert frames.shape == (12, 40, 48, 3)
    np.testing.assert_array_equal(frames[1], cv2.imread(str(folder / "img_2.png")))  # img_2 before img_10
    assert len(read_frames(VideoRecord(folder, 1, num_frames=5))) == 5
    with pytest.raises(VideoError, match="listed with 20 frames but holds 12"):
        read_frames(VideoRecord(folder, 1, num_frames=20))


def test_list_formats(tree, tmp_path):
    lst = tmp_path / "train.txt"
    lst.write_text(
        "# mmaction2 videos: path label\n"
        "Archery/v_Archery_0.mp4 0\n"
        "\n"
        "Bowling/v_Bowling_0.mp4 Bowling\n"  # a class name as label
        "Bowling/v_Bowling_frames 12 1\n"  # TSM rawframes: frames_dir num_frames label
    )
    classes = tmp_path / "classes.txt"
    classes.write_text("Archery\nBowling\n")
    videos = open_source(lst, classes_file=classes, root=tree)
    assert [(r.path.name, r.label, r.num_frames) for r in videos.records] == [
        ("v_Archery_0.mp4", 0, None),
        ("v_Bowling_0.mp4", 1, None),
        ("v_Bowling_frames", 1, 12),
    ]
    # Without a class file: integer labels named after their videos' folders.
    only_ints = tmp_path / "ints.txt"
    only_ints.write_text("Archery/v_Archery_1.mp4 0\nBowling/v_Bowling_1.mp4 1\n")
    assert parse_list(only_ints, root=tree).classes == ["Archery", "Bowling"]


def test_ucf101_style_one_based_class_index_and_unlabelled_testlist(tree, tmp_path):
    (tmp_path / "classInd.txt").write_text("1 Archery\n2 Bowling\n")
    assert read_class_file(tmp_path / "classInd.txt") == (["Archery", "Bowling"], 1)
    (tmp_path / "trainlist01.txt").write_text("Archery/v_Archery_0.mp4 1\nBowling/v_Bowling_0.mp4 2\n")
    (tmp_path / "testlist01.txt").write_text("Archery/v_Archery_1.mp4\nBowling/v_Bowling_1.mp4\n")
    train = open_source(tmp_path / "trainlist01.txt", classes_file=tmp_path / "classInd.txt", root=tree)
    test = open_source(tmp_path / "testlist01.txt", classes_file=tmp_path / "classInd.txt", root=tree)
    assert [r.label for r in train.records] == [0, 1] and [r.label for r in test.records] == [0, 1]
    # Something-Something's category.txt: names with spaces, one per line.
    (tmp_path / "category.txt").write_text("Pushing something from left to right\nHolding something\n")
    assert read_class_file(tmp_path / "category.txt")[0][0] == "Pushing something from left to right"


@pytest.mark.parametrize(
    "line, message",
    [
        ("Archery/missing.mp4 0", "line|missing.mp4 not found"),
        ("Archery/v_Archery_0.mp4 7", "outside the 2 classes"),
        ("Archery/v_Archery_0.mp4 Curling", "unknown class 'Curling'"),
    ],
)
def test_list_errors_name_the_line(tree, tmp_path, line, message):
    lst = tmp_path / "bad.txt"
    lst.write_text("Bowling/v_Bowling_0.mp4 1\n" + line + "\n")
    with pytest.raises(DatasetError, match=message) as e:
        parse_list(lst, classes=["Archery", "Bowling"], root=tree)
    assert f"{lst}:2:" in str(e.value)


def test_collate_pads_by_repeating_the_last_frame_and_keeps_lengths():
    from fvdeploy.training.datasets import Sample

    a, b = torch.randn(3, 3, 8, 8), torch.randn(5, 3, 8, 8)
    batch = collate([Sample(a, 0, 3, 0), Sample(b, 1, 5, 1)], pad_to=6)
    assert batch.frames.shape == (2, 6, 3, 8, 8) and batch.lengths.tolist() == [3, 5]
    assert torch.equal(batch.frames[0, 2:], a[-1:].expand(4, -1, -1, -1))
    assert torch.equal(batch.frames[1, :5], b) and torch.equal(batch.frames[1, 5], b[-1])


def test_padding_is_invisible_to_the_model():
    """A padded batch with lengths gives each video's logits and clusters as if it were alone."""
    from fvdeploy.training.datasets import Sample

    model = create_model(tiny_config(num_clusters=4)).eval()
    short, long = torch.randn(7, 3, 32, 32), torch.randn(13, 3, 32, 32)
    batch = collate([Sample(short, 0, 7, 0), Sample(long, 1, 13, 1)], pad_to=16)
    with torch.no_grad():
        together = model(batch.frames, batch.lengths)
        alone = [model(short[None]), model(long[None])]
    for i, out in enumerate(alone):
        torch.testing.assert_close(together.logits[i], out.logits[0], rtol=1e-4, atol=1e-5)
        n = out.cluster_ids.shape[1]
        assert torch.equal(together.cluster_ids[i, :n], out.cluster_ids[0])
        assert (together.cluster_ids[i, n:] == -1).all()


def test_long_videos_are_interleaved_sub_videos_covering_every_frame():
    t, cap = 70, 32
    stride = 3  # ceil(70 / 32)
    parts = [strided_indices(t, cap, e) for e in range(stride)]
    assert all(len(p) <= cap and p[0] < stride and p[-1] >= t - stride for p in parts)  # each spans the video
    assert sorted(np.concatenate(parts).tolist()) == list(range(t))  # s epochs: every frame once
    assert strided_indices(20, 32, 5).tolist() == list(range(20))


def test_training_samples_have_fixed_frames_and_true_lengths(tree):
    videos = scan_folder(tree)
    ds = VideoDataset(videos, SPEC, frames=8, train=True)
    sample = ds[(4, 0)]  # the 12-frame folder, over the cap of 8: stride 2
    assert sample.length == 6 and sample.frames.shape == (6, 3, 32, 32)
    batch = collate([ds[(0, 0)], sample], pad_to=8)
    assert batch.frames.shape[1] == 8 and batch.lengths.tolist() == [6, 6]


def test_evaluation_samples_are_exactly_the_runtime_preprocessing(tree):
    videos = scan_folder(tree)
    sample = VideoDataset(videos, SPEC, train=False)[2]
    expected = preprocess(torch.from_numpy(read_video(videos.records[2].path)), SPEC, color="bgr")
    assert torch.equal(sample.frames, expected)


def test_augmentation_is_one_crop_and_flip_for_all_frames():
    base = _frames(1, 3, 48, 64)
    frames = torch.from_numpy(np.repeat(base, 6, axis=0))  # six identical frames
    outs = [augment_frames(frames, SPEC, torch.Generator().manual_seed(s), AugmentSpec(), flip=True) for s in range(12)]
    for out in outs:
        assert out.shape == (6, 3, 32, 32)
        assert all(torch.equal(out[0], out[t]) for t in range(6))  # the same box and flip for every frame
    centre = preprocess(frames[:1], SPEC)
    assert len({out[0].sum().item() for out in outs}) > 3 and any(not torch.allclose(o[:1], centre) for o in outs)
    # The flip draw happens whatever the class: with the same seed, flip=True is the mirror of flip=False.
    mirrored = 0
    for s in range(12):
        a = augment_frames(frames, SPEC, torch.Generator().manual_seed(s), AugmentSpec(), flip=False)
        b = augment_frames(frames, SPEC, torch.Generator().manual_seed(s), AugmentSpec(), flip=True)
        if not torch.equal(a, b):
            assert torch.equal(a.flip(-1), b)
            mirrored += 1
    assert 0 < mirrored < 12


def test_left_right_classes_are_never_flipped():
    assert mirror_sensitive("move_left") and mirror_sensitive("Pushing something from left to right")
    assert mirror_sensitive("Turning the camera clockwise") and not mirror_sensitive("move_up")
    assert not mirror_sensitive("Bowling") and not mirror_sensitive("brightness")
    assert flip_allowed(["move_up", "move_down", "move_left", "move_right"]) == [True, True, False, False]
    assert flip_allowed(["a", "b"], "none") == [False, False]


def test_epoch_sampler_is_seeded_and_shards_ranks():
    a = list(EpochSampler(10, seed=1))
    assert sorted(i for i, _ in a) == list(range(10)) and a == list(EpochSampler(10, seed=1))
    s = EpochSampler(10, seed=1)
    s.set_epoch(1)
    assert [i for i, _ in s] != [i for i, _ in a] and all(e == 1 for _, e in s)
    ranks = [list(EpochSampler(9, seed=1, rank=r, world=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 5  # padded to equal shares
    assert {i for r in ranks for i, _ in r} == set(range(9))
    unpadded = [list(EpochSampler(9, shuffle=False, rank=r, world=2, pad=False)) for r in range(2)]
    assert sorted(i for r in unpadded for i, _ in r) == list(range(9))


def test_dataset_folder_class_file_numbers_both_lists(tree, tmp_path):
    """A dataset folder's own classes.txt (here 1-based, classInd style) applies to train and val."""
    (tmp_path / "classes.txt").write_text("1 Archery\n2 Bowling\n")
    (tmp_path / "train.txt").write_text(f"{tree}/Archery/v_Archery_0.mp4 1\n{tree}/Bowling/v_Bowling_0.mp4 2\n")
    (tmp_path / "test.txt").write_text(f"{tree}/Bowling/v_Bowling_1.mp4 2\n")
    train = open_source(tmp_path, role="train")
    val = open_source(tmp_path, role="val", classes=train.classes)
    assert [r.label for r in train.records] == [0, 1] and [r.label for r in val.records] == [1]
