"""The model folder: round trip, atomic writes, and one-line errors for each bad case."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import run_cli, tiny_config

from fvdeploy.bundle import load_model, save_model
from fvdeploy.errors import ModelError
from fvdeploy.models import create_model


@pytest.fixture
def saved(tmp_path):
    model = create_model(tiny_config()).eval()
    save_model(model, tmp_path / "m")
    return model, tmp_path / "m"


def test_round_trip_gives_identical_logits(saved):
    model, path = saved
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_model(path)
    assert loaded.config == model.config
    frames = torch.randn(1, 9, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(frames).logits, loaded(frames).logits)


def test_fp16_weights_load_as_fp32(tmp_path):
    model = create_model(tiny_config()).eval()
    save_model(model, tmp_path / "h", dtype=torch.float16)
    loaded = load_model(tmp_path / "h")
    assert loaded.fc.weight.dtype == torch.float32
    torch.testing.assert_close(loaded.fc.weight, model.fc.weight.half().float())


def test_save_refuses_to_overwrite_and_keeps_other_content(saved):
    model, path = saved
    with pytest.raises(ModelError, match="already exists"):
        save_model(model, path)
    (path / "export").mkdir()
    (path / "export" / "model.onnx").write_bytes(b"x")
    save_model(model, path, overwrite=True)
    assert (path / "export" / "model.onnx").read_bytes() == b"x"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


def _corrupt(path, case):
    cfg = json.loads((path / "config.json").read_text())
    if case == "missing folder":
        return path.parent / "nope"
    if case == "no config":
        (path / "config.json").unlink()
    elif case == "no weights":
        (path / "model.safetensors").unlink()
    elif case == "bad json":
        (path / "config.json").write_text("{not json")
    elif case == "unknown arch":
        (path / "config.json").write_text(json.dumps({**cfg, "arch": "vgg99"}))
    elif case == "corrupt weights":
        (path / "model.safetensors").write_bytes(b"\x00\x01garbage" * 10)
    elif case == "truncated weights":
        data = (path / "model.safetensors").read_bytes()
        (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif case == "mismatch":
        (path / "config.json").write_text(json.dumps({**cfg, "num_classes": 5, "labels": list("abcde")}))
    elif case == "unknown field":
        (path / "config.json").write_text(json.dumps({**cfg, "bogus": 1}))
    elif case == "labels count":
        (path / "config.json").write_text(json.dumps({**cfg, "labels": ["a"]}))
    return path


CASES = {
    "missing folder": "model not found",
    "no config": "no config.json",
    "no weights": "no model.safetensors",
    "bad json": "not valid JSON",
    "unknown arch": "config.json: arch: unknown 'vgg99'",
    "corrupt weights": "corrupt safetensors",
    "truncated weights": "corrupt safetensors",
    "mismatch": "config/weights mismatch",
    "unknown field": "unknown field",
    "labels count": "num_classes=3 but 1 labels",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_model_folders_give_one_line_errors(saved, case):
    path = _corrupt(saved[1], case)
    with pytest.raises(ModelError) as e:
        load_model(path)
    assert CASES[case] in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("case", ["corrupt weights", "mismatch"])
def test_cli_info_on_bad_model_is_one_line_exit_1(saved, case):
    path = _corrupt(saved[1], case)
    r = run_cli("info", path)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and CASES[case] in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_info_prints_the_config(saved):
    # the info family's real-process smoke test (python -m fvdeploy)
    r = subprocess.run(
        [sys.executable, "-m", "fvdeploy", "info", str(saved[1]), "--json"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    assert cfg["arch"] == "tiny" and cfg["num_clusters"] == 4 and cfg["labels"] == ["a", "b", "c"]
    r = run_cli("info", saved[1])
    assert r.returncode == 0 and "cumulative" in r.stdout and "crop 32" in r.stdout


def test_imagenet_weights_load_from_a_local_torchvision_file(tmp_path):
    from torchvision.models import resnet18

    from fvdeploy.models import load_imagenet_weights

    ref = resnet18()
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    model = create_model(tiny_config(arch="resnet18"), imagenet_weights=tmp_path / "r18.pth")
    assert torch.equal(model.layer3[1].conv2.weight, ref.layer3[1].conv2.weight)
    with pytest.raises(ModelError, match="layer1.0.conv1.weight has shape"):
        load_imagenet_weights(create_model(tiny_config(arch="resnet50")), tmp_path / "r18.pth")
