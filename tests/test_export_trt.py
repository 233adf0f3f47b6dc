"""TensorRT engines (`fvdeploy export --trt`) and the tensorrt backend, wherever TensorRT and a GPU
exist (skipped with the reason elsewhere; FVDEPLOY_REQUIRE=gpu,tensorrt makes a skip a failure)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from clips import synthetic_frames, write_clip
from conftest import tiny_config

from fvdeploy.bundle import save_model
from fvdeploy.errors import BackendError, ExportError
from fvdeploy.export import Exporter, ExportOptions
from fvdeploy.export.parity import cluster_starts, torch_reference
from fvdeploy.models import create_model
from fvdeploy.runtime import Classifier

pytestmark = [pytest.mark.gpu, pytest.mark.tensorrt]
S = 32


@pytest.fixture(autouse=True)
def _no_tf32():
    """fp32 references on CUDA without TF32 (docs/design.md#equality)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clips") / "clip2000.mp4", synthetic_frames(2000, S, S, seed=5))


@pytest.fixture(scope="module")
def trt_model(tmp_path_factory):
    torch.manual_seed(6)
    model_dir = save_model(
        create_model(tiny_config(num_clusters=8, method="cumulative")).eval(), tmp_path_factory.mktemp("trt") / "model"
    )
    Exporter(model_dir, ExportOptions(formats=("onnx", "trt"), max_frames=512))()
    return model_dir


def test_engines_and_their_record(trt_model):
    import tensorrt

    export_dir = trt_model / "export"
    for graph in ("model", "frontend", "backend"):
        assert (export_dir / f"{graph}.fp32.engine").stat().st_size > 0
    assert (export_dir / "timing.cache").is_file()
    record = json.loads((export_dir / "export.json").read_text())
    trt = record["tensorrt"]
    major, minor = torch.cuda.get_device_capability(0)
    assert trt["version"] == tensorrt.__version__ and trt["gpu"] == {
        "name": torch.cuda.get_device_name(0),
        "capability": f"{major}.{minor}",
    }
    assert trt["engines"]["fp32"]["frontend"] == "frontend.fp32.engine"
    assert record["tools"]["tensorrt"] == tensorrt.__version__
    assert all(c["passed"] for c in record["validation"]) and len(record["validation"]) == 6


def test_tensorrt_backend_matches_torch_on_2000_frames(trt_model, long_clip):
    ref = Classifier.load(trt_model, device="cuda", backend="torch", precision="fp32").classify(long_clip)
    clf = Classifier.load(trt_model, device="cuda", backend="tensorrt", precision="fp32")
    assert clf.run_info["backend"] == "tensorrt" and clf.run_info["provider"].startswith("TensorRT")
    for chunk in (None, 300):  # 300: above the frontend engine's profile, split with halos inside the backend
        clf.engine.chunk_size = chunk
        got = clf.classify(long_clip)
        assert got.label == ref.label and got.num_frames == 2000
        shifts = [abs(a.start_frame - b.start_frame) for a, b in zip(ref.segments, got.segments)]
        assert len(got.segments) == 8 and max(shifts) <= 1
        assert max(abs(a - b) for (_, a), (_, b) in zip(ref.topk, got.topk)) <= 1e-3


def test_whole_graph_engine_matches_pytorch(trt_model):
    from fvdeploy.backends.trt_backend import TrtWholeGraph
    from fvdeploy.bundle import load_model

    device = torch.device("cuda:0")
    model = load_model(trt_model).to(device)
    whole = TrtWholeGraph(trt_model / "export" / "model.fp32.engine", device)
    for t in (1, 7, 8, 37, 300):
        frames = torch.from_numpy(synthetic_frames(t, S, S, seed=t, cut_every=11))[None].to(device)
        lengths = torch.tensor([t], device=device)
        ref = torch_reference(model, frames, lengths)
        logits, cluster_logits, ids = whole(frames, lengths.to(torch.int32))
        torch.testing.assert_close(logits, ref[0], rtol=1e-3, atol=1e-4)
        starts, got = cluster_starts(ref[2][0].cpu().numpy()), cluster_starts(ids[0].cpu().numpy())
        assert len(got) == 8 and max(abs(a - b) for a, b in zip(starts, got)) <= 1, t


def test_fp16_engines_keep_top1_and_boundaries(trt_model, long_clip, tmp_path):
    out = tmp_path / "fp16"
    Exporter(trt_model, ExportOptions(formats=("trt",), precision="fp16", out=out))()
    ref = Classifier.load(trt_model, device="cuda", backend="torch", precision="fp32").classify(long_clip)
    got = Classifier.load(out, device="cuda", backend="tensorrt").classify(long_clip)  # default: the fp16 engines
    assert got.run["precision"] == "fp16" and got.label == ref.label
    assert max(abs(a.start_frame - b.start_frame) for a, b in zip(ref.segments, got.segments)) <= 1


def test_a_recorded_platform_mismatch_is_refused(trt_model, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(trt_model, copy)
    record = json.loads((copy / "export" / "export.json").read_text())
    record["tensorrt"]["version"] = "9.0.0"
    (copy / "export" / "export.json").write_text(json.dumps(record))
    with pytest.raises(BackendError, match=r"rebuild with `fvdeploy export --trt`"):
        Classifier.load(copy, device="cuda", backend="tensorrt", precision="fp32")


def test_max_frames_above_the_int32_bound_is_refused_before_writing(tmp_path):
    model_dir = save_model(create_model(tiny_config()).eval(), tmp_path / "m")
    with pytest.raises(ExportError, match="fits int32"):
        Exporter(model_dir, ExportOptions(formats=("trt",), max_frames=10**8))()
    assert not (model_dir / "export").exists()
