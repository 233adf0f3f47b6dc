"""The runtime: streaming and bounded-memory classification equal the whole-video forward."""

from __future__ import annotations

import gc
import resource

import numpy as np
import pytest
import torch
from clips import synthetic_frames, write_clip
from conftest import save_tiny_model

from fvdeploy.engine import MemoryPlan
from fvdeploy.errors import VideoError
from fvdeploy.io import preprocess, read_video
from fvdeploy.ops import cluster_segments, tsm_indices
from fvdeploy.ops.clustering import sign_changes
from fvdeploy.runtime import Classifier


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny", seed=1)


@pytest.fixture(scope="session")
def clip90(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clips") / "clip90.mp4", synthetic_frames(90, 41, 53))


def whole_forward(model_dir, frames_bgr: np.ndarray, **config_changes):
    """The reference: every decoded frame preprocessed at once, one forward of the model."""
    from fvdeploy.bundle import load_model

    model = load_model(model_dir)
    if config_changes:
        model.config = model.config.replace(**config_changes)
    x = preprocess(torch.from_numpy(frames_bgr), model.config.input, "bgr")
    with torch.no_grad():
        return model, model(x[None])


def assert_same_as_whole(result, out, labels, num_frames):
    probs = torch.softmax(out.logits[0].double(), 0)
    assert result.label == labels[int(probs.argmax())]
    for label, score in result.topk:
        assert abs(score - float(probs[labels.index(label)])) <= 1e-5
    spans = cluster_segments(out.cluster_ids)[0]
    # clusters of padding alone (a video shorter than G) are not reported: each real frame once
    spans = [(s, min(e, num_frames)) for s, e in spans if s < num_frames]
    assert [(s.start_frame, s.end_frame) for s in result.segments] == spans


PLANS = {
    "chunk1": dict(chunk_size=1),
    "chunk7": dict(chunk_size=7),
    "default": {},
    # nothing stored verbatim: per-chunk sums from the start, merged down to 3 slots, the slots that
    # straddle cluster boundaries recomputed by seeking in the file
    "sums+merge": dict(
        memory_plan=MemoryPlan(
            budget=2**20, chunk_frames=6, decode_frames=4, store_bytes=0, slot_bytes=6 * 16 * 8 * 8 * 4
        )
    ),
}


@pytest.mark.parametrize("k", [8, 64, 200704, 13])  # 13: not whole words, the plain count
def test_sign_changes_count_exactly(k):
    gen = torch.Generator().manual_seed(k)
    signs = torch.rand(6, k, generator=gen) > torch.rand(6, 1, generator=gen)  # sparse to dense rows
    signs[0] = signs[1]  # no change
    signs[2] = ~signs[3]  # every flag changes
    assert torch.equal(sign_changes(signs[1:], signs[:-1]), torch.count_nonzero(signs[1:] != signs[:-1], dim=1))
    assert sign_changes(signs[1:], signs[:-1]).dtype == torch.int64


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_file_classification_equals_whole_video_forward(model_dir, clip90, plan):
    frames = read_video(clip90)
    model, out = whole_forward(model_dir, frames)
    clf = Classifier.load(model_dir, device="cpu")
    for key, value in PLANS[plan].items():
        setattr(clf, key, value)
    result = clf.classify(clip90)
    assert result.num_frames == 90 and result.fps == 25.0 and abs(result.duration_s - 3.6) < 1e-6
    assert_same_as_whole(result, out, model.config.labels, 90)
    assert result.run["decoder"] == "opencv" and result.run["mode"] == "full" and not result.partial


def test_sums_path_recomputes_only_straddling_slots(model_dir, clip90):
    from fvdeploy.io import sources

    seen = {}
    real = sources.OpenCVSource.read_range

    def spy(self, start, stop, chunk_frames):
        seen.setdefault("ranges", []).append((start, stop))
        yield from real(self, start, stop, chunk_frames)

    clf = Classifier.load(model_dir, device="cpu")
    clf.memory_plan = PLANS["sums+merge"]["memory_plan"]
    sources.OpenCVSource.read_range = spy
    try:
        clf.classify(clip90)
    finally:
        sources.OpenCVSource.read_range = real
    g = clf.config.num_clusters
    assert 1 <= len(seen["ranges"]) <= g - 1  # at most one straddling slot per boundary


def test_array_and_iterator_sources_equal_the_file(model_dir, clip90):
    frames = read_video(clip90)
    clf = Classifier.load(model_dir, device="cpu")
    a = clf.classify(clip90).to_dict()
    b = clf.classify(frames, fps=25.0).to_dict()
    c = clf.classify(iter(list(frames)), fps=25.0).to_dict()
    rgb = clf.classify(frames[..., ::-1].copy(), fps=25.0, color="rgb").to_dict()
    for other in (b, c, rgb):
        assert other["path"] is None
        for key in ("label", "topk", "num_frames", "segments", "duration_s"):
            assert other[key] == a[key], key
    assert b["run"]["decoder"] == "array" and c["run"]["decoder"] == "iterator"


@pytest.mark.parametrize("num_frames", [1, 2, 4])
def test_videos_shorter_than_the_cluster_count(model_dir, tmp_path, num_frames):
    frames = synthetic_frames(num_frames, 36, 44, seed=num_frames)
    path = write_clip(tmp_path / "short.mp4", frames)
    decoded = read_video(path)
    model, out = whole_forward(model_dir, decoded)
    result = Classifier.load(model_dir, device="cpu").classify(path)
    assert result.num_frames == num_frames
    assert len(result.segments) == min(num_frames, 4)  # G = 4: one segment per real frame, no duplicates
    assert_same_as_whole(result, out, model.config.labels, num_frames)
    covered = [f for s in result.segments for f in range(s.start_frame, s.end_frame)]
    assert covered == list(range(num_frames))


def test_tsm_mode_reads_the_segment_centres(model_dir, clip90):
    frames = read_video(clip90)
    model, _ = whole_forward(model_dir, frames)
    model.config = model.config.replace(mode="tsm", segments=5)
    x = preprocess(torch.from_numpy(frames[tsm_indices(90, 5).numpy()]), model.config.input, "bgr")
    with torch.no_grad():
        ref = torch.softmax(model(x[None]).logits[0].double(), 0)
    for source in (clip90, frames):
        result = Classifier.load(model_dir, device="cpu", mode="tsm", segments=5).classify(source)
        assert result.run["mode"] == "tsm" and len(result.segments) == 5
        assert [s.start_frame for s in result.segments] == [0, 18, 36, 54, 72]
        for label, score in result.topk:
            assert abs(score - float(ref[model.config.labels.index(label)])) <= 1e-5


def test_tsm_all_streams_through_the_whole_network(model_dir, clip90):
    frames = read_video(clip90)
    model, _ = whole_forward(model_dir, frames)
    model.config = model.config.replace(mode="tsm", segments=0)
    x = preprocess(torch.from_numpy(frames), model.config.input, "bgr")
    with torch.no_grad():
        ref = torch.softmax(model(x[None]).logits[0].double(), 0)
    clf = Classifier.load(model_dir, device="cpu", mode="tsm", segments=0, chunk_size=11)
    result = clf.classify(clip90)
    for label, score in result.topk:
        assert abs(score - float(ref[model.config.labels.index(label)])) <= 1e-5
    assert result.segments[0].start_frame == 0 and result.segments[-1].end_frame == 90


def test_a_stream_beyond_the_budget_names_windowed_classification(model_dir):
    clf = Classifier.load(model_dir, device="cpu")
    clf.memory_plan = MemoryPlan(
        budget=2**20, chunk_frames=4, decode_frames=4, store_bytes=10 * 16 * 8 * 8 * 4, slot_bytes=2**16
    )
    frames = synthetic_frames(40, 32, 32)
    with pytest.raises(Exception, match="windowed classification"):
        clf.classify(iter(list(frames)))
    assert clf.classify(frames).num_frames == 40  # an array can be re-read: fine


def test_classify_many_reports_bad_inputs_and_goes_on(model_dir, clip90, tmp_path):
    (tmp_path / "notavideo.mp4").write_text("hello")
    clf = Classifier.load(model_dir, device="cpu")
    results = list(clf.classify_many([clip90, tmp_path / "missing.mp4", tmp_path / "notavideo.mp4", clip90]))
    assert [r.error is None for r in results] == [True, False, False, True]
    assert "no such file" in results[1].error and "not a video" in results[2].error
    assert results[0].label == results[3].label


def test_bad_arrays_are_clear_errors(model_dir):
    clf = Classifier.load(model_dir, device="cpu")
    with pytest.raises(VideoError, match="uint8"):
        clf.classify(np.zeros((3, 8, 8, 3), np.float32))
    with pytest.raises(VideoError, match="zero frames"):
        clf.classify(np.zeros((0, 8, 8, 3), np.uint8))
    with pytest.raises(VideoError, match="zero frames"):
        clf.classify(iter([]))


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def test_one_classifier_serves_many_videos_without_growing(model_dir):
    clf = Classifier.load(model_dir, device="cpu")
    frames = synthetic_frames(24, 32, 32)
    for _ in range(5):
        clf.classify(frames)
    gc.collect()
    before = _rss_mib()
    for _ in range(40):
        clf.classify(frames)
    gc.collect()
    assert _rss_mib() - before < 24, "memory grew across calls"


def test_shrink_is_uint8_within_one_level_of_the_float_resize_rounded(bigbuckbunny):
    """The CPU's uint8 kernel vs the arithmetic CUDA runs (float resize, rounded to a level)."""
    from fvdeploy.config import InputSpec
    from fvdeploy.io.transforms import center_crop, resize, resized_size, shrink, to_input

    frames = torch.from_numpy(read_video(bigbuckbunny)[:12])
    specs = {
        "bilinear": InputSpec(),
        "odd sizes": InputSpec(shorter_side=73, crop=64),
        "bicubic": InputSpec(shorter_side=96, crop=80, interpolation="bicubic"),
        "area (float path)": InputSpec(shorter_side=64, crop=64, interpolation="area"),
    }
    for name, spec in specs.items():
        small = shrink(frames, spec)
        assert small.dtype == torch.uint8 and tuple(small.shape) == (12, spec.crop, spec.crop, 3), name
        x = frames.permute(0, 3, 1, 2).float()
        size = resized_size(x.shape[-2], x.shape[-1], spec.shorter_side)
        reference = center_crop(resize(x, size, spec), spec.crop).round().clamp(0, 255)
        levels = (small.permute(0, 3, 1, 2).float() - reference).abs()
        print(f"{name}: {levels.max().item():.0f} level at most, {(levels > 0).float().mean().item():.2%} differ")
        assert levels.max().item() <= 1, name
        assert (levels > 0).float().mean().item() < 0.15, name  # its two passes each round to a level
        assert np.array_equal(shrink(frames.numpy(), spec), small.numpy()), "numpy in, the same numpy out"
        assert torch.equal(preprocess(frames, spec, "bgr"), to_input(small, spec, "bgr"))
        if spec.crop == spec.shorter_side:
            assert shrink(small, spec) is small  # already model-sized: handed back as it is


def test_resizing_in_the_decode_thread_changes_nothing(bigbuckbunny):
    """The decode thread shrinks frames on the CPU; the model thread doing it gives the same bits."""
    clf = Classifier.load(device="cpu")
    assert clf.engine.shrink_on_host
    a = clf.classify(bigbuckbunny)
    clf.engine.shrink_on_host = False
    b = clf.classify(bigbuckbunny)
    assert (a.label, a.topk, a.segments, a.num_frames) == (b.label, b.topk, b.segments, b.num_frames)


def test_the_cpu_and_the_gpu_arithmetic_agree_end_to_end(bigbuckbunny, clip90, model_dir, monkeypatch):
    """CUDA resizes in float and rounds (torch's uint8 kernel is CPU-only). Run that arithmetic on
    the CPU (F.interpolate is the same formula on both) against the default CPU path: same top-1,
    boundaries within one frame, probabilities within 2e-4 (tests/test_gpu.py does it on a GPU)."""
    from fvdeploy.io import transforms

    videos = [(Classifier.load(device="cpu"), bigbuckbunny), (Classifier.load(model_dir, device="cpu"), clip90)]
    expected = [clf.classify(v) for clf, v in videos]
    monkeypatch.setattr(transforms, "_uint8_kernel", lambda spec, device: False)
    for (clf, video), a in zip(videos, expected):
        b = clf.classify(video)
        starts = [(x.start_frame, y.start_frame) for x, y in zip(a.segments, b.segments)]
        probs = [abs(p - dict(b.topk)[k]) for k, p in a.topk]
        print(f"{video.name}: boundaries {starts}, probabilities within {max(probs):.2e}")
        assert a.label == b.label and len(a.segments) == len(b.segments)
        assert all(abs(x - y) <= 1 for x, y in starts)
        assert max(probs) <= 2e-4
