"""``MODEL/export/export.json``: what an export bundle holds and how it was made (the format, and
its reader; the writer is ``fvdeploy.export``, the readers are the backends).

Backends read the bundle through :func:`open_bundle`, which checks, before any ONNX or TensorRT
file is parsed, that the record is readable (at most ``MAX_RECORD_BYTES``, ``MAX_RECORD_DEPTH``
levels deep, every field of its embedded config valid as ``config.json``'s, its shapes and file
entries well-formed), that every file it names is a plain name inside ``export/`` (no ``..``, no
symlink leaving the folder, nor ``export/`` itself one leaving the model folder) and is there
with the recorded size and sha256, and that the bundle was made from the weights the model
folder holds now. Every failure is one BackendError line naming the file and the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fvdeploy.bundle import WEIGHTS_NAME, inside, read_json, sha256_file, weights_hash
from fvdeploy.config import ModelConfig, json_depth
from fvdeploy.errors import BackendError, ModelError

EXPORT_DIR = "export"
RECORD_NAME = "export.json"
RECORD_FORMAT = "fvdeploy-export"
RECORD_VERSION = 1
ONNX_FILES = ("model.onnx", "frontend.onnx", "backend.onnx")
REEXPORT = "re-export with `fvdeploy export MODEL --force`"
MAX_RECORD_BYTES = 16 << 20  # a record is a few KB; its embedded config at most config.json's 16 MiB
MAX_RECORD_DEPTH = 32
SHA256 = re.compile(r"[0-9a-f]{64}")


def file_entry(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def engine_name(graph: str, precision: str) -> str:
    """``model.fp16.engine``: plain serialized engines, so trtexec and Triton load them as they are."""
    return f"{graph}.{precision}.engine"


@dataclass
class ExportBundle:
    """An opened, verified export bundle."""

    model_dir: Path
    dir: Path
    record: dict[str, Any]
    config: ModelConfig  # the model config the graphs were traced with

    def path(self, name: str) -> Path:
        """``export/name``; BackendError when the name leads outside the bundle."""
        return _inside(self.dir, name, "export bundle")

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        return tuple(self.record["shapes"]["feature_shape"])

    @property
    def halo(self) -> int:
        return int(self.record["shapes"]["halo"])

    @property
    def network_halo(self) -> int:
        return int(self.record["shapes"]["network_halo"])

    def int8(self) -> dict[str, str]:
        """Graph -> file of the int8 split pair (``{"frontend": ..., "backend": ...}``); empty
        without ``fvdeploy export --int8``."""
        return dict((self.record.get("int8") or {}).get("files") or {})

    def engines(self) -> dict[str, dict[str, Any]]:
        """Precision -> engine record (files, profiles); empty without ``--trt``."""
        trt = self.record.get("tensorrt") or {}
        return dict(trt.get("engines") or {})


def open_bundle(model_dir: str | Path, check_weights: bool = True, export_dir: Path | None = None) -> ExportBundle:
    """Read and verify ``MODEL/export`` (or ``export_dir``, a bundle being written for MODEL); a
    one-line BackendError for every way it can be wrong."""
    model_dir = Path(model_dir)
    export_dir = Path(export_dir) if export_dir is not None else _inside(model_dir, EXPORT_DIR, "model folder")
    record_path = _inside(export_dir, RECORD_NAME, "export bundle")
    if not record_path.is_file():
        from fvdeploy.assets import ASSETS

        if model_dir.resolve().is_relative_to(ASSETS.resolve()):  # the bundled model: export never writes there
            raise BackendError(
                "the bundled model has no export bundle; create one with `fvdeploy export` (it writes "
                "./fvdeploy-default-model) and then pass `--model ./fvdeploy-default-model`"
            )
        raise BackendError(
            f"{model_dir} has no export bundle ({record_path} is missing); create it with `fvdeploy export --model {model_dir}`"
        )
    try:
        record = read_json(record_path, MAX_RECORD_BYTES)
    except OSError as e:
        raise BackendError(f"{record_path}: cannot read ({e.strerror or e}); {REEXPORT}") from None
    except ValueError as e:
        raise BackendError(f"{record_path}: not a readable export record: {e}; {REEXPORT}") from None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise BackendError(f"{record_path}: not an fvdeploy export record; {REEXPORT}")
    if json_depth(record) > MAX_RECORD_DEPTH:
        raise BackendError(f"{record_path}: nested more than {MAX_RECORD_DEPTH} levels deep; {REEXPORT}")
    if record.get("format_version") != RECORD_VERSION:
        raise BackendError(
            f"{record_path}: export format_version {record.get('format_version')!r} is not the "
            f"{RECORD_VERSION} this fvdeploy reads; {REEXPORT}"
        )
    if "config" not in record or "files" not in record or "shapes" not in record:
        missing = next(k for k in ("config", "files", "shapes") if k not in record)
        raise BackendError(f"{record_path}: incomplete export record (no {missing!r}); {REEXPORT}")
    try:
        config = ModelConfig.from_dict(record["config"], where="config")
    except ModelError as e:
        raise BackendError(f"{record_path}: {e}; {REEXPORT}") from None
    problem = _shapes_problem(record["shapes"]) or _files_problem(record["files"])
    if problem:
        raise BackendError(f"{record_path}: {problem}; {REEXPORT}")
    files = dict(record["files"])
    for name, entry in files.items():
        path = _inside(export_dir, name, "export bundle")
        if not path.is_file():
            raise BackendError(f"{path} is missing from the export bundle; {REEXPORT}")
        if path.stat().st_size != entry.get("bytes"):
            raise BackendError(
                f"{path} has {path.stat().st_size} bytes, export.json records {entry.get('bytes')}: "
                f"the file is truncated or was replaced; {REEXPORT}"
            )
        if sha256_file(path) != entry.get("sha256"):
            raise BackendError(
                f"{path} does not match the sha256 in export.json: the file is corrupt or was edited; {REEXPORT}"
            )
    if check_weights and _inside(model_dir, WEIGHTS_NAME, "model folder").is_file():
        recorded = (record.get("source") or {}).get("weights_sha256")
        if recorded and weights_hash(model_dir) != recorded:
            raise BackendError(
                f"{export_dir} was exported from other weights than {model_dir / WEIGHTS_NAME} holds now; {REEXPORT}"
            )
    return ExportBundle(model_dir, export_dir, record, config)


def _inside(folder: Path, name: str, what: str) -> Path:
    try:
        return inside(folder, name, what)
    except ModelError as e:
        raise BackendError(f"{e}; {REEXPORT}") from None


def _is_int(v: Any, low: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _shapes_problem(shapes: Any) -> str | None:
    """Why ``record["shapes"]`` is malformed, or None."""
    if not isinstance(shapes, dict):
        return "shapes: must be a JSON object"
    fs = shapes.get("feature_shape")
    if not isinstance(fs, list) or len(fs) != 3 or not all(_is_int(v, 1) for v in fs):
        return f"shapes.feature_shape: must be 3 positive integers (C, H, W), got {fs!r:.60}"
    for key in ("halo", "network_halo"):
        if not _is_int(shapes.get(key)):
            return f"shapes.{key}: must be an integer >= 0, got {shapes.get(key)!r:.60}"
    return None


def _files_problem(files: Any) -> str | None:
    """Why ``record["files"]`` is malformed (a name that is not a plain file name, an entry
    without an integer size and a sha256), or None."""
    if not isinstance(files, dict):
        return "files: must be a JSON object of file name -> {bytes, sha256}"
    for name, entry in files.items():
        if not name or name in (".", "..") or Path(name).name != name or "\\" in name:
            return f"files: {name!r:.80} is not a plain file name inside export/"
        if not isinstance(entry, dict) or not _is_int(entry.get("bytes")):
            return f"files.{name}.bytes: must be an integer >= 0"
        if not isinstance(entry.get("sha256"), str) or not SHA256.fullmatch(entry["sha256"]):
            return f"files.{name}.sha256: must be 64 lowercase hex digits"
    return None


def check_config_matches(bundle: ExportBundle, config: ModelConfig) -> None:
    """The runtime's config (mode, G and method may differ) must describe the exported network."""
    exported = bundle.config
    for field in ("arch", "num_classes"):
        if getattr(config, field) != getattr(exported, field):
            raise BackendError(
                f"{bundle.dir}: exported for {field}={getattr(exported, field)!r} but the model folder "
                f"says {getattr(config, field)!r}; {REEXPORT}"
            )
    if config.input.crop != exported.input.crop:
        raise BackendError(
            f"{bundle.dir}: exported for {exported.input.crop}x{exported.input.crop} input but the "
            f"config asks for {config.input.crop}; {REEXPORT}"
        )
