"""`fvdeploy export` and the onnxruntime backend: the bundle, the record, every bad case (one line,
exit code, nothing written), an imported checkpoint end to end (a real ResNet-18 under ``slow``; a
tiny model with an import's config by default), and the benchmark's smoke size."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from clips import synthetic_frames, write_clip
from conftest import tiny_config
from typer.testing import CliRunner

from fvdeploy.backends.ort_backend import provider_plan
from fvdeploy.backends.trt_backend import TrtPlatform, choose_precision, verify_platform
from fvdeploy.bundle import save_model
from fvdeploy.cli import app
from fvdeploy.errors import BackendError, ExportError
from fvdeploy.export import Exporter, ExportOptions, open_bundle
from fvdeploy.export.onnx import WHOLE_IO, check_file
from fvdeploy.models import create_model
from fvdeploy.runtime import Classifier

ort = pytest.importorskip("onnxruntime")
runner = CliRunner()
HAS_TRT = importlib.util.find_spec("tensorrt") is not None
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, code=1, match=None):
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(("error:", "usage error:")), result.output
    assert "Traceback" not in result.output
    if match:
        assert match in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its bytes: what 'nothing written / nothing changed' compares."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.rglob(".*tmp-*")]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clips") / "clip 120.mp4", synthetic_frames(120, 40, 52, seed=9))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, clip):
    """A tiny model (a space in its path) exported once through the CLI."""
    torch.manual_seed(4)
    model_dir = save_model(
        create_model(tiny_config(num_clusters=6, method="slope")).eval(), tmp_path_factory.mktemp("exp") / "tiny model"
    )
    result = run("export", model_dir, "--clip", clip, "--max-frames", 300)
    assert result.exit_code == 0, result.output
    return model_dir, result


@pytest.fixture
def fresh_model(tmp_path):
    torch.manual_seed(5)
    return save_model(create_model(tiny_config()).eval(), tmp_path / "model")


def test_bundle_files_and_record(exported):
    model_dir, result = exported
    export_dir = model_dir / "export"
    assert str(export_dir) in result.output
    assert {p.name for p in export_dir.iterdir()} == {
        "model.onnx",
        "frontend.onnx",
        "backend.onnx",
        "weights.bin",
        "export.json",
    }
    assert (export_dir.stat().st_mode & 0o755) == 0o755  # readable like any folder, not mkdtemp's 0700
    record = json.loads((export_dir / "export.json").read_text())
    assert record["opset"] == 17 and record["precision"] == {"onnx": "fp32", "tensorrt": None, "int8": None}
    assert record["int8"] is None  # no --int8
    assert record["profile"] == {"min_frames": 1, "opt_frames": 64, "max_frames": 300, "max_batch": 1}
    assert record["config"]["num_clusters"] == 6 and record["config"]["method"] == "slope"
    assert record["shapes"] == {"crop": 32, "feature_shape": [16, 8, 8], "halo": 2, "network_halo": 5}
    assert record["limits"]["int32_max_frames"] == (2**31 - 1) // (16 * 8 * 8 + 1)
    from fvdeploy.bundle import weights_hash

    assert record["source"]["weights_sha256"] == weights_hash(model_dir)
    assert record["tools"]["onnxruntime"] == ort.__version__ and record["tools"]["torch"] == torch.__version__
    assert record["tensorrt"] is None
    assert set(record["files"]) == {"model.onnx", "frontend.onnx", "backend.onnx", "weights.bin"}
    checks = record["validation"]
    assert len(checks) == (6 if HAS_OPENVINO else 4) and all(c["passed"] for c in checks)
    assert record["tools"]["openvino"] == (importlib.metadata.version("openvino") if HAS_OPENVINO else None)
    assert any("real clip" in c["name"] and c["figures"]["ids_differing"] == 0 for c in checks)
    io = record["graphs"]["model.onnx"]
    assert io["inputs"]["frames"] == {"dtype": "UINT8", "shape": ["batch", "frames", 32, 32, 3]}
    assert io["outputs"]["cluster_logits"]["shape"] == ["batch", 6, 3]
    assert io["inputs"]["lengths"]["dtype"] == "INT64" and io["outputs"]["cluster_ids"]["dtype"] == "INT64"
    assert record["graphs"]["frontend.onnx"]["outputs"]["distances"]["dtype"] == "INT32"
    assert "saved as model.onnx" in result.output and "MB" in result.output


def test_graphs_share_one_copy_of_the_folded_weights_and_name_their_dimensions(exported):
    import onnx

    from fvdeploy.bundle import load_model
    from fvdeploy.export.onnx import DYNAMIC_DIMS, inline_bytes
    from fvdeploy.models.inference import fold_batchnorm

    model_dir, _ = exported
    export_dir = model_dir / "export"
    folded = fold_batchnorm(load_model(model_dir))
    weight_bytes = sum(p.numel() * p.element_size() for p in folded.parameters())
    data = (export_dir / "weights.bin").stat().st_size
    assert 0.9 * weight_bytes <= data <= 1.1 * weight_bytes  # every weight once (the graphs used to hold them twice)
    for name in ("model.onnx", "frontend.onnx", "backend.onnx"):
        graph = onnx.load(str(export_dir / name), load_external_data=False)
        assert "BatchNormalization" not in {n.op_type for n in graph.graph.node}, name
        assert inline_bytes(export_dir / name) < 0.05 * weight_bytes, name  # only shapes and small constants inside
        external = [t for t in graph.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
        assert external and {e.value for t in external for e in t.external_data if e.key == "location"} == {
            "weights.bin"
        }
        for value in [*graph.graph.input, *graph.graph.output]:
            for dim in value.type.tensor_type.shape.dim:  # a named dynamic dimension or a number, nothing generated
                assert dim.dim_param in DYNAMIC_DIMS or (not dim.dim_param and dim.dim_value > 0), (
                    name,
                    value.name,
                    dim,
                )
    record = json.loads((export_dir / "export.json").read_text())
    assert record["graphs"]["frontend.onnx"]["outputs"]["features"]["shape"] == ["frames", 16, 8, 8]
    assert record["graphs"]["frontend.onnx"]["outputs"]["distances"]["shape"] == ["frame_pairs"]
    assert record["graphs"]["backend.onnx"]["inputs"]["maps"]["shape"] == ["batch", "clusters", 16, 8, 8]
    assert record["external_data"]["file"] == "weights.bin"


def test_fp16_checkpoint_is_stored_at_half_size_and_gives_the_same_bits(tmp_path, clip):
    """A checkpoint saved in fp16 (as the bundled model is): the bundle stores its weights in fp16
    and the BatchNorm scales in fp32 (Cast + Mul, folded by the runtime at load), at about the
    checkpoint's size, and the outputs are bit for bit those of the fp32 folded graph."""
    import numpy as np
    import onnx

    from fvdeploy.bundle import load_model
    from fvdeploy.export.onnx import example_frames, export_whole
    from fvdeploy.models.inference import conv_bn_pairs

    torch.manual_seed(8)
    model_dir = save_model(create_model(tiny_config()).eval(), tmp_path / "half", dtype=torch.float16)
    Exporter(model_dir, ExportOptions(clip=clip))()
    export_dir = model_dir / "export"
    checkpoint = (model_dir / "model.safetensors").stat().st_size
    assert (export_dir / "weights.bin").stat().st_size <= 1.1 * checkpoint  # (the tiny graphs' own structure is not)
    graph = onnx.load(str(export_dir / "model.onnx"), load_external_data=False)
    ops = [n.op_type for n in graph.graph.node]
    folds = [n for n in graph.graph.node if n.op_type == "Mul" and n.name.endswith(".fold")]
    assert "BatchNormalization" not in ops and len(folds) == len(conv_bn_pairs(load_model(model_dir)))
    plain = export_whole(load_model(model_dir), tmp_path / "fp32.onnx", 17)  # weights inline, in fp32
    frames, lengths = example_frames(load_model(model_dir).config, n=2, t=11, seed=2)
    feeds = {"frames": frames.numpy(), "lengths": lengths.numpy()}
    got, ref = (
        ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, feeds)
        for p in (export_dir / "model.onnx", plain)
    )
    assert all(np.array_equal(a, b) for a, b in zip(got, ref))


