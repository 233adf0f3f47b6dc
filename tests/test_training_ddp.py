"""DDP as users run it: ``torchrun`` with 2 CPU processes (gloo); both ranks end with identical
weights, and the saved model is those weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from fvdeploy.bundle import load_model
from fvdeploy.training.loop import state_hash
from fvdeploy.training.move4 import Move4Spec, write_move4


def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    data = write_move4(tmp_path / "data", train=12, test=4, spec=Move4Spec(frames=10, size=32), seed=5)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "fvdeploy",
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--arch",
        "tiny",
        "--clusters",
        "4",
        "--frames",
        "10",
        "--size",
        "32",
        "--shorter-side",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "3",
        "--lr",
        "0.05",
        "--workers",
        "0",
        "--device",
        "cpu",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    hashes = summary["rank_weights_sha256"]
    assert len(hashes) == 2 and hashes[0] == hashes[1]
    assert state_hash(load_model(out / "last")) == hashes[0]
    # 12 videos over 2 ranks of batch 3: two steps per rank per epoch, one log row per epoch.
    assert summary["epochs_done"] == 2 and len((out / "log.csv").read_text().splitlines()) == 3
