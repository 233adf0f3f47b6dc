"""What the model-folder checks of issue 24 add to ``Classifier.load``: the safetensors header
against the config (``check_weights_header``: a model built on the meta device, names, shapes,
dtypes) and the finite-weights pass (``check_finite``), on the bundled model (ResNet-18, fp16
weights) and on a ResNet-50 folder with random weights (400 classes, fp32, saved with
``fvdeploy.bundle.save_model``).

Loads with and without the two checks alternate in one process (the checks switched off by
replacing them with no-ops), ``--repeats`` times each; the medians of wall time and of the
process's CPU time (less sensitive to other processes on a shared machine), the checks timed
alone, and the load average are printed as one JSON object::

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

# as fvdeploy/__init__.py does, before torch loads: OpenMP threads sleep at barriers, not spin
# (spinning threads would bill other processes' time to this one's CPU time)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

import fvdeploy.bundle as bundle  # noqa: E402
from fvdeploy.assets import ASSETS  # noqa: E402
from fvdeploy.config import InputSpec, ModelConfig  # noqa: E402
from fvdeploy.models import create_model  # noqa: E402
from fvdeploy.runtime import Classifier  # noqa: E402


def resnet50_folder(where: Path) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(arch="resnet50", num_classes=400, input=InputSpec(shorter_side=256, crop=224))
    return bundle.save_model(create_model(cfg).eval(), where / "resnet50", overwrite=True)


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(t: tuple[float, float]) -> tuple[float, float]:
    return time.perf_counter() - t[0], time.process_time() - t[1]


def time_parts(folder: Path) -> dict:
    """The checks alone: header (with the meta model) and the finite pass over the loaded tensors."""
    cfg = bundle.read_config(folder)
    t = clock()
    bundle.check_weights_header(folder, cfg)
    header = since(t)
    t = clock()
    state = bundle.load_file(str(folder / bundle.WEIGHTS_NAME))
    read = since(t)
    t = clock()
    bundle.check_finite(state, folder / bundle.WEIGHTS_NAME)
    finite = since(t)
    return {"header": header, "read_tensors": read, "finite": finite}


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
            for i in range(args.repeats):
                for enabled in (True, False) if i % 2 == 0 else (False, True):  # neither always first
                    if not enabled:
                        bundle.check_weights_header = lambda *a, **k: None
                        bundle.check_finite = lambda *a, **k: None
                    t = clock()
                    Classifier.load(folder, device="cpu")
                    (on if enabled else off).append(since(t))
                    bundle.check_weights_header, bundle.check_finite = checks
                parts.append(time_parts(folder))

            def med(values, i):
                return round(statistics.median(v[i] for v in values), 4)

            out[name] = {
                "weights_mb": round((folder / bundle.WEIGHTS_NAME).stat().st_size / 1e6, 1),
                "load_with_checks_s": {"wall": med(on, 0), "cpu": med(on, 1)},
                "load_without_checks_s": {"wall": med(off, 0), "cpu": med(off, 1)},
                "added_s": {"wall": round(med(on, 0) - med(off, 0), 4), "cpu": round(med(on, 1) - med(off, 1), 4)},
                **{
                    f"{part}_s": {"wall": med([p[part] for p in parts], 0), "cpu": med([p[part] for p in parts], 1)}
                    for part in ("header", "finite", "read_tensors")
                },
                "repeats": args.repeats,
                "load_average": [round(x, 2) for x in os.getloadavg()],
            }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