@pytest.mark.slow
def test_bundled_model_exports_to_about_its_checkpoint_size(tmp_path):
    from fvdeploy.bundle import resolve_model_path

    result = run("export", "--out", tmp_path / "default")
    assert result.exit_code == 0, result.output
    checkpoint = (resolve_model_path(None) / "model.safetensors").stat().st_size  # 22 MB, fp16
    bundle = sum(p.stat().st_size for p in (tmp_path / "default" / "export").iterdir() if p.name != "export.json")
    assert bundle <= 1.1 * checkpoint, (bundle, checkpoint)


def test_classify_with_onnxruntime_equals_torch(exported, clip):
    model_dir, _ = exported
    results = {}
    for backend in ("torch", "onnxruntime"):
        out = run("classify", clip, "-m", model_dir, "--backend", backend, "--device", "cpu", "--json")
        assert out.exit_code == 0, out.output
        results[backend] = json.loads(out.output.strip().splitlines()[-1])
    t, o = results["torch"], results["onnxruntime"]
    assert o["run"]["backend"] == "onnxruntime" and o["run"]["provider"] == "CPUExecutionProvider"
    assert o["label"] == t["label"] and len(o["segments"]) == 6
    for a, b in zip(t["segments"], o["segments"]):
        assert abs(a["start_frame"] - b["start_frame"]) <= 1 and abs(a["score"] - b["score"]) <= 1e-4
    for (la, sa), (lb, sb) in zip(t["topk"], o["topk"]):
        assert la == lb and abs(sa - sb) <= 1e-4


