"""``Exporter``: one entry point, a format table, one method per format, each reported.

    from fvdeploy.export import Exporter, ExportOptions
    result = Exporter("runs/my_model", ExportOptions(formats=("onnx", "trt"), precision="fp16"))()

Writes ``MODEL/export/`` (or a new model folder ``--out DIR`` holding config, weights and
``export/``) through a temporary sibling folder that is renamed into place only after every file
passed its checks: a failed or interrupted export leaves nothing behind, and an existing bundle is
replaced only with ``force``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

import fvdeploy
from fvdeploy.backends.names import PRECISION_NAMES
from fvdeploy.bundle import CONFIG_NAME, WEIGHTS_NAME, load_model, replace_dir, weights_hash
from fvdeploy.errors import ExportError, FvdeployError
from fvdeploy.export_record import (
    EXPORT_DIR,
    ONNX_FILES,
    RECORD_FORMAT,
    RECORD_NAME,
    RECORD_VERSION,
    engine_name,
    file_entry,
    open_bundle,
)

from . import onnx as onnx_export
from .graphs import int32_max_frames
from .parity import Check, compare_network, compare_results, torch_reference, uint8_crops

log = logging.getLogger("fvdeploy.export")

PRECISIONS = tuple(p for p in PRECISION_NAMES if p != "int8")  # TensorRT's; int8 is --int8 (NNCF, CPU)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEFAULT_FRAMES = (1, 64, 256)  # the whole graph's T profile: min, opt, max
TIMING_CACHE = "timing.cache"


@dataclass(frozen=True)
class FormatSpec:
    """One row of the format table (Ultralytics' ``export_formats``)."""

    name: str
    flag: str
    files: str
    cpu: bool
    gpu: bool
    options: frozenset[str]  # ExportOptions fields that only this format reads


FORMATS: dict[str, FormatSpec] = {
    "onnx": FormatSpec(
        "ONNX", "--onnx", "model.onnx, frontend.onnx, backend.onnx", cpu=True, gpu=True, options=frozenset()
    ),
    "int8": FormatSpec(
        "int8 (NNCF)",
        "--int8",
        "frontend.int8.onnx, backend.int8.onnx",
        cpu=True,
        gpu=False,
        options=frozenset({"calibrate", "calibration_videos", "calibration_frames"}),
    ),
    "trt": FormatSpec(
        "TensorRT",
        "--trt",
        "model/frontend/backend.<precision>.engine",
        cpu=False,
        gpu=True,
        options=frozenset({"precision", "workspace_gib", "device"}),
    ),
}


def export_formats() -> list[dict]:
    return [
        {"format": k, "name": v.name, "flag": v.flag, "files": v.files, "cpu": v.cpu, "gpu": v.gpu}
        for k, v in FORMATS.items()
    ]


@dataclass
class ExportOptions:
    formats: tuple[str, ...] = ("onnx",)
    precision: str = "fp32"  # of the TensorRT engines; the ONNX files are always fp32
    opset: int = onnx_export.DEFAULT_OPSET
    min_frames: int = DEFAULT_FRAMES[0]
    opt_frames: int | None = None  # default: 64 clamped into [min, max]
    max_frames: int = DEFAULT_FRAMES[2]
    max_batch: int = 1
    out: Path | None = None
    force: bool = False
    clip: Path | None = None  # the real clip for validation; default: bundled, else one written here
    device: str = "cuda"  # where TensorRT engines are built and checked
    workspace_gib: float = 4.0
    calibrate: Path | None = None  # the folder of videos the int8 format calibrates on
    calibration_videos: int = 100
    calibration_frames: int = 64  # the first frames of each calibration video

    def validate(self) -> None:
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown:
            raise ExportError(f"unknown export format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
        if not self.formats:
            raise ExportError(f"no export format; choose from {', '.join(FORMATS)}")
        if self.precision not in PRECISIONS:
            raise ExportError(f"unknown precision {self.precision!r}; choose {', '.join(PRECISIONS)}")
        for fmt, spec in FORMATS.items():  # an option of a format that is not exported is an error
            for name in sorted(spec.options):
                default = ExportOptions.__dataclass_fields__[name].default
                if getattr(self, name) != default and fmt not in self.formats:
                    why = (
                        "the ONNX files are fp32 and ONNX Runtime runs them in fp32"
                        if name == "precision"
                        else "add the flag or drop the option"
                    )
                    raise ExportError(
                        f"--{name.split('_')[0]} {getattr(self, name)} applies to {spec.name} ({spec.flag}); {why}"
                    )
        onnx_export.check_opset(self.opset)
        lo, mid, hi = self.frames
        if not 1 <= lo <= mid <= hi:
            raise ExportError(
                f"frames profile needs 1 <= --min-frames <= --opt-frames <= --max-frames, got {lo}, {mid}, {hi}"
            )
        if self.max_batch < 1:
            raise ExportError(f"--max-batch must be >= 1, got {self.max_batch}")
        if self.workspace_gib <= 0:
            raise ExportError(f"--workspace must be > 0 GiB, got {self.workspace_gib}")
        if self.int8 and self.calibrate is None:
            raise ExportError("--int8 needs --calibrate DIR: a folder of videos like the ones you will classify")
        if self.calibration_videos < 1 or self.calibration_frames < 1:
            raise ExportError("--calibration-videos and --calibration-frames must be >= 1")

    @property
    def int8(self) -> bool:
        """frontend/backend.int8.onnx too: NNCF post-training quantization (format ``int8``)."""
        return "int8" in self.formats

    @property
    def frames(self) -> tuple[int, int, int]:
        mid = self.opt_frames if self.opt_frames is not None else min(max(64, self.min_frames), self.max_frames)
        return self.min_frames, mid, self.max_frames


@dataclass
class ExportResult:
    model_dir: Path
    export_dir: Path
    record: dict
    checks: list[Check] = field(default_factory=list)
    saved: list[tuple[str, float, float]] = field(default_factory=list)  # (file, MB, seconds)


def reported(fmt: str) -> Callable:
    """Time a format's export, report 'saved as X (N MB, s)' or the failure, re-raise as ExportError."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def call(self: "Exporter", *args, **kwargs):
            name = FORMATS[fmt].name
            self.log(f"{name}: exporting ...")
            t0 = time.perf_counter()
            try:
                files = fn(self, *args, **kwargs)
            except FvdeployError as e:
                self.log(f"{name}: failed after {time.perf_counter() - t0:.1f} s")
                raise ExportError(str(e)) from None
            except Exception as e:  # a tracer or builder failure is still one line for the user
                self.log(f"{name}: failed after {time.perf_counter() - t0:.1f} s")
                raise ExportError(f"{name} export failed: {type(e).__name__}: {onnx_export._first_line(e)}") from None
            seconds = time.perf_counter() - t0
            for path in files:
                mb = path.stat().st_size / 2**20
                self.result.saved.append((path.name, round(mb, 2), round(seconds, 1)))
                self.log(f"{name}: saved as {path.name} ({mb:.1f} MB)")
            self.log(f"{name}: done in {seconds:.1f} s")
            return files

        return call

    return wrap


class Exporter:
    """Export a model folder for ONNX Runtime (always) and TensorRT (``formats`` with "trt").

    ``model``: a model folder (default: the bundled model, whose export goes to ``options.out`` or
    ``./fvdeploy-default-model``, never into the package). ``options``: :class:`ExportOptions`
    (formats, TensorRT precision, opset, the whole graph's frame profile min/opt/max, batch,
    output folder, ``force``, the validation clip, the CUDA device, workspace GiB). ``log``: one
    plain-text line per step (default: the ``fvdeploy.export`` logger). ``progress(done, total,
    what)``: called as each stage starts and once at the end with ``done == total``.

    Calling it writes ``MODEL/export/`` (or a new model folder ``options.out``): ``model.onnx``
    (uint8 frames ``[N, T, S, S, 3]`` + lengths ``[N]`` -> logits ``[N, classes]``, cluster logits
    ``[N, G, classes]``, cluster ids), the split pair ``frontend.onnx`` / ``backend.onnx``, the
    engines with "trt", and ``export.json`` (every file's size and hash, the checks and their
    figures). Every file is checked (onnx.checker, ONNX Runtime and TensorRT against PyTorch on
    random frames and on a real clip, within docs/design.md#equality tolerances) before the folder appears;
    returns an :class:`ExportResult`.

    Raises ``ExportError`` for bad options (an unknown format, an option of a format not
    exported, a frame profile outside 1 <= min <= opt <= max), a missing onnx/onnxruntime/tensorrt
    package, an existing bundle without ``force``, a failed export or a failed check: nothing is
    written then. ``ModelError`` for a missing or corrupt model folder.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        options: ExportOptions | None = None,
        log: Callable[[str], None] | None = None,
        progress: Callable[[int, int, str], None] | None = None,
    ) -> None:
        self.options = options or ExportOptions()
        self.model_arg = model
        self.log = log or log_plain
        self.progress = progress
        self._done, self._total = 0, 0

    def _stage(self, what: str) -> None:
        """Progress: the stage before is done, ``what`` starts (``progress(done, total, what)``)."""
        if self.progress is not None:
            self.progress(self._done, self._total, what)
        self._done += 1

    # -- entry point --------------------------------------------------------------------------
    def __call__(self) -> ExportResult:
        opts = self.options
        opts.validate()
        for package in ("onnx", "onnxruntime"):  # the checks every export runs
            try:
                __import__(package)
            except ImportError:
                raise ExportError(
                    f"fvdeploy export needs the {package} package: pip install onnx onnxruntime "
                    "(fvdeploy's onnx extra); nothing was written"
                ) from None
        # ONNX is always written: the engines are built from the validated ONNX graphs.
        trt = None
        if "trt" in opts.formats:  # what to install comes first, before any path is looked at
            from .tensorrt import require_tensorrt

            trt = require_tensorrt()
            self.trt_device = _cuda_device(opts.device)
        if opts.int8:
            from .quantize import require_nncf

            require_nncf()
        # load, 3 ONNX graphs, their checks, 3 ONNX Runtime parity checks, (3 engines, 2 TensorRT checks,) record
        self._done, self._total = 0, 1 + 7 + (5 if trt is not None else 0) + (2 if opts.int8 else 0) + 1
        self._stage("loading the model")
        source, target, in_place = self._plan_paths()
        model = load_model(source)
        self.model, self.config = model, model.config
        self._prepare(trt)
        staging = self._staging(source, target, in_place)
        self.result = ExportResult(target, target / EXPORT_DIR, {})
        self.workdir = Path(tempfile.mkdtemp(prefix="fvdeploy-export-"))  # the validation clip, outside the bundle
        try:
            export_dir = staging if in_place else staging / EXPORT_DIR
            export_dir.mkdir(exist_ok=True)
            self.export_dir = export_dir
            self.model_dir_for_checks = target if in_place else staging
            self.old_timing_cache = _read_if_exists(target / EXPORT_DIR / TIMING_CACHE)
            files = self.export_onnx()
            self.int8_record: dict | None = None
            if opts.int8:
                files += self.export_int8()
            engines = self.export_tensorrt(trt) if trt is not None else None
            self._stage("writing export.json")
            record = self._record(source, files, engines, trt)
            (export_dir / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")
            open_bundle(self.model_dir_for_checks, export_dir=export_dir)  # the record reads back and verifies
            final = target / EXPORT_DIR if in_place else target
            replace_dir(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.result.record = record
        if self.progress is not None:
            self.progress(self._total, self._total, "done")
        self.log(f"export bundle: {target / EXPORT_DIR}")
        return self.result

    # -- paths --------------------------------------------------------------------------------
    def _plan_paths(self) -> tuple[Path, Path, bool]:
        """(source model folder, target model folder, whether the export goes inside the source)."""
        from fvdeploy.assets import ASSETS
        from fvdeploy.bundle import resolve_model_path

        source = resolve_model_path(self.model_arg).resolve()
        if not (source / CONFIG_NAME).is_file():
            load_model(source)  # the model folder's own one-line error
        packaged = source.is_relative_to(ASSETS.resolve())
        out = self.options.out
        if out is None and packaged:
            out = Path.cwd() / "fvdeploy-default-model"  # never write into the installed package
            self.log(f"the bundled model is package data: writing a copy with its export to {out}")
        if out is not None and Path(out).resolve() == source:
            out = None
        if out is None:
            target, in_place = source, True
            existing = source / EXPORT_DIR
            if existing.exists() and not self.options.force:
                raise ExportError(f"{existing} already exists (an export bundle); pass --force to replace it")
        else:
            target, in_place = Path(out).resolve(), False
            if target.exists() or target.is_symlink():
                if not self.options.force:
                    raise ExportError(f"{target} already exists; pass --force to replace it, or choose another --out")
                if not target.is_dir() or (any(target.iterdir()) and not (target / CONFIG_NAME).is_file()):
                    raise ExportError(
                        f"{target} exists and is not a model folder; refusing to replace it even with --force"
                    )
        return source, target, in_place

    def _staging(self, source: Path, target: Path, in_place: bool) -> Path:
        parent = target if in_place else target.parent
        name = f".{EXPORT_DIR}.tmp-" if in_place else f".{target.name}.tmp-"
        try:
            parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=name, dir=parent))
            os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's 0700 would outlive the rename
        except OSError as e:
            where = target / EXPORT_DIR if in_place else target
            hint = "; pass --out DIR" if in_place else ""
            raise ExportError(f"cannot write {where} ({e.strerror or e}){hint}") from None
        if not in_place:
            try:
                shutil.copy2(source / CONFIG_NAME, staging / CONFIG_NAME)
                shutil.copy2(source / WEIGHTS_NAME, staging / WEIGHTS_NAME)
            except OSError as e:
                shutil.rmtree(staging, ignore_errors=True)
                raise ExportError(f"cannot write {target} ({e.strerror or e})") from None
        return staging

    # -- preparation --------------------------------------------------------------------------
    def _prepare(self, trt) -> None:
        model = self.model.eval()
        cfg = self.config
        with torch.no_grad():
            probe = model.forward_frames(torch.zeros(1, 1, 3, cfg.input.crop, cfg.input.crop))
        c, h, w = (int(v) for v in probe.shape[2:])
        self.feature_shape: tuple[int, int, int] = (c, h, w)
        self.halo = model.frame_halo
        self.network_halo = sum(len(layer) for layer in (model.layer1, model.layer2, model.layer3, model.layer4))
        self.int32_frames = int32_max_frames(self.feature_shape)
        if trt is not None and self.options.max_frames > self.int32_frames:
            raise ExportError(
                f"--max-frames {self.options.max_frames} is above {self.int32_frames}, the longest video whose "
                f"clustering fits int32 in TensorRT's whole graph for layer1 maps {self.feature_shape}; lower it "
                "(longer videos run through the split pair)"
            )

    # -- formats ------------------------------------------------------------------------------
    @reported("onnx")
    def export_onnx(self) -> list[Path]:
        opts, d = self.options, self.export_dir
        folded = onnx_export.inference_copy(self.model)  # one fold: the three graphs share its weights bit for bit
        self._stage("exporting model.onnx")
        paths = [onnx_export.export_whole(folded, d / "model.onnx", opts.opset)]
        self._stage("exporting frontend.onnx")
        paths.append(onnx_export.export_frontend(folded, d / "frontend.onnx", opts.opset))
        self._stage("exporting backend.onnx")
        paths.append(onnx_export.export_backend(folded, d / "backend.onnx", opts.opset, self.feature_shape))
        del folded
        weights = onnx_export.share_weights(paths, fp16=onnx_export.fp16_sources(self.model))
        self._stage("checking the ONNX files")
        self.onnx_info = {}
        for path, io in zip(paths, (onnx_export.WHOLE_IO, onnx_export.FRONTEND_IO, onnx_export.BACKEND_IO)):
            self.onnx_info[path.name] = onnx_export.check_file(path, io)
        self._add(
            Check(
                "onnx.checker (full) + strict shape inference",
                True,
                ", ".join(f"{k}: {v['nodes']} nodes" for k, v in self.onnx_info.items()),
            )
        )
        self._validate_onnx()
        return [*paths, weights]

    @reported("int8")
    def export_int8(self) -> list[Path]:
        from .quantize import calibration_data, export_int8, require_nncf

        opts = self.options
        assert opts.calibrate is not None
        self._stage("reading the calibration videos")
        calibration = calibration_data(opts.calibrate, self.model, opts.calibration_videos, opts.calibration_frames)
        self.log(f"int8: {len(calibration.videos)} calibration videos, {calibration.total_frames} frames")
        self._stage("quantizing frontend and backend (NNCF)")
        paths = export_int8(self.model, self.export_dir, self.workdir, calibration, opts.opset)
        self.int8_record = {
            "files": {"frontend": paths[0].name, "backend": paths[1].name},
            "tool": f"nncf {require_nncf().__version__}",
            "scheme": "NNCF post-training quantization (preset performance: symmetric int8, weights per "
            "output channel, activations per tensor; fast bias correction) of the folded fp32 graphs",
            "calibration": {
                "folder": str(opts.calibrate),
                "videos": len(calibration.videos),
                "frames": calibration.total_frames,
                "frames_per_video": opts.calibration_frames,
                "inputs": {"frontend": len(calibration.frames), "backend": len(calibration.maps)},
            },
        }
        return paths

    @reported("trt")
    def export_tensorrt(self, trt) -> list[Path]:
        from .tensorrt import build_engine, engine_profiles, platform_record

        opts, d, prec = self.options, self.export_dir, self.options.precision
        cfg, device = self.config, self.trt_device
        profiles = engine_profiles(
            self.feature_shape,
            cfg.input.crop,
            cfg.num_clusters,
            cfg.segments,
            self.halo,
            self.network_halo,
            opts.frames,
            opts.max_batch,
        )
        sources = d / ".trt-onnx"  # the graphs TensorRT builds from: int32 whole graph, engine precision
        sources.mkdir()
        # stem + layer1 (whose signs the clustering reads) run at the engine precision: reduced precision
        # kept top-1 and every boundary within one frame on the held-out set (docs/design.md, Equality)
        features = prec
        # Copies: casting the model itself to fp16 and back would round the fp32 reference's weights.
        # BatchNorm folded in fp32 before the cast (folding fp16 weights would round twice).
        model = onnx_export.inference_copy(self.model).to(device=device, dtype=DTYPES[prec])
        stem = onnx_export.inference_copy(self.model).to(device=device, dtype=DTYPES[features])
        graphs = {
            "model": onnx_export.export_whole(
                model, sources / "model.onnx", opts.opset, torch.int32, DTYPES[prec], device
            ),
            "frontend": onnx_export.export_frontend(
                stem, sources / "frontend.onnx", opts.opset, DTYPES[features], device
            ),
            "backend": onnx_export.export_backend(
                model, sources / "backend.onnx", opts.opset, self.feature_shape, DTYPES[prec], device
            ),
        }
        del model, stem
        cache = self.old_timing_cache
        built = {}
        with torch.cuda.device(device):
            for graph, onnx_path in graphs.items():
                engine = d / engine_name(graph, prec)
                self._stage(f"building {engine.name}")
                t0 = time.perf_counter()
                cache = build_engine(
                    trt, onnx_path, engine, profiles[graph], prec, cache, int(opts.workspace_gib * 2**30)
                )
                self.log(f"TensorRT: built {engine.name} in {time.perf_counter() - t0:.1f} s")
                built[graph] = engine
        shutil.rmtree(sources)
        (d / TIMING_CACHE).write_bytes(cache or b"")
        self.engines_record = {
            **platform_record(trt, device),
            "engines": {
                prec: {
                    **{g: p.name for g, p in built.items()},
                    "features_precision": features,
                    "profiles": {g: {k: [list(s) for s in v] for k, v in prof.items()} for g, prof in profiles.items()},
                    "whole_graph_int": "int32",
                }
            },
        }
        self._validate_tensorrt(built)
        return [*built.values(), d / TIMING_CACHE]

    # -- validation ---------------------------------------------------------------------------
    def _add(self, check: Check) -> None:
        self.result.checks.append(check)
        # plain text: ``log`` may be a file, a logger or a terminal (the CLI adds colour there)
        self.log(f"  {'ok' if check.passed else 'FAILED'} {check.name}: {check.detail}")

    def _require(self, checks: list[Check]) -> None:
        failed = [c for c in checks if not c.passed]
        if failed:
            raise ExportError(f"validation failed, nothing written: {failed[0].name}: {failed[0].detail}")

    def _validate_onnx(self) -> None:
        from fvdeploy.backends.ort_backend import OrtBackend, OrtWholeGraph
        from fvdeploy.backends.torch_backend import TorchBackend
        from fvdeploy.export_record import ExportBundle
        from fvdeploy.runtime import Classifier

        model, cfg, d = self.model, self.config, self.export_dir
        whole = OrtWholeGraph(d / "model.onnx", device="cpu")
        checks = []
        self._stage("ONNX Runtime vs PyTorch: random frames")
        frames, lengths = onnx_export.example_frames(cfg, n=2, seed=7)
        checks.append(
            compare_network(
                "model.onnx vs PyTorch, random frames (2 videos, one shorter than G)",
                torch_reference(model, frames, lengths),
                whole(frames, lengths),
            )
        )
        self._stage("ONNX Runtime vs PyTorch: real clip")
        clip = self._clip()
        crops = uint8_crops(clip, cfg.input)
        one = torch.as_tensor([crops.shape[0]])
        checks.append(
            compare_network(
                f"model.onnx vs PyTorch, real clip ({crops.shape[0]} frames)",
                torch_reference(model, crops[None], one),
                whole(crops[None], one),
            )
        )
        bundle = ExportBundle(self.model_dir_for_checks, d, {"shapes": self._shapes()}, cfg)
        ort_clf = Classifier(OrtBackend(bundle, cfg, device="cpu"))
        torch_clf = Classifier(TorchBackend(model, torch.device("cpu"), "fp32", optimize=False))  # the model as trained
        self._stage("ONNX Runtime vs PyTorch: end to end")
        reference = torch_clf.classify(str(clip))
        checks.append(
            compare_results(
                "split pair (ONNX Runtime) vs PyTorch, real clip end to end", reference, ort_clf.classify(str(clip))
            )
        )
        if (
            importlib.util.find_spec("openvino") is not None
        ):  # the [openvino] extra: the same checks, OpenVINO's reading
            from fvdeploy.backends.openvino_backend import OpenVinoBackend, OpenVinoWholeGraph

            ov_whole = OpenVinoWholeGraph(d / "model.onnx", device="cpu")
            checks.append(
                compare_network(
                    f"model.onnx ({ov_whole.provider}) vs PyTorch, real clip ({crops.shape[0]} frames)",
                    torch_reference(model, crops[None], one),
                    ov_whole(crops[None], one),
                )
            )
            ov_clf = Classifier(OpenVinoBackend(bundle, cfg, device="cpu"))
            checks.append(
                compare_results(
                    f"split pair ({ov_clf.backend.provider}) vs PyTorch, real clip end to end",
                    reference,
                    ov_clf.classify(str(clip)),
                )
            )
        for c in checks:
            self._add(c)
        self._require(checks)

    def _validate_tensorrt(self, built: dict) -> None:
        from fvdeploy.backends.torch_backend import TorchBackend
        from fvdeploy.backends.trt_backend import TrtBackend, TrtWholeGraph
        from fvdeploy.export_record import ExportBundle
        from fvdeploy.runtime import Classifier

        prec, device, cfg = self.options.precision, self.trt_device, self.config
        tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # fp32 references
        try:
            model = self.model.to(device)
            whole = TrtWholeGraph(built["model"], device)
            checks = []
            self._stage("TensorRT vs PyTorch: random frames")
            t = min(max(self.options.frames[1], 2 * cfg.num_clusters + 3), self.options.max_frames)
            frames, lengths = onnx_export.example_frames(
                cfg, n=min(2, self.options.max_batch), t=t, seed=7, device=device
            )
            checks.append(
                compare_network(
                    f"{built['model'].name} vs PyTorch, random frames",
                    torch_reference(model, frames, lengths),
                    whole(frames, lengths.to(torch.int32)),
                    prec,
                )
            )
            record = {"shapes": self._shapes(), "tensorrt": self.engines_record}
            bundle = ExportBundle(self.model_dir_for_checks, self.export_dir, record, cfg)
            self._stage("TensorRT vs PyTorch: end to end")
            clip = str(self._clip())
            ref = Classifier(TorchBackend(model, device, "fp32", optimize=False)).classify(clip)
            got = Classifier(TrtBackend(bundle, cfg, device, prec)).classify(clip)
            checks.append(
                compare_results(f"split pair (TensorRT {prec}) vs PyTorch fp32, real clip end to end", ref, got, prec)
            )
        finally:
            self.model.to("cpu")
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        for c in checks:
            self._add(c)
        self._require(checks)

    def _clip(self) -> Path:
        if getattr(self, "_clip_path", None) is None:
            self._clip_path = validation_clip(self.options.clip, self.workdir, self.config.num_clusters)
        return self._clip_path

    # -- record -------------------------------------------------------------------------------
    def _shapes(self) -> dict:
        return {
            "crop": self.config.input.crop,
            "feature_shape": list(self.feature_shape),
            "halo": self.halo,
            "network_halo": self.network_halo,
        }

    def _record(self, source: Path, files: list[Path], engines, trt) -> dict:
        import onnx
        import onnxruntime

        opts = self.options
        lo, mid, hi = opts.frames
        names = [p.name for p in files] + ([p.name for p in engines] if engines else [])
        for tmp in (self.export_dir / ".trt-onnx",):
            shutil.rmtree(tmp, ignore_errors=True)
        checks = [
            {"name": c.name, "passed": c.passed, "detail": c.detail, "figures": c.figures} for c in self.result.checks
        ]
        return {
            "format": RECORD_FORMAT,
            "format_version": RECORD_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": {
                "model": str(source),
                "weights_sha256": weights_hash(source),
                "checkpoint_sha256": self.config.trained.get("source_sha256"),
            },
            "config": self.config.to_dict(),
            "opset": opts.opset,
            "precision": {
                "onnx": "fp32",
                "tensorrt": opts.precision if engines else None,
                "int8": "int8" if self.int8_record else None,
            },
            "int8": self.int8_record,
            "profile": {"min_frames": lo, "opt_frames": mid, "max_frames": hi, "max_batch": opts.max_batch},
            "limits": {
                "int32_max_frames": self.int32_frames,
                "note": "model.onnx computes the clustering in int64 (any T); TensorRT's whole-graph engine in int32, "
                "so its frame profile stays <= int32_max_frames. The split pair has no frame limit.",
            },
            "shapes": self._shapes(),
            "io": {
                "model.onnx": {
                    "inputs": {
                        "frames": "uint8 [N, T, S, S, 3], model colour order (config input.color), "
                        "resized and centre-cropped, not normalised",
                        "lengths": "int64 [N], valid frames per video (1..T)",
                    },
                    "outputs": {
                        "logits": "float32 [N, classes]",
                        "cluster_logits": "float32 [N, G, classes]",
                        "cluster_ids": "int64 [N, max(T, G)], -1 beyond max(length, G)",
                    },
                },
                "frontend.onnx": {
                    "inputs": {"frames": "float32 [K, 3, S, S], normalised"},
                    "outputs": {"features": "float32 [K, C, h, w]", "distances": "int32 [K-1]"},
                },
                "backend.onnx": {
                    "inputs": {"maps": "float32 [N, M, C, h, w]"},
                    "outputs": {"logits": "float32 [N, M, classes]"},
                },
            },
            "dimensions": {
                "batch": "N, videos",
                "frames": "T (model.onnx) or K (frontend.onnx), frames",
                "padded_frames": "max(T, G)",
                "frame_pairs": "K - 1",
                "clusters": "M: the G cluster means, or K sampled frames (TSM)",
            },
            "external_data": {
                "file": onnx_export.WEIGHTS_FILE,
                "graphs": list(ONNX_FILES),
                "note": "ONNX external data shared by the three graphs: each distinct weight tensor "
                "once, in fp16 behind Cast (and Mul by the fp32 BatchNorm scale) where that "
                "rebuilds the fp32 folded weights bit for bit; keep it beside them",
            },
            "graphs": self.onnx_info,
            "files": {name: file_entry(self.export_dir / name) for name in names},
            "tools": {
                "fvdeploy": fvdeploy.__version__,
                "torch": torch.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__,
                "openvino": _version_of("openvino"),
                "tensorrt": trt.__version__ if trt else None,
                "python": platform.python_version(),
            },
            "validation": checks,
            "tensorrt": self.engines_record if engines else None,
        }


def _cuda_device(device: str) -> torch.device:
    from fvdeploy.backends import resolve_device

    dev = resolve_device(device if device != "auto" else "cuda")
    if dev.type != "cuda":
        raise ExportError(f"--trt builds engines on a CUDA device, got --device {device}")
    return dev


def _version_of(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _read_if_exists(path: Path) -> bytes | None:
    try:
        return path.read_bytes() if path.is_file() else None
    except OSError:
        return None


def log_plain(message: str) -> None:
    import re

    log.info(re.sub(r"\[/?[a-z ]+\]", "", message))


def validation_clip(clip: Path | None, workdir: Path, num_clusters: int) -> Path:
    """A real video file for validation: the user's, the bundled sample, or one encoded here with
    OpenCV (moving squares and scene cuts, so the clustering has boundaries to find)."""
    if clip is not None:
        from fvdeploy.io.video import probe

        probe(clip)  # one-line VideoError for a bad file
        return Path(clip)
    from fvdeploy.assets import ASSETS

    bundled = sorted(ASSETS.glob("**/*.mp4"))
    if bundled:
        return bundled[0]
    import cv2

    n = max(48, 4 * num_clusters + 13)
    path = workdir / ".validation-clip.avi"
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, (96, 72))
    if not writer.isOpened():
        raise ExportError("cannot write a validation clip with OpenCV; pass --clip VIDEO")
    colours = rng.integers(0, 255, (n // 11 + 2, 3))
    yy, xx = np.mgrid[0:72, 0:96]
    for t in range(n):
        img = np.empty((72, 96, 3), np.uint8)
        img[:] = colours[t // 11]
        img[..., 1] = ((xx + yy + 4 * t) % 96 + colours[t // 11][1] // 2).clip(0, 255)
        y, x = (5 * t) % 56, (7 * t) % 80
        img[y : y + 16, x : x + 16] = 255 - colours[t // 11]
        writer.write(img)
    writer.release()
    return path
