"""Low precision on the CPU and ``--backend auto``: bf16 (torch, OpenVINO), int8 graphs made by
``fvdeploy export --int8 --calibrate DIR`` (NNCF) and run by OpenVINO and ONNX Runtime, and the
measured rule that ``auto`` follows. Agreement figures over many videos are ``fvdeploy bench
precision``'s (the report); here: that each path runs, says what ran, and errs in one line."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from clips import synthetic_frames, write_clip
from conftest import run_cli, save_tiny_model

from fvdeploy.backends import BACKENDS, PRECISIONS, choose_backend
from fvdeploy.backends.base import native_bf16
from fvdeploy.backends.names import PRECISION_NAMES
from fvdeploy.errors import BackendError
from fvdeploy.runtime import Classifier

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
HAS_NNCF = importlib.util.find_spec("nncf") is not None
needs_nncf = pytest.mark.skipif(not HAS_NNCF, reason="needs the nncf package (pip install 'fvdeploy[int8]')")
CPU = torch.device("cpu")


def test_names_tables():
    assert BACKENDS[0] == "auto" and "int8" in PRECISION_NAMES and set(PRECISIONS) == set(PRECISION_NAMES)
    assert isinstance(native_bf16(), bool)


def test_the_auto_rule_on_the_cpu_and_elsewhere(tmp_path):
    for precision in (None, "fp32", "bf16"):
        chosen = choose_backend(CPU, None, precision)
        assert chosen.backend == "torch" and chosen.precision == precision and "cpu" in chosen.reason
    assert choose_backend(torch.device("cuda", 0)).backend == "torch"
    if HAS_OPENVINO:
        model_dir = save_tiny_model(tmp_path / "m", seed=1)
        with pytest.raises(BackendError, match="no export bundle; make one with `fvdeploy export --int8") as e:
            choose_backend(CPU, model_dir, "int8")
        assert "\n" not in str(e.value)
        assert choose_backend(CPU, None, "int8").backend == "openvino"


def test_the_default_backend_is_auto_and_says_what_ran(tmp_path):
    model_dir = save_tiny_model(tmp_path / "m", seed=2)
    clip = write_clip(tmp_path / "c.mp4", synthetic_frames(20, 40, 52, seed=1))
    clf = Classifier.load(model_dir, device="cpu")
    r = clf.classify(str(clip))
    assert r.run["backend"] == "torch" and r.run["precision"] == "fp32" and clf.backend.choice.startswith("cpu fp32")
    named = Classifier.load(model_dir, device="cpu", backend="torch")
    assert named.backend.choice == "" and named.classify(str(clip)).segments == r.segments


def test_int8_is_refused_where_it_cannot_run(tmp_path):
    from fvdeploy.backends.torch_backend import TorchBackend
    from fvdeploy.bundle import load_model

    model_dir = save_tiny_model(tmp_path / "m", seed=3)
    with pytest.raises(BackendError, match="int8 runs an export bundle's quantized graphs"):
        TorchBackend(load_model(model_dir), CPU, "int8")
    from fvdeploy.backends.base import resolve_precision

    with pytest.raises(BackendError, match="int8 runs on the CPU"):
        resolve_precision("int8", torch.device("cuda", 0))
    r = run_cli("export", str(model_dir), "--int8")
    assert r.returncode == 1 and "--int8 needs --calibrate DIR" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.skipif(not native_bf16(), reason="this CPU has no native bf16 (avx512_bf16/amx_bf16)")
def test_bf16_on_torch_keeps_the_labels_of_a_clip(tmp_path):
    model_dir = save_tiny_model(tmp_path / "m", seed=4)
    clip = write_clip(tmp_path / "c.mp4", synthetic_frames(40, 40, 52, seed=2, cut_every=9))
    ref = Classifier.load(model_dir, device="cpu").classify(str(clip))
    low = Classifier.load(model_dir, device="cpu", precision="bf16").classify(str(clip))
    assert low.run["backend"] == "torch" and low.run["precision"] == "bf16"
    assert len(low.segments) == len(ref.segments)


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    model_dir = save_tiny_model(root / "model", seed=6, num_clusters=4)
    calib = root / "calib"
    calib.mkdir()
    for i in range(3):
        write_clip(calib / f"v{i}.mp4", synthetic_frames(24, 40, 52, seed=10 + i, cut_every=7))
    clip = write_clip(root / "clip.mp4", synthetic_frames(50, 40, 52, seed=4, cut_every=13))
    r = run_cli("export", str(model_dir), "--int8", "--calibrate", str(calib), "--clip", str(clip), "-q")
    assert r.returncode == 0, r.stderr
    return model_dir, clip


@needs_nncf
def test_export_int8_records_and_verifies_the_quantized_pair(int8_bundle):
    from fvdeploy.export_record import open_bundle

    model_dir, _ = int8_bundle
    record = json.loads((model_dir / "export" / "export.json").read_text())
    assert record["precision"]["int8"] == "int8" and record["int8"]["tool"].startswith("nncf ")
    assert record["int8"]["calibration"]["videos"] == 3 and record["int8"]["calibration"]["frames"] == 72
    files = open_bundle(model_dir).int8()
    assert files == {"frontend": "frontend.int8.onnx", "backend": "backend.int8.onnx"}
    assert all(name in record["files"] for name in files.values())  # sizes and hashes checked on open
    import onnx

    graph = onnx.load(str(model_dir / "export" / files["backend"])).graph
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)


@needs_nncf
@pytest.mark.parametrize("backend", ["openvino", "onnxruntime", "auto"])
def test_int8_runs_on_the_bundle_backends(int8_bundle, backend):
    if backend in ("openvino", "auto") and not HAS_OPENVINO:
        pytest.skip("needs the openvino package")
    model_dir, clip = int8_bundle
    ref = Classifier.load(model_dir, device="cpu").classify(str(clip))
    clf = Classifier.load(model_dir, device="cpu", backend=backend, precision="int8")
    got = clf.classify(str(clip))
    assert got.run["precision"] == "int8" and got.run["backend"] == (backend if backend != "auto" else "openvino")
    # the measured rule (runtime.classifier.FEATURES_PRECISION_RULE): the clustering reads fp32 maps
    assert clf.backend.features_precision == "fp32"
    assert [s.start_frame for s in got.segments] == [s.start_frame for s in ref.segments]
    low = Classifier.load(model_dir, device="cpu", backend=backend, precision="int8", features_precision="int8")
    assert low.backend.features_precision == "int8"
    out = low.classify(str(clip))
    assert len(out.segments) == len(ref.segments) and out.num_frames == ref.num_frames