def test_device_auto_picks_and_names_the_provider(exported):
    model_dir, _ = exported
    clf = Classifier.load(model_dir, device="auto", backend="onnxruntime")
    first = next(
        p
        for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
        if p in ort.get_available_providers()
    )
    assert clf.run_info["provider"] == first  # here: CPUExecutionProvider, named in every result's run
    assert clf.backend.precision == "fp32" and clf.backend.device.type == (
        "cpu" if first == "CPUExecutionProvider" else "cuda"
    )


def test_provider_requests_are_checked_not_assumed():
    assert [
        p
        for p, _ in provider_plan(
            "auto", ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]
        )
    ] == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert provider_plan("cuda:1", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        ("CUDAExecutionProvider", {"device_id": 1})
    ]
    with pytest.raises(BackendError, match="no CUDAExecutionProvider.*onnxruntime-gpu") as e:
        provider_plan("cuda", ["CPUExecutionProvider"])
    assert "\n" not in str(e.value)
    with pytest.raises(BackendError, match="unknown device"):
        provider_plan("tpu", ["CPUExecutionProvider"])


# -- bad cases ---------------------------------------------------------------------------------------
def test_unknown_format(fresh_model):
    with pytest.raises(ExportError, match="unknown export format 'tflite'; choose from onnx, int8, trt"):
        Exporter(fresh_model, ExportOptions(formats=("tflite",)))()
    one_line_error(
        run("export", fresh_model, "--format", "tflite"),
        match="unknown export format 'tflite'; choose from onnx, int8, trt",
    )
    usage = run("export", fresh_model, "--tflite")
    assert usage.exit_code == 2 and "No such option: --tflite" in usage.output
    assert not (fresh_model / "export").exists()


def test_options_that_do_not_apply_or_disagree(fresh_model):
    before = snapshot(fresh_model.parent)
    one_line_error(run("export", fresh_model, "--fp16"), match="applies to TensorRT (--trt)")
    one_line_error(run("export", fresh_model, "--fp16", "--precision", "bf16"), match="disagree")
    one_line_error(run("export", fresh_model, "--workspace", 2), match="--workspace 2.0 applies to TensorRT (--trt)")
    one_line_error(run("export", fresh_model, "--opset", 9), match="--opset 9 is not supported")
    one_line_error(
        run("export", fresh_model, "--min-frames", 50, "--max-frames", 20), match="--min-frames <= --opt-frames"
    )
    one_line_error(run("export", fresh_model.parent / "absent"), match="model not found")
    assert snapshot(fresh_model.parent) == before


