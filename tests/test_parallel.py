"""The throughput paths exercised on the CPU: decode workers, one worker process per device,
precision flags. The same code runs on GPUs (tests/test_gpu.py)."""

from __future__ import annotations

import json

import pytest
import torch
from clips import synthetic_frames, write_clip
from conftest import save_tiny_model
from typer.testing import CliRunner

from fvdeploy.cli import app
from fvdeploy.errors import BackendError
from fvdeploy.runtime import Classifier
from fvdeploy.runtime.workers import parse_devices

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("m") / "tiny", seed=3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    for i in range(6):
        write_clip(d / f"v{i}.mp4", synthetic_frames(20 + 7 * i, 32, 40, seed=i))
    (d / "v3_bad.mp4").write_text("broken")
    return d


def comparable(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k not in ("timings", "run")}


def test_decode_workers_change_nothing_but_speed(model_dir, folder):
    paths = sorted(str(p) for p in folder.glob("*.mp4"))
    clf = Classifier.load(model_dir, device="cpu")
    one = [comparable(r.to_dict()) for r in clf.classify_many(paths, decode_workers=1)]
    three = [comparable(r.to_dict()) for r in clf.classify_many(paths, decode_workers=3)]
    assert one == three
    assert [r["error"] is not None for r in one] == ["bad" in p for p in paths]
    # the CUDA default: the open videos also compute at once, each in its own thread
    clf.concurrent_finish = True
    threaded = [comparable(r.to_dict()) for r in clf.classify_many(paths, decode_workers=3)]
    assert threaded == one


def test_concurrent_videos_share_the_budget_and_stop_early(model_dir, folder):
    paths = sorted(str(p) for p in folder.glob("v[0-2].mp4")) * 3
    clf = Classifier.load(model_dir, device="cpu", max_memory_mib=64, decode_workers=3, concurrent_finish=True)
    assert clf.plan(1000, parallel=3, share=3).budget == 64 * 2**20 // 3
    stream = clf.classify_many(paths)
    first = next(stream)
    stream.close()  # stops decoding and computing what the caller no longer reads
    assert first.error is None and first.path == paths[0]


def test_worker_processes_give_the_same_jsonl_as_one_process(model_dir, folder, tmp_path):
    single, multi = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    r1 = runner.invoke(app, ["classify", str(folder), "--model", str(model_dir), "--output", str(single), "--quiet"])
    r2 = runner.invoke(
        app,
        ["classify", str(folder), "--model", str(model_dir), "--output", str(multi), "--quiet", "--devices", "cpu,cpu"],
    )
    assert r1.exit_code == r2.exit_code == 1  # the broken file
    a = [comparable(json.loads(line)) for line in single.read_text().splitlines()]
    b = [comparable(json.loads(line)) for line in multi.read_text().splitlines()]
    assert a == b and len(a) == 7


def test_a_crashing_worker_fails_only_its_file(model_dir, folder, monkeypatch):
    from fvdeploy.runtime.workers import classify_on_devices

    monkeypatch.setenv("FVDEPLOY_TEST_WORKER_CRASH_ON", "v2.mp4")
    paths = sorted(str(p) for p in folder.glob("v[0-9].mp4"))
    results = list(classify_on_devices(paths, ["cpu", "cpu"], {"model": str(model_dir)}))
    assert [r.path for r in results] == paths
    crashed = [r for r in results if r.error and "died" in r.error]
    assert len(crashed) == 1 and crashed[0].path.endswith("v2.mp4") and "exit code 3" in crashed[0].error
    assert all(r.error is None for r in results if r is not crashed[0])


def test_device_lists():
    assert parse_devices("cpu,cpu") == ["cpu", "cpu"]
    assert parse_devices("0,1") == ["cuda:0", "cuda:1"]
    with pytest.raises(ValueError):
        parse_devices("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="no CUDA device"):
            parse_devices("all")


def test_precision_flags_on_cpu(model_dir, folder):
    clip = folder / "v1.mp4"
    fp32 = Classifier.load(model_dir, device="cpu").classify(clip)
    bf16 = Classifier.load(model_dir, device="cpu", precision="bf16").classify(clip)
    mixed = Classifier.load(model_dir, device="cpu", precision="bf16", features_precision="fp32").classify(clip)
    assert bf16.run["precision"] == "bf16" and fp32.num_frames == bf16.num_frames == mixed.num_frames
    # features in fp32: the clustering reads the same signs as the fp32 model, whatever the rest does
    assert [(s.start_frame, s.end_frame) for s in mixed.segments] == [
        (s.start_frame, s.end_frame) for s in fp32.segments
    ]
    with pytest.raises(BackendError, match="fp16 needs a CUDA device"):
        Classifier.load(model_dir, device="cpu", precision="fp16")


def test_nvdec_without_a_gpu_is_a_one_line_error(model_dir, folder):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = runner.invoke(app, ["classify", str(folder / "v1.mp4"), "--model", str(model_dir), "--decoder", "nvdec"])
    assert r.exit_code == 1 and "--decoder nvdec" in r.stderr and r.stderr.count("\n") == 1
    # auto never fails for lack of NVDEC: it says which decoder ran
    r = runner.invoke(
        app, ["classify", str(folder / "v1.mp4"), "--model", str(model_dir), "--decoder", "auto", "--json"]
    )
    assert r.exit_code == 0 and json.loads(r.stdout)["run"]["decoder"] == "opencv"
