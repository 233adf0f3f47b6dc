"""The benchmark commands run (their --quick sizes) and print their JSON contract last."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from clips import synthetic_frames, write_clip
from conftest import run_cli, tiny_config

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
    # the bench family's real-process smoke test (python -m fvdeploy)
    r = subprocess.run(
        [sys.executable, "-m", "fvdeploy", "bench", "memory", "--quick", "--device", "cpu", "--model", str(model_dir)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    out = last_json(r.stdout)
    assert set(out) == {"budget_mib", "growth_mib", "extra_decoded_frames", "ok"}
    assert out["budget_mib"] == 256 and list(out["growth_mib"]) == ["100", "1000", "3000"]
    assert all(0 < g <= 1.1 * 256 for g in out["growth_mib"].values()) and out["ok"] is True


def test_bench_throughput(model_dir, tmp_path):
    clip = write_clip(tmp_path / "c.mp4", synthetic_frames(80, 48, 64))
    r = run_cli("bench", "throughput", clip, "--device", "cpu", "--model", model_dir, "--repeats", "2")
    assert r.returncode == 0, r.stderr
    out = last_json(r.stdout)
    assert out["frames"] == 80 and out["decode_fps"] > 0 and out["end_to_end_fps"] > 0
    assert len(out["runs"]) == 2 and out["decode_fps"] == max(run["decode_fps"] for run in out["runs"])
    assert out["resize"] == "decode thread"
    assert out["ratio"] == pytest.approx(out["end_to_end_fps"] / out["decode_fps"], rel=0.01, abs=1e-3)


def test_bench_bad_inputs_are_one_line_errors(model_dir, tmp_path):
    r = run_cli("bench", "throughput", tmp_path / "none.mp4", "--model", model_dir)
    assert r.returncode == 1 and "no such file" in r.stderr and "Traceback" not in r.stderr
    if not torch.cuda.is_available():
        r = run_cli("bench", "memory", "--quick", "--device", "cuda", "--model", model_dir)
        assert r.returncode == 1 and "CUDA is not available" in r.stderr


@pytest.mark.parametrize("blocks", [[], ["--block-frames", "5"]])  # --quick's 64 px takes chunks whole by default
def test_bench_model_quick(model_dir, blocks):
    from typer.testing import CliRunner

    from fvdeploy.cli import app

    r = CliRunner().invoke(app, ["bench", "model", "--quick", "--device", "cpu", *blocks])
    assert r.exit_code == 0, r.output
    out = last_json(r.stdout)
    assert out["block_frames"] == int(blocks[1]) if blocks else out["block_frames"] >= 16  # 16: --quick's chunk
    assert out["threads"] >= 1
    assert out["frames"] == 48 and out["full_fps"] > 0 and out["tsm_all_fps"] > 0 and out["plain_images_per_s"] > 0
    assert out["speedup_vs_tsm_all"] == pytest.approx(out["full_fps"] / out["tsm_all_fps"], rel=0.05)
    assert out["stem_layer1_s"] > 0 and out["full_s"] > 0 and out["tsm_all_s"] > 0


def test_bench_corpus_and_precision(model_dir, tmp_path):
    from typer.testing import CliRunner

    from fvdeploy.cli import app

    for i in range(3):
        write_clip(tmp_path / f"v{i}.mp4", synthetic_frames(30 + 5 * i, 32, 40, seed=i))
    runner = CliRunner()
    r = runner.invoke(
        app, ["bench", "corpus", str(tmp_path), "--model", str(model_dir), "--device", "cpu", "--decode-workers", "2"]
    )
    assert r.exit_code == 0, r.output
    out = last_json(r.stdout)
    assert out["videos"] == 3 and out["failed"] == 0 and out["frames"] == 30 + 35 + 40 and out["decoder"] == ["opencv"]
    assert out["gpu_util_percent"] is None  # the one sampler reports percent, and nothing on a CPU device
    r = runner.invoke(
        app, ["bench", "precision", str(tmp_path), "--model", str(model_dir), "--device", "cpu", "--precision", "bf16"]
    )
    assert r.exit_code == 0, r.output
    out = last_json(r.stdout)
    assert out["videos"] == 3 and 0 <= out["boundaries_within_1"] <= 1 and isinstance(out["rule_ok"], bool)