def test_unwritable_out_dir(fresh_model, tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder\n")
    before = snapshot(tmp_path)
    one_line_error(run("export", fresh_model, "--out", blocker / "bundle"), match="cannot write")
    assert snapshot(tmp_path) == before and no_temporaries(tmp_path)


def test_existing_bundle_is_refused_unless_force(exported, tmp_path):
    model_dir, _ = exported
    before = snapshot(model_dir)
    one_line_error(run("export", model_dir), match="already exists (an export bundle); pass --force")
    assert snapshot(model_dir) == before
    # --out: a new model folder; an existing one only with --force, and never a folder that is not a model
    out = tmp_path / "copy"
    assert run("export", model_dir, "--out", out).exit_code == 0
    assert (
        (out / "config.json").is_file()
        and (out / "model.safetensors").is_file()
        and (out / "export" / "model.onnx").is_file()
    )
    first = json.loads((out / "export" / "export.json").read_text())["created"]
    one_line_error(run("export", model_dir, "--out", out), match="already exists; pass --force")
    assert run("export", model_dir, "--out", out, "--force").exit_code == 0
    assert Classifier.load(out, device="cpu", backend="onnxruntime").backend.name == "onnxruntime"
    assert json.loads((out / "export" / "export.json").read_text())["created"] >= first
    user = tmp_path / "user files"
    user.mkdir()
    (user / "notes.txt").write_text("mine\n")
    one_line_error(run("export", model_dir, "--out", user, "--force"), match="not a model folder")
    assert (user / "notes.txt").read_text() == "mine\n" and no_temporaries(tmp_path)


def test_force_replaces_the_bundle_in_place(fresh_model):
    assert run("export", fresh_model).exit_code == 0
    old = (fresh_model / "export" / "export.json").read_text()
    assert run("export", fresh_model, "--force", "--max-frames", 100).exit_code == 0
    new = json.loads((fresh_model / "export" / "export.json").read_text())
    assert new["profile"]["max_frames"] == 100 and json.loads(old)["profile"]["max_frames"] == 256
    assert no_temporaries(fresh_model)


def test_failed_validation_leaves_nothing_behind(fresh_model, monkeypatch):
    from fvdeploy.export import exporter
    from fvdeploy.export.parity import Check

    real = exporter.compare_results

    def wrong(name, ref, got, precision="fp32"):  # the split pair disagreeing with PyTorch
        check = real(name, ref, got, precision)
        return Check(check.name, False, "top-1 b vs a", check.figures)

    monkeypatch.setattr(exporter, "compare_results", wrong)
    before = snapshot(fresh_model)
    with pytest.raises(ExportError, match="validation failed, nothing written: split pair"):
        Exporter(fresh_model, ExportOptions())()
    assert snapshot(fresh_model) == before and not (fresh_model / "export").exists() and no_temporaries(fresh_model)


def test_missing_and_stale_bundles_name_the_fix(fresh_model, clip):
    message = one_line_error(run("classify", clip, "-m", fresh_model, "--backend", "onnxruntime", "--device", "cpu"))
    assert "no export bundle" in message and "fvdeploy export" in message
    assert run("export", fresh_model).exit_code == 0
    torch.manual_seed(99)  # retrained weights: the bundle no longer describes the model folder
    save_model(create_model(tiny_config()).eval(), fresh_model, overwrite=True)
    message = one_line_error(run("classify", clip, "-m", fresh_model, "--backend", "onnxruntime", "--device", "cpu"))
    assert "exported from other weights" in message and "fvdeploy export" in message


def test_corrupt_onnx(exported, tmp_path, clip):
    model_dir, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    frontend = copy / "export" / "frontend.onnx"
    data = frontend.read_bytes()
    frontend.write_bytes(data[: len(data) // 3])
    message = one_line_error(run("classify", clip, "-m", copy, "--backend", "onnxruntime", "--device", "cpu"))
    assert "frontend.onnx" in message and "truncated" in message
    # the record hand-edited to match the damaged file: ONNX Runtime's own refusal, still one line
    record = json.loads((copy / "export" / "export.json").read_text())
    from fvdeploy.export_record import file_entry

    record["files"]["frontend.onnx"] = file_entry(frontend)
    (copy / "export" / "export.json").write_text(json.dumps(record))
    message = one_line_error(run("classify", clip, "-m", copy, "--backend", "onnxruntime", "--device", "cpu"))
    assert "ONNX Runtime cannot load it" in message
    with pytest.raises(ExportError, match="model.onnx"):
        bad = tmp_path / "model.onnx"
        bad.write_bytes(b"\x08\x07garbage")
        check_file(bad, WHOLE_IO)
    (copy / "export" / "export.json").write_text("{not json")
    one_line_error(run("classify", clip, "-m", copy, "--backend", "onnxruntime"), match="not a readable export record")


def test_onnxruntime_refuses_reduced_precision(exported):
    model_dir, _ = exported
    from fvdeploy.backends.ort_backend import OrtBackend

    with pytest.raises(BackendError, match="fp32 or int8 ONNX files; use --precision fp32 or int8"):
        OrtBackend.open(model_dir, device="cpu", precision="fp16")


def _fake_engines(
    model_dir: Path, dest: Path, version="10.0.0.6", gpu="NVIDIA A100-SXM4-80GB", capability="8.0"
) -> Path:
    """A copy of the bundle whose record claims fp16 engines built elsewhere (a hand-edited record)."""
    shutil.copytree(model_dir, dest)
    from fvdeploy.export_record import file_entry

    record = json.loads((dest / "export" / "export.json").read_text())
    engines = {}
    for graph in ("model", "frontend", "backend"):
        path = dest / "export" / f"{graph}.fp16.engine"
        path.write_bytes(b"not deserialized: the record is checked first")
        record["files"][path.name] = file_entry(path)
        engines[graph] = path.name
    record["tensorrt"] = {
        "version": version,
        "gpu": {"name": gpu, "capability": capability},
        "engines": {"fp16": engines},
    }
    (dest / "export" / "export.json").write_text(json.dumps(record))
    return dest


def test_engine_record_mismatch_is_refused_before_deserializing(exported, tmp_path):
    model_dir, _ = exported
    bundle = open_bundle(_fake_engines(model_dir, tmp_path / "m"))
    recorded = TrtPlatform.from_record(bundle.record["tensorrt"])
    assert recorded == TrtPlatform("10.0.0.6", "NVIDIA A100-SXM4-80GB", "8.0")
    verify_platform(recorded, TrtPlatform("10.0.0.6", "NVIDIA A100-SXM4-80GB", "8.0"), bundle.dir)  # same: accepted
    for current in (
        TrtPlatform("10.13.0.35", "NVIDIA A100-SXM4-80GB", "8.0"),  # another TensorRT
        TrtPlatform("10.0.0.6", "NVIDIA H100 80GB HBM3", "9.0"),
    ):  # another GPU
        with pytest.raises(BackendError, match=r"rebuild with `fvdeploy export --trt`") as e:
            verify_platform(recorded, current, bundle.dir)
        assert "\n" not in str(e.value) and recorded.describe() in str(e.value) and current.describe() in str(e.value)
    assert choose_precision(bundle.engines(), None, bundle.dir) == "fp16"
    with pytest.raises(BackendError, match="no fp32 TensorRT engines.*--precision fp16"):
        choose_precision(bundle.engines(), "fp32", bundle.dir)
    with pytest.raises(BackendError, match="no TensorRT engines; build them with `fvdeploy export MODEL --trt`"):
        choose_precision({}, None, bundle.dir)


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed here: the missing-TensorRT messages cannot be shown")
def test_trt_without_tensorrt_says_what_to_install(fresh_model, clip, tmp_path):
    before = snapshot(fresh_model.parent)
    message = one_line_error(run("export", fresh_model, "--trt"))
    assert "pip install tensorrt" in message and "nothing was written" in message
    one_line_error(run("export", fresh_model, "--trt", "--out", tmp_path / "new"), match="pip install tensorrt")
    assert snapshot(fresh_model.parent) == before and not (tmp_path / "new").exists()
    message = one_line_error(run("classify", clip, "-m", fresh_model, "--backend", "tensorrt"))
    assert "backend tensorrt needs the tensorrt package" in message


# -- an imported published checkpoint, exported and classified ---------------------------------------
def test_a_model_as_an_import_writes_it_exports_and_classifies_in_both_modes(tmp_path, clip):
    """The default run's version of the next test (a real ResNet-18 import, under slow): the tiny
    model with the config an import of an official TSM file writes (TSM mode, K = 4, the official
    input normalisation, the source file's sha256): the record names the source checkpoint, and
    ONNX Runtime on the split pair gives PyTorch's results in TSM mode and in full mode."""
    import hashlib

    from fvdeploy.config import InputSpec
    from fvdeploy.importers.layouts import TSM_INPUT

    digest = hashlib.sha256(b"TSM_kinetics_RGB_resnet18_shift8_blockres_avg_segment4_e50.pth").hexdigest()
    config = tiny_config(
        mode="tsm",
        segments=4,
        num_clusters=4,
        input=InputSpec(**{**vars(TSM_INPUT), "shorter_side": 32, "crop": 32}),
        trained={"source_sha256": digest, "source_layout": "tsm", "source_segments": 4},
    )
    torch.manual_seed(6)
    model_dir = save_model(create_model(config).eval(), tmp_path / "imported")
    result = run("export", model_dir, "--clip", clip)
    assert result.exit_code == 0, result.output
    record = json.loads((model_dir / "export" / "export.json").read_text())
    assert record["source"]["checkpoint_sha256"] == digest
    assert record["config"]["mode"] == "tsm" and record["config"]["segments"] == 4
    for mode in ({}, {"mode": "full", "num_clusters": 4}):  # TSM sampling, and the full-video method
        ref = Classifier.load(model_dir, device="cpu", **mode).classify(clip)
        got = Classifier.load(model_dir, device="cpu", backend="onnxruntime", **mode).classify(clip)
        assert got.run["backend"] == "onnxruntime" and got.run["mode"] == ref.run["mode"] == (mode.get("mode") or "tsm")
        assert got.label == ref.label and len(got.segments) == 4
        assert [s.start_frame for s in got.segments] == [s.start_frame for s in ref.segments]
        assert max(abs(a - b) for (_, a), (_, b) in zip(ref.topk, got.topk)) <= 1e-4


@pytest.mark.slow
def test_imported_checkpoint_exports_and_classifies(tmp_path, clip):
    """A real ResNet-18 (45 MB of fp32 weights) imported, exported and run: under slow."""
    import test_import_checkpoint as published  # its builders of official-TSM-layout files

    from fvdeploy.bundle import read_config
    from fvdeploy.config import InputSpec

    path, _ = published.official_checkpoint(tmp_path, "resnet18", 400, 4)
    model_dir = tmp_path / "imported"
    assert run("import-checkpoint", path, "--out", model_dir).exit_code == 0
    cfg = read_config(model_dir)
    assert (cfg.arch, cfg.mode, cfg.segments) == ("resnet18", "tsm", 4)
    small = cfg.replace(input=InputSpec(shorter_side=64, crop=64, mean=cfg.input.mean, std=cfg.input.std))
    (model_dir / "config.json").write_text(json.dumps(small.to_dict(), indent=2))  # the same weights at 64 px
    result = run("export", model_dir, "--clip", clip)
    assert result.exit_code == 0, result.output
    record = json.loads((model_dir / "export" / "export.json").read_text())
    assert record["source"]["checkpoint_sha256"] == cfg.trained["source_sha256"]
    # a real-size network (ResNet-18): the bundle is its fp32 weights once, plus graphs of a few hundred kB
    from fvdeploy.bundle import load_model
    from fvdeploy.models.inference import fold_batchnorm

    weight_bytes = sum(p.numel() * p.element_size() for p in fold_batchnorm(load_model(model_dir)).parameters())
    bundle_bytes = sum(p.stat().st_size for p in (model_dir / "export").iterdir() if p.name != "export.json")
    assert bundle_bytes <= 1.1 * weight_bytes, (bundle_bytes, weight_bytes)
    assert bundle_bytes <= 1.1 * (model_dir / "model.safetensors").stat().st_size
    for mode in ({}, {"mode": "full", "num_clusters": 4}):  # TSM sampling, and the full-video method
        ref = Classifier.load(model_dir, device="cpu", **mode).classify(clip)
        got = Classifier.load(model_dir, device="cpu", backend="onnxruntime", **mode).classify(clip)
        assert got.label == ref.label and len(got.segments) == 4
        assert [s.start_frame for s in got.segments] == [s.start_frame for s in ref.segments]
        assert max(abs(a - b) for (_, a), (_, b) in zip(ref.topk, got.topk)) <= 1e-4


# -- the benchmark's smoke size --------------------------------------------------------------------------
def test_bench_onnx_quick(exported):
    model_dir, _ = exported
    result = run("bench", "onnx", "-m", model_dir, "--quick")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    assert out["frames"] == 48 and out["onnxruntime"]["provider"] == "CPUExecutionProvider"
    assert out["ratio"]["model_only"] > 0 and out["ratio"]["end_to_end"] > 0 and out["same_top1"]
    sides = ["torch", "onnxruntime"] + (["openvino"] if HAS_OPENVINO else [])
    assert out["backends"] == sides
    for side in sides:
        assert out[side]["model_fps"] > 0 and out[side]["end_to_end_fps"] > 0
    for side in sides[1:]:
        parity = out["parity"][side]
        assert parity["passed"] and parity["same_top1"] and parity["max_boundary_shift"] <= 1
        assert parity["model_only_logits_max_abs"] <= 1e-3 and out["ratios"][side]["model_only"] > 0
    one_line_error(
        run("bench", "onnx", "-m", model_dir, "--quick", "--backends", "torch,tensorrt"), match="not 'tensorrt'"
    )
