"""``--backend openvino``: real OpenVINO sessions on a real export bundle (whole graph and split
pair), the same parity rules as ONNX Runtime, devices named and checked, one-line errors."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch
from clips import synthetic_frames, write_clip
from conftest import save_tiny_model

from fvdeploy.backends import BACKENDS
from fvdeploy.backends.openvino_backend import OPENVINO_INSTALL, openvino_device
from fvdeploy.errors import BackendError
from fvdeploy.export import Exporter, ExportOptions
from fvdeploy.export.onnx import example_frames
from fvdeploy.export.parity import compare_network, compare_results, torch_reference
from fvdeploy.runtime import Classifier

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(
    not HAS_OPENVINO, reason="needs the openvino package (pip install 'fvdeploy[openvino]'; make setup installs it)"
)


def test_openvino_is_a_registered_backend():
    assert "openvino" in BACKENDS


def test_devices_are_named_never_guessed():
    assert openvino_device("cpu", ["CPU"]) == "CPU" and openvino_device("auto", ["CPU", "GPU"]) == "CPU"
    for device, match in (
        ("cuda", "OpenVINO has no CUDA devices.*has CPU, GPU.*--device cpu"),
        ("cuda:1", "OpenVINO has no CUDA devices"),
        ("tpu", "unknown device 'tpu'.*has CPU, GPU"),
    ):
        with pytest.raises(BackendError, match=match) as e:
            openvino_device(device, ["CPU", "GPU"])
        assert "\n" not in str(e.value)
    with pytest.raises(BackendError, match="no CPU device.*it has NPU"):
        openvino_device("cpu", ["NPU"])


def test_missing_package_names_the_extra(bundle):
    """A Python where ``import openvino`` fails: one line naming the extra (a subprocess, so the
    import can be blocked without touching this process's modules)."""
    code = (
        "import sys; sys.modules['openvino'] = None\n"
        "from fvdeploy.runtime import Classifier\n"
        "from fvdeploy.errors import FvdeployError\n"
        "try:\n    Classifier.load(sys.argv[1], device='cpu', backend='openvino')\n"
        "except FvdeployError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(bundle[0])], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines == [f"backend openvino needs the openvino package: {OPENVINO_INSTALL}"]
    assert "openvino extra" in lines[0]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("ov")
    model_dir = save_tiny_model(root / "model", seed=6, num_clusters=5, method="slope")
    clip = write_clip(root / "clip.mp4", synthetic_frames(70, 40, 52, seed=4, cut_every=13))
    Exporter(model_dir, ExportOptions(clip=clip))()
    return model_dir, clip


@needs_openvino
def test_whole_graph_on_openvino_matches_pytorch(bundle):
    from fvdeploy.backends.openvino_backend import OpenVinoWholeGraph
    from fvdeploy.bundle import load_model

    model_dir, _ = bundle
    model = load_model(model_dir)
    whole = OpenVinoWholeGraph(model_dir / "export" / "model.onnx", device="cpu")
    for t in (3, 17, 40):  # shorter than G, and longer: one graph for any length
        frames, lengths = example_frames(model.config, n=2, t=t, seed=t)
        check = compare_network(f"T={t}", torch_reference(model, frames, lengths), whole(frames, lengths))
        assert check.passed, check.detail
        assert check.figures["ids_differing"] == 0  # ids exact where both run the op on the same input


@needs_openvino
def test_split_pair_on_openvino_equals_torch_and_onnxruntime_end_to_end(bundle):
    model_dir, clip = bundle
    results = {
        b: Classifier.load(model_dir, device="cpu", backend=b).classify(str(clip))
        for b in ("torch", "onnxruntime", "openvino")
    }
    got = results["openvino"]
    assert (
        got.run["backend"] == "openvino"
        and got.run["provider"].startswith("OpenVINO")
        and got.run["provider"].endswith("CPU")
    )
    for ref in ("torch", "onnxruntime"):
        check = compare_results(f"openvino vs {ref}", results[ref], got)
        assert check.passed, check.detail
    # any length: far beyond the chunk size, through the halo streaming, in bounded memory
    long_clip = write_clip(model_dir.parent / "long.mp4", synthetic_frames(400, 40, 52, seed=8, cut_every=29))
    ref = Classifier.load(model_dir, device="cpu", chunk_size=64).classify(str(long_clip))
    got = Classifier.load(model_dir, device="cpu", backend="openvino", chunk_size=64).classify(str(long_clip))
    check = compare_results("openvino vs torch, 400 frames in chunks of 64", ref, got)
    assert check.passed, check.detail


@needs_openvino
def test_openvino_runs_fp32_and_refuses_what_it_cannot(bundle):
    from fvdeploy.backends.openvino_backend import OpenVinoBackend

    model_dir, _ = bundle
    backend = OpenVinoBackend.open(model_dir, device="cpu")
    # the CPU plugin's default hint is bf16 on CPUs that have it; fp32 is asked for explicitly
    assert str(backend.frontend.compiled.get_property("INFERENCE_PRECISION_HINT")) in ("<Type: 'float32'>", "f32")
    assert backend.device == torch.device("cpu") and backend.precision == "fp32"
    with pytest.raises(BackendError, match="runs fp32, bf16 or int8; not --precision fp16"):
        OpenVinoBackend.open(model_dir, device="cpu", precision="fp16")
    with pytest.raises(BackendError, match="no int8 graphs.*--int8 --calibrate"):
        OpenVinoBackend.open(model_dir, device="cpu", precision="int8")
    with pytest.raises(BackendError, match="OpenVINO has no CUDA devices.*CPU") as e:
        OpenVinoBackend.open(model_dir, device="cuda:0")
    assert "\n" not in str(e.value)
    with pytest.raises(BackendError, match="no export bundle"):
        OpenVinoBackend.open(model_dir.parent / "nowhere", device="cpu")
    feats = backend.frame_features(torch.randn(7, 3, 32, 32))
    assert feats.shape == (7, *backend.feature_shape) and feats.dtype == torch.float32
    assert np.isfinite(backend.clip_logits(feats[None, :5]).numpy()).all()


@needs_openvino
def test_corrupt_graph_is_one_line(bundle, tmp_path):
    import shutil

    from fvdeploy.backends.openvino_backend import OpenVinoWholeGraph

    bad = tmp_path / "model.onnx"
    shutil.copy(bundle[0] / "export" / "model.onnx", bad)
    bad.write_bytes(bad.read_bytes()[:1000])
    with pytest.raises(BackendError, match="OpenVINO cannot load it") as e:
        OpenVinoWholeGraph(bad, device="cpu")
    assert "\n" not in str(e.value)
