"""GPU checks (marker ``gpu``; skipped with a reason where CUDA is absent, failures under
FVDEPLOY_REQUIRE=gpu). fp32 comparisons turn TF32 off. The CPU suite runs the same code paths
(tests/test_parallel.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from clips import synthetic_frames, write_clip
from conftest import tiny_config
from typer.testing import CliRunner

from fvdeploy.bundle import save_model
from fvdeploy.config import InputSpec
from fvdeploy.io import preprocess, read_video
from fvdeploy.models import create_model
from fvdeploy.runtime import Classifier

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _no_tf32():
    if torch.cuda.is_available():
        old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        yield
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
    else:
        yield


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(4)
    path = tmp_path_factory.mktemp("m") / "r18"
    save_model(create_model(tiny_config(arch="resnet18", num_clusters=8, input=InputSpec(72, 64))).eval(), path)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return [write_clip(d / f"c{i}.mp4", synthetic_frames(40 + 31 * i, 72, 96, seed=10 + i)) for i in range(4)]


def boundaries(result):
    return [s.start_frame for s in result.segments]


def assert_close_results(a, b, prob_atol=2e-4):
    assert a.label == b.label
    assert all(abs(x - y) <= 1 for x, y in zip(boundaries(a), boundaries(b)))
    pa, pb = dict(a.topk), dict(b.topk)
    assert all(abs(pa[k] - pb[k]) <= prob_atol for k in pa if k in pb)


def test_cuda_equals_cpu_in_fp32(model_dir, clips, bigbuckbunny):
    cpu = Classifier.load(model_dir, device="cpu")
    gpu = Classifier.load(model_dir, device="cuda", precision="fp32", decoder="opencv")
    for clip in clips + [bigbuckbunny]:
        assert_close_results(cpu.classify(clip), gpu.classify(clip))


def test_fp16_keeps_top1(model_dir, clips):
    fp32 = Classifier.load(model_dir, device="cuda", precision="fp32", decoder="opencv")
    fp16 = Classifier.load(model_dir, device="cuda", precision="fp16", decoder="opencv")
    for clip in clips:
        a, b = fp32.classify(clip), fp16.classify(clip)
        assert a.label == b.label and b.run["precision"] == "fp16"


def test_gpu_preprocessing_equals_cpu_within_one_level(bigbuckbunny):
    frames = torch.from_numpy(read_video(bigbuckbunny)[:8])
    spec = InputSpec()
    cpu = preprocess(frames, spec, "bgr")
    gpu = preprocess(frames.cuda(), spec, "bgr").cpu()
    std = torch.tensor(spec.std)[:, None, None]
    assert ((cpu - gpu).abs() * std).max().item() <= 1 / 255 + 1e-6  # uint8 kernel vs float rounded


def test_nvdec_frames_match_opencv(model_dir, bigbuckbunny, tmp_path):
    from fvdeploy.io.nvdec import probe_nvdec
    from fvdeploy.io.sources import NvdecSource, OpenCVSource

    missing = probe_nvdec()
    if missing is not None:
        pytest.skip(f"NVDEC unavailable: {missing}")
    cv = np.concatenate([b.frames for b in OpenCVSource(str(bigbuckbunny)).batches(32)])[..., ::-1]  # BGR -> RGB
    nv = torch.cat([b.frames for b in NvdecSource(bigbuckbunny, 0).batches(32)]).cpu().numpy()
    assert nv.shape == cv.shape
    diff = np.abs(nv.astype(np.int16) - cv.astype(np.int16))
    print(f"nvdec vs opencv pixels: mean {diff.mean():.3f}, max {diff.max()}")
    assert diff.mean() < 3.0
    a = Classifier.load(model_dir, device="cuda", decoder="opencv").classify(bigbuckbunny)
    b = Classifier.load(model_dir, device="cuda", decoder="nvdec").classify(bigbuckbunny)
    assert b.run["decoder"] == "nvdec" and a.num_frames == b.num_frames and a.label == b.label
    assert all(abs(x - y) <= 1 for x, y in zip(boundaries(a), boundaries(b)))


def test_several_workers_give_the_same_jsonl(model_dir, clips, tmp_path):
    from fvdeploy.cli import app

    runner = CliRunner()
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    paths = [str(c) for c in clips]
    assert (
        runner.invoke(
            app, ["classify", *paths, "--model", str(model_dir), "--device", "cuda", "--quiet", "--output", str(one)]
        ).exit_code
        == 0
    )
    assert (
        runner.invoke(
            app, ["classify", *paths, "--model", str(model_dir), "--devices", "0,0", "--quiet", "--output", str(two)]
        ).exit_code
        == 0
    )

    def load(p):
        return [
            {k: v for k, v in json.loads(line).items() if k not in ("timings", "run")}
            for line in p.read_text().splitlines()
        ]

    assert load(one) == load(two)


def test_gpu_memory_is_bounded_in_t(model_dir, tmp_path):
    clf = Classifier.load(model_dir, device="cuda", max_memory_mib=64, decoder="opencv")
    growth = {}
    for t in (100, 1500):
        clip = write_clip(tmp_path / f"t{t}.mp4", np.tile(synthetic_frames(50, 72, 96), (t // 50, 1, 1, 1)))
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        assert clf.classify(clip).num_frames == t
        growth[t] = (torch.cuda.max_memory_allocated() - base) / 2**20
    assert max(growth.values()) <= 1.1 * 64, growth
