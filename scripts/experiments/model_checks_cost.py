"""What the model-folder checks of issue 24 add to ``Classifier.load``: the safetensors header
against the config (``check_weights_header``: a model built on the meta device, names, shapes,
dtypes) and the finite-weights pass (``check_finite``), on the bundled model (ResNet-18, fp16
weights) and on a ResNet-50 folder with random weights (400 classes, fp32, saved with
``fvdeploy.bundle.save_model``).

Loads with and without the two checks alternate in one process (the checks switched off by
replacing them with no-ops), ``--repeats`` times each; the medians and the load average are
printed as one JSON object::

    nice -n 10 .venv/bin/python scripts/experiments/model_checks_cost.py --repeats 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

import fvdeploy.bundle as bundle
from fvdeploy.assets import ASSETS
from fvdeploy.config import InputSpec, ModelConfig
from fvdeploy.models import create_model
from fvdeploy.runtime import Classifier


def resnet50_folder(where: Path) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(arch="resnet50", num_classes=400, input=InputSpec(shorter_side=256, crop=224))
    return bundle.save_model(create_model(cfg).eval(), where / "resnet50", overwrite=True)


def time_parts(folder: Path) -> dict:
    """The checks alone: header (with the meta model) and the finite pass over the loaded tensors."""
    cfg = bundle.read_config(folder)
    t0 = time.perf_counter()
    bundle.check_weights_header(folder, cfg)
    t1 = time.perf_counter()
    state = bundle.load_file(str(folder / bundle.WEIGHTS_NAME))
    t2 = time.perf_counter()
    bundle.check_finite(state, folder / bundle.WEIGHTS_NAME)
    t3 = time.perf_counter()
    return {"header_s": t1 - t0, "read_tensors_s": t2 - t1, "finite_s": t3 - t2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    checks = (bundle.check_weights_header, bundle.check_finite)
    out: dict = {"torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        models = {
            "bundled resnet18 (fp16)": ASSETS / "default_model",
            "resnet50 (random, fp32)": resnet50_folder(Path(tmp)),
        }
        for name, folder in models.items():
            Classifier.load(folder, device="cpu")  # warm: imports, file cache
            on, off, parts = [], [], []
            for _ in range(args.repeats):
                for enabled in (True, False):
                    if not enabled:
                        bundle.check_weights_header = lambda *a, **k: None
                        bundle.check_finite = lambda *a, **k: None
                    t0 = time.perf_counter()
                    Classifier.load(folder, device="cpu")
                    (on if enabled else off).append(time.perf_counter() - t0)
                    bundle.check_weights_header, bundle.check_finite = checks
                parts.append(time_parts(folder))
            med_on, med_off = statistics.median(on), statistics.median(off)
            out[name] = {
                "weights_mb": round((folder / bundle.WEIGHTS_NAME).stat().st_size / 1e6, 1),
                "load_with_checks_s": round(med_on, 4),
                "load_without_checks_s": round(med_off, 4),
                "added_s": round(med_on - med_off, 4),
                "added_ratio": round(med_on / med_off - 1, 3),
                "header_check_s": round(statistics.median(p["header_s"] for p in parts), 4),
                "finite_check_s": round(statistics.median(p["finite_s"] for p in parts), 4),
                "read_tensors_s": round(statistics.median(p["read_tensors_s"] for p in parts), 4),
                "repeats": args.repeats,
                "load_average": os.getloadavg(),
            }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
