"""The benchmark commands run (their --quick sizes) and print their JSON contract last."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from clips import synthetic_frames, write_clip
from conftest import tiny_config
from fvdeploy.bundle import save_model
from fvdeploy.models import create_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "tiny"
    save_model(create_model(tiny_config()).eval(), path)
    return path


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_bench_memory_quick(model_dir):
    r = subprocess.run([sys.executable, "-m", "fvdeploy", "bench", "memory", "--quick", "--device", "cpu",
                        "--model", str(model_dir)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = last_json(r.stdout)
    assert set(out) == {"budget_mib", "growth_mib", "extra_decoded_frames", "ok"}
    assert out["budget_mib"] == 256 and list(out["growth_mib"]) == ["100", "1000", "3000"]
    assert all(0 < g <= 1.1 * 256 for g in out["growth_mib"].values()) and out["ok"] is True


def test_bench_throughput(model_dir, tmp_path):
    clip = write_clip(tmp_path / "c.mp4", synthetic_frames(80, 48, 64))
    r = subprocess.run([sys.executable, "-m", "fvdeploy", "bench", "throughput", str(clip), "--device", "cpu",
                        "--model", str(model_dir)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = last_json(r.stdout)
    assert out["frames"] == 80 and out["decode_fps"] > 0 and out["end_to_end_fps"] > 0
    assert out["ratio"] == pytest.approx(out["end_to_end_fps"] / out["decode_fps"], rel=0.01)


def test_bench_bad_inputs_are_one_line_errors(model_dir, tmp_path):
    r = subprocess.run([sys.executable, "-m", "fvdeploy", "bench", "throughput", str(tmp_path / "none.mp4"),
                        "--model", str(model_dir)], capture_output=True, text=True)
    assert r.returncode == 1 and "no such file" in r.stderr and "Traceback" not in r.stderr
    if not torch.cuda.is_available():
        r = subprocess.run([sys.executable, "-m", "fvdeploy", "bench", "memory", "--quick", "--device", "cuda",
                            "--model", str(model_dir)], capture_output=True, text=True)
        assert r.returncode == 1 and "CUDA is not available" in r.stderr
