"""The engine under classify and watch: one memory model (by the precision stem + layer1 run in),
decoded frames inside the budget, per-request options on one loaded model."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import run_cli, save_tiny_model

from fvdeploy.engine.plan import FrameCosts, decode_bytes, frame_costs, plan_video


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("m") / "tiny", seed=5)


def test_frame_costs_follow_the_precision_of_stem_and_layer1():
    fp32, bf16 = frame_costs((64, 56, 56), 224, "fp32"), frame_costs((64, 56, 56), 224, "bf16")
    assert fp32.feature == 4 * 64 * 56 * 56 and bf16.feature == fp32.feature // 2
    assert bf16.work * 2 == fp32.work and fp32.crop == bf16.crop == 3 * 224 * 224


def test_the_engine_sizes_features_by_features_precision(model_dir):
    """With --precision bf16 and --features-precision fp32, stem + layer1 run (and cost) fp32."""
    from fvdeploy.runtime import Classifier

    both = Classifier.load(model_dir, device="cpu", precision="bf16", features_precision="fp32").engine
    low = Classifier.load(model_dir, device="cpu", precision="bf16").engine
    assert both.costs.work == 2 * low.costs.work and both.costs.feature == 2 * low.costs.feature


def test_decoded_frames_are_inside_the_plan():
    costs = FrameCosts(feature=1000, work=10_000, crop=3 * 32 * 32)
    frame = 3 * 1920 * 1080
    plan = plan_video(64 * 2**20, costs, halo=2, frame_bytes=frame, shrunk=True)
    decoding = decode_bytes(frame, costs, plan.decode_frames, plan.queue, True)
    # verbatim maps + decoding + the working set stay inside the budget
    assert plan.store_bytes + decoding + int(0.2 * plan.budget) <= plan.budget
    big = plan_video(64 * 2**20, costs, halo=2, frame_bytes=3 * 4096 * 2160, shrunk=False)
    assert big.decode_frames == 1 and big.store_bytes < plan.store_bytes  # big frames take from the store


def test_a_frame_that_cannot_fit_the_budget_is_one_line(model_dir, tmp_path):
    """A tiny file of big frames must not decode into gigabytes within --max-memory 16."""
    path = tmp_path / "big frames.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (2048, 2048))
    for _ in range(3):
        writer.write(np.zeros((2048, 2048, 3), np.uint8))
    writer.release()
    r = run_cli("classify", path, "--model", model_dir, "--device", "cpu", "--max-memory", 16)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and "2048x2048" in line and "12.0 MiB" in line and "--max-memory 16" in line
    r = run_cli("watch", path, "--model", model_dir, "--device", "cpu", "--max-memory", 16, "--json")
    assert r.returncode == 1 and "2048x2048" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("classify", path, "--model", model_dir, "--device", "cpu", "--max-memory", 64, "--json")
    assert r.returncode == 0, r.stderr  # within a budget that holds it, the same file runs


def test_per_request_options_share_the_loaded_model(model_dir):
    from fvdeploy.runtime import Classifier
    from fvdeploy.runtime.options import OptionsError

    clf = Classifier.load(model_dir, device="cpu")
    other = clf.with_options(clusters=2, method="uniform", top_k=1)
    assert other.backend is clf.backend and other.engine.costs == clf.engine.costs
    assert (other.config.num_clusters, other.config.method, other.topk) == (2, "uniform", 1)
    assert (clf.config.num_clusters, clf.topk) == (4, 5)  # the loaded classifier is unchanged
    frames = np.random.default_rng(0).integers(0, 255, (12, 32, 32, 3), dtype=np.uint8)
    r = other.classify(frames)
    assert len(r.segments) == 2 and len(r.topk) == 1
    with pytest.raises(OptionsError, match="fixed when the model is loaded"):
        clf.with_options(device="cuda")
    with pytest.raises(OptionsError, match="top_k must be >= 1"):
        clf.with_options(top_k=0)
