"""``MODEL/export/export.json``: what an export bundle holds and how it was made (the format, and
its reader; the writer is ``fvdeploy.export``, the readers are the backends).

Backends read the bundle through :func:`open_bundle`, which checks, before any ONNX or TensorRT
file is parsed, that the record is readable, that every file it names is there with the recorded
size and sha256, and that the bundle was made from the weights the model folder holds now.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fvdeploy.bundle import WEIGHTS_NAME, sha256_file, weights_hash
from fvdeploy.config import ModelConfig
from fvdeploy.errors import BackendError

EXPORT_DIR = "export"
RECORD_NAME = "export.json"
RECORD_FORMAT = "fvdeploy-export"
RECORD_VERSION = 1
ONNX_FILES = ("model.onnx", "frontend.onnx", "backend.onnx")
REEXPORT = "re-export with `fvdeploy export MODEL --force`"


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
        return self.dir / name

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
    export_dir = Path(export_dir) if export_dir is not None else model_dir / EXPORT_DIR
    record_path = export_dir / RECORD_NAME
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
        record = json.loads(record_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BackendError(f"{record_path}: not a readable export record ({e}); {REEXPORT}") from None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise BackendError(f"{record_path}: not an fvdeploy export record; {REEXPORT}")
    if record.get("format_version") != RECORD_VERSION:
        raise BackendError(
            f"{record_path}: export format_version {record.get('format_version')!r} is not the "
            f"{RECORD_VERSION} this fvdeploy reads; {REEXPORT}"
        )
    try:
        config = ModelConfig.from_dict(record["config"])
        files = dict(record["files"])
        record["shapes"]["feature_shape"], record["shapes"]["halo"], record["shapes"]["network_halo"]
    except (KeyError, TypeError, ValueError) as e:
        raise BackendError(f"{record_path}: incomplete export record ({type(e).__name__}: {e}); {REEXPORT}") from None
    except Exception as e:  # ModelError from the embedded config
        raise BackendError(f"{record_path}: {e}; {REEXPORT}") from None
    for name, entry in files.items():
        path = export_dir / name
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
    if check_weights and (model_dir / WEIGHTS_NAME).is_file():
        recorded = (record.get("source") or {}).get("weights_sha256")
        if recorded and weights_hash(model_dir) != recorded:
            raise BackendError(
                f"{export_dir} was exported from other weights than {model_dir / WEIGHTS_NAME} holds now; {REEXPORT}"
            )
    return ExportBundle(model_dir, export_dir, record, config)


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
