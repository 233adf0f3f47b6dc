"""Broken and hostile model folders and export bundles (issue 24): every config field's type and
range, the safetensors header against the config before the model exists, finite floating
weights, no file reached through a symlink that leaves the folder, a 100,000-deep config. Each is
one line on stderr naming the file and the field, exit 1 (CLI), or one ModelError/BackendError
line (library)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from clips import synthetic_frames, write_clip
from conftest import run_cli, save_tiny_model
from safetensors.torch import load_file, save_file

from fvdeploy.bundle import check_weights_header, load_model, read_config
from fvdeploy.config import LIMITS, ModelConfig
from fvdeploy.errors import BackendError, ModelError


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("good") / "tiny", seed=5)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip") / "a.mp4", synthetic_frames(12, 32, 40, seed=1))


def variant(good: Path, tmp_path: Path, config=None, weights=None, raw: str | None = None) -> Path:
    """A copy of ``good`` with its config dict (or the raw text of config.json) and/or its state dict edited."""
    dst = tmp_path / "model"
    shutil.copytree(good, dst)
    if config is not None or raw is not None:
        cfg = json.loads((dst / "config.json").read_text())
        if config is not None:
            config(cfg)
        (dst / "config.json").write_text(raw(cfg) if callable(raw) else json.dumps(cfg))
    if weights is not None:
        state = load_file(str(dst / "model.safetensors"))
        save_file(weights(state), str(dst / "model.safetensors"))
    return dst


def set_in(*path_value):
    *path, value = path_value

    def edit(cfg):
        node = cfg
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def one_line_error(r, *needles: str) -> str:
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


CONFIG_FAULTS = {
    "mean NaN": (set_in("input", "mean", 0, math.nan), "input.mean[0]: must be a finite number"),
    "std NaN": (set_in("input", "std", 1, math.nan), "input.std[1]: must be a finite number"),
    "std infinite": (set_in("input", "std", 2, math.inf), "input.std[2]: must be a finite number"),
    "std 0": (set_in("input", "std", 0, 0.0), "input.std[0]: must be > 0"),
    "mean outside the pixel range": (set_in("input", "mean", 0, 300.0), "input.mean[0]: must be >= 0 and <= 1"),
    "mean of 2 values": (set_in("input", "mean", [0.5, 0.5]), "input.mean: must be a list of 3 numbers"),
    "mean as text": (set_in("input", "mean", "0.5"), "input.mean: must be a list of 3 numbers"),
    "num_clusters 10^9": (set_in("num_clusters", 1_000_000_000), "num_clusters: must be at most 1024"),
    "num_clusters as text": (set_in("num_clusters", "8"), "num_clusters: must be an integer"),
    "num_clusters true": (set_in("num_clusters", True), "num_clusters: must be an integer"),
    "segments negative": (set_in("segments", -1), "segments: must be at least 0"),
    "num_classes 0": (set_in("num_classes", 0), "num_classes: must be at least 1"),
    "num_classes 3.0": (set_in("num_classes", 3.0), "num_classes: must be an integer"),
    "labels as a string": (set_in("labels", "abc"), "labels: must be a list of 3 strings"),
    "labels not strings": (set_in("labels", [1, 2, 3]), "labels[0]: must be a string"),
    "labels too few": (set_in("labels", ["a", "b"]), "labels: config has num_classes=3 but 2 labels"),
    "crop beyond its bound": (
        lambda c: c["input"].update(crop=2048, shorter_side=2048),
        "input.crop: must be at most 1024",
    ),
    "shorter_side beyond its bound": (set_in("input", "shorter_side", 100_000), "input.shorter_side: must be at most"),
    "crop above shorter_side": (set_in("input", "crop", 64), "input.crop (64) must be at most shorter_side (32)"),
    "scale 2": (set_in("input", "scale", 2), "input.scale: must be 1 or 255"),
    "color": (set_in("input", "color", "yuv"), "input.color: must be one of rgb, bgr"),
    "antialias as text": (set_in("input", "antialias", "yes"), "input.antialias: must be true or false"),
    "dropout 1.5": (set_in("dropout", 1.5), "dropout: must be a number in [0, 1)"),
    "method": (set_in("method", "kmeans"), "method: must be one of"),
    "arch unknown": (set_in("arch", "vgg"), "arch: unknown 'vgg'"),
    "input not an object": (set_in("input", [1]), "input: must be a JSON object"),
    "trained not an object": (set_in("trained", "x"), "trained: must be a JSON object"),
    "unknown field": (set_in("colour", "rgb"), "unknown field(s): 'colour'"),
    "format_version": (set_in("format_version", 2), "format_version: unsupported 2"),
}


@pytest.mark.parametrize("fault", list(CONFIG_FAULTS))
def test_every_config_field_is_checked_and_named(good, tmp_path, fault):
    edit, message = CONFIG_FAULTS[fault]
    model = variant(good, tmp_path, config=edit)
    with pytest.raises(ModelError) as e:
        read_config(model)
    assert str(e.value).startswith(f"{model / 'config.json'}: ") and message in str(e.value)
    assert "\n" not in str(e.value)


def test_the_cli_says_it_in_one_line_exit_1(good, tmp_path, clip):
    model = variant(good, tmp_path, config=set_in("input", "mean", 0, math.nan))
    one_line_error(run_cli("classify", clip, "-m", model, "--json"), str(model / "config.json"), "input.mean[0]")


def test_upper_bounds_say_why():
    for name, (top, why) in LIMITS.items():
        assert top > 0 and len(why) > 20, name
    with pytest.raises(
        ModelError, match=r"num_classes: must be at most 100000, got 200000 \(the largest public label sets"
    ):
        ModelConfig(arch="tiny", num_classes=200_000, labels=["x"] * 200_000).validate()


def test_a_config_overridden_at_load_time_is_checked_too(good):
    from fvdeploy.runtime import Classifier
    from fvdeploy.runtime.options import OptionsError

    # refused as the option it is, before anything is built (the old keyword and the new one)
    for kwargs in ({"num_clusters": 1_000_000_000}, {"clusters": 1025}):
        with pytest.raises(OptionsError, match="clusters must be at most 1024"):
            Classifier.load(good, device="cpu", **kwargs)


def test_a_100000_deep_config_is_one_line_naming_the_file(good, tmp_path, clip):
    deep = "[" * 100_000 + "]" * 100_000
    model = variant(good, tmp_path, raw=lambda cfg: json.dumps(cfg)[:-1] + f', "trained": {deep}}}')
    line = one_line_error(run_cli("classify", clip, "-m", model), str(model / "config.json"), "nested too deep")
    assert "RecursionError" not in line


def test_a_config_nested_deeper_than_a_config_needs_is_refused(good, tmp_path):
    nested = "[" * 40 + "]" * 40  # parses, but nothing of ours is 40 levels deep
    model = variant(good, tmp_path, raw=lambda cfg: json.dumps(cfg)[:-1] + f', "trained": {{"x": {nested}}}}}')
    with pytest.raises(ModelError, match=r"config.json: nested more than 32 levels deep"):
        read_config(model)


def test_a_huge_config_is_refused_before_it_is_parsed(good, tmp_path):
    model = variant(good, tmp_path, raw=lambda cfg: json.dumps(cfg)[:-1] + ', "pad": "' + "x" * (17 << 20) + '"}')
    with pytest.raises(ModelError, match=r"config.json: \d+ bytes, more than the 16 MiB a config can need"):
        read_config(model)


# -- the weights --------------------------------------------------------------------------------
def _all(dtype):
    return lambda state: {k: v.to(dtype) for k, v in state.items()}


def _nan(state):
    return {k: (torch.full_like(v, math.nan) if v.is_floating_point() else v) for k, v in state.items()}


def _one_inf(state):
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key].view(-1)[0] = math.inf
    return state


def _bf16_one_nan(state):
    state = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in state.items()}
    state["fc.bias"][0] = math.nan
    return state


WEIGHT_FAULTS = {
    "int32": (_all(torch.int32), "is I32; it must be floating point (F16, BF16, F32, F64)"),
    "bool": (_all(torch.bool), "is BOOL; it must be floating point"),
    "all NaN": (_nan, "NaN or infinite value(s)"),
    "one infinity": (_one_inf, "holds 1 NaN or infinite value(s)"),
    "bf16 with one NaN": (_bf16_one_nan, "fc.bias holds 1 NaN or infinite value(s) of 3"),
    "counter as float": (
        lambda s: {k: (v.float() if k.endswith("num_batches_tracked") else v) for k, v in s.items()},
        "it must be an integer",
    ),
    "a tensor missing": (lambda s: {k: v for k, v in s.items() if k != "fc.bias"}, "weights lack 'fc.bias'"),
    "a tensor of another shape": (
        lambda s: {**s, "fc.weight": torch.zeros(5, s["fc.weight"].shape[1])},
        "fc.weight has shape (5, 32) but the config needs (3, 32)",
    ),
    "an extra tensor": (lambda s: {**s, "extra.weight": torch.zeros(2)}, "unexpected weight 'extra.weight'"),
}


@pytest.mark.parametrize("fault", list(WEIGHT_FAULTS))
def test_weights_are_floating_finite_and_what_the_config_says(good, tmp_path, fault):
    edit, message = WEIGHT_FAULTS[fault]
    model = variant(good, tmp_path, weights=edit)
    with pytest.raises(ModelError) as e:
        load_model(model)
    assert str(e.value).startswith(f"{model / 'model.safetensors'}: ") and message in str(e.value)


def test_the_header_is_checked_before_the_model_is_built(good, tmp_path, monkeypatch):
    """A config whose head would be 100,000 x 32 floats (the largest num_classes allowed) against
    3-class weights: refused from the header, and no model is built but on the meta device."""
    import fvdeploy.bundle as bundle

    cfg = read_config(good)
    cfg.num_classes, cfg.labels = 100_000, [f"c{i}" for i in range(100_000)]
    built = []
    real = bundle.create_model

    def spy(config, **kw):
        built.append(torch.empty(0).device.type)  # the device factory functions use now
        return real(config, **kw)

    monkeypatch.setattr(bundle, "create_model", spy)
    with pytest.raises(ModelError, match=r"fc.weight has shape \(3, 32\) but the config needs \(100000, 32\)"):
        check_weights_header(good, cfg)
    assert built == ["meta"]


def test_the_cli_names_the_weights_file(good, tmp_path, clip):
    model = variant(good, tmp_path, weights=_all(torch.int32))
    one_line_error(run_cli("classify", clip, "-m", model), str(model / "model.safetensors"), "I32")


# -- symlinks -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_a_file_linked_from_outside_the_folder_is_refused(good, tmp_path, clip, name):
    model = variant(good, tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.move(model / name, outside / name)
    (model / name).symlink_to(outside / name)
    line = one_line_error(run_cli("classify", clip, "-m", model), f"{model / name}: a symlink to {outside / name}")
    assert "outside the model folder" in line


def test_links_inside_the_folder_and_a_linked_folder_are_fine(good, tmp_path):
    model = variant(good, tmp_path)
    (model / "config.json").rename(model / "config.v1.json")
    (model / "config.json").symlink_to("config.v1.json")
    (tmp_path / "current").symlink_to(model, target_is_directory=True)
    assert load_model(tmp_path / "current").config.num_classes == 3


# -- export bundles -----------------------------------------------------------------------------------
@pytest.fixture
def bundle_dir(good, tmp_path):
    """A model folder with a hand-made export bundle (two small files, recorded sizes and hashes):
    what ``open_bundle`` reads before any ONNX file is parsed."""
    from fvdeploy.bundle import sha256_file, weights_hash

    model = variant(good, tmp_path)
    export = model / "export"
    export.mkdir()
    for name in ("frontend.onnx", "backend.onnx"):
        (export / name).write_bytes(name.encode() * 10)
    record = {
        "format": "fvdeploy-export",
        "format_version": 1,
        "config": json.loads((model / "config.json").read_text()),
        "files": {
            n: {"bytes": (export / n).stat().st_size, "sha256": sha256_file(export / n)}
            for n in ("frontend.onnx", "backend.onnx")
        },
        "shapes": {"feature_shape": [16, 8, 8], "halo": 2, "network_halo": 2},
        "source": {"weights_sha256": weights_hash(model)},
    }
    (export / "export.json").write_text(json.dumps(record))
    return model


def _edit_record(model: Path, edit=None, raw=None) -> Path:
    path = model / "export" / "export.json"
    rec = json.loads(path.read_text())
    if edit is not None:
        edit(rec)
    path.write_text(raw(rec) if raw is not None else json.dumps(rec))
    return path


def test_a_good_bundle_opens(bundle_dir):
    from fvdeploy.export_record import open_bundle

    assert open_bundle(bundle_dir).config.num_classes == 3


EXPORT_FAULTS = {
    "config std NaN": (set_in("config", "input", "std", 0, math.nan), "config.input.std[0]: must be a finite number"),
    "config clusters 10^9": (set_in("config", "num_clusters", 10**9), "config.num_clusters: must be at most 1024"),
    "config labels as a string": (set_in("config", "labels", "abc"), "config.labels: must be a list"),
    "config unknown field": (set_in("config", "x", 1), "config: unknown field(s): 'x'"),
    "a file name with ..": (
        lambda r: r["files"].update({"../config.json": {"bytes": 1, "sha256": "0" * 64}}),
        "'../config.json' is not a plain file name",
    ),
    "an absolute file name": (
        lambda r: r["files"].update({"/etc/hostname": {"bytes": 1, "sha256": "0" * 64}}),
        "is not a plain file name",
    ),
    "a size as text": (
        lambda r: r["files"]["frontend.onnx"].update(bytes="10"),
        "files.frontend.onnx.bytes: must be an integer",
    ),
    "a hash that is no sha256": (
        lambda r: r["files"]["frontend.onnx"].update(sha256="x"),
        "files.frontend.onnx.sha256: must be 64 lowercase hex digits",
    ),
    "feature shape": (set_in("shapes", "feature_shape", [16, 8]), "shapes.feature_shape: must be 3 positive"),
    "halo": (set_in("shapes", "halo", -1), "shapes.halo: must be an integer >= 0"),
    "no shapes": (lambda r: r.pop("shapes"), "incomplete export record (no 'shapes')"),
}


@pytest.mark.parametrize("fault", list(EXPORT_FAULTS))
def test_an_export_record_is_checked_field_by_field(bundle_dir, fault):
    from fvdeploy.export_record import open_bundle

    edit, message = EXPORT_FAULTS[fault]
    path = _edit_record(bundle_dir, edit)
    with pytest.raises(BackendError) as e:
        open_bundle(bundle_dir)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value) and "\n" not in str(e.value)


def test_a_100000_deep_export_record_is_one_line(bundle_dir, clip):
    deep = "[" * 100_000 + "]" * 100_000
    path = _edit_record(bundle_dir, raw=lambda rec: json.dumps(rec)[:-1] + f', "x": {deep}}}')
    one_line_error(
        run_cli("classify", clip, "-m", bundle_dir, "--backend", "onnxruntime"), str(path), "nested too deep"
    )


def test_bundle_files_linked_from_outside_are_refused(bundle_dir, tmp_path):
    from fvdeploy.export_record import open_bundle

    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.move(bundle_dir / "export" / "frontend.onnx", outside / "frontend.onnx")
    (bundle_dir / "export" / "frontend.onnx").symlink_to(outside / "frontend.onnx")
    with pytest.raises(BackendError, match=r"frontend.onnx: a symlink to .*outside the export bundle"):
        open_bundle(bundle_dir)
    # and the whole export/ folder linked in from elsewhere
    shutil.move(outside / "frontend.onnx", bundle_dir / "export" / "frontend.onnx.real")
    (bundle_dir / "export" / "frontend.onnx").unlink()
    (bundle_dir / "export" / "frontend.onnx.real").rename(bundle_dir / "export" / "frontend.onnx")
    shutil.move(bundle_dir / "export", outside / "export")
    (bundle_dir / "export").symlink_to(outside / "export", target_is_directory=True)
    with pytest.raises(BackendError, match=r"export: a symlink to .*outside the model folder"):
        open_bundle(bundle_dir)
