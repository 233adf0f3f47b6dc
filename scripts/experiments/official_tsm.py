"""The official TSM code (mit-han-lab/temporal-shift-module, ops/models.py's TSN with the residual
shift) on all T frames against fvdeploy's module forward and Classifier, model only, one process.

    python scripts/experiments/official_tsm.py OFFICIAL_DIR [--frames 128] [--size 224] [--repeats 2]

OFFICIAL_DIR holds the official repository's ``ops/`` (and ``archs/``) as they are, unmodified; the
one shim is that torchvision >= 0.13 takes ``weights=`` instead of the positional ``pretrained``
its ``_prepare_base_model`` passes (``pretrain='scratch'``: random weights, nothing downloaded).
Every figure is the best of ``--repeats`` interleaved runs (a changing load hits all alike), under
``torch.no_grad`` in eval mode, on the same random input. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

# isort: off
import fvdeploy  # noqa: F401  (before torch: OMP_WAIT_POLICY=PASSIVE, as the CLI has it)

# isort: on
import numpy as np
import torch
import torchvision


def official_tsn(official_dir: str, frames: int):
    sys.path.insert(0, official_dir)
    real = torchvision.models.resnet18

    def resnet18(pretrained=False, **kw):  # the positional `pretrained` of torchvision < 0.13
        assert not pretrained
        return real(weights=None, **kw)

    torchvision.models.resnet18 = resnet18
    import contextlib
    import io

    from ops.models import TSN  # type: ignore[import-not-found]

    with contextlib.redirect_stdout(io.StringIO()):  # its construction prints its configuration
        net = TSN(
            400,
            frames,
            "RGB",
            base_model="resnet18",
            is_shift=True,
            shift_div=8,
            shift_place="blockres",
            pretrain="scratch",
            print_spec=False,
            dropout=0.5,
        )
    net.eval()  # its train() override returns None, so eval() does too
    return net


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("official_dir")
    ap.add_argument("--frames", type=int, default=128)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip", default="", help="comma-separated figures not to take")
    args = ap.parse_args()
    t, s = args.frames, args.size
    from fvdeploy.config import InputSpec, ModelConfig
    from fvdeploy.models import create_model
    from fvdeploy.runtime import Classifier

    official = official_tsn(args.official_dir, t)
    config = ModelConfig(arch="resnet18", num_classes=400, num_clusters=8, input=InputSpec(round(s * 256 / 224), s))
    ours = create_model(config).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, t, 3, s, s, generator=gen)
    import tempfile
    from pathlib import Path

    from fvdeploy.bundle import save_model

    tmp = tempfile.mkdtemp(prefix="fvdeploy-official-")
    save_model(ours, Path(tmp) / "m")
    clf = Classifier.load(Path(tmp) / "m", device="cpu")
    video = np.random.default_rng(0).integers(0, 255, (t, s, s, 3), dtype=np.uint8)

    def run_official():
        with torch.no_grad():
            official(x.reshape(1, t * 3, s, s))

    def run_module():
        with torch.no_grad():
            ours(x)

    def run_classifier():
        return clf.classify(video).timings["model"]

    fns = {"official_tsm_all": run_official, "module_forward": run_module, "classifier_model": run_classifier}
    fns = {k: v for k, v in fns.items() if k not in args.skip.split(",")}
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    loads = []
    for _ in range(args.repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            got = fn()
            took = got if name == "classifier_model" else time.perf_counter() - t0
            best[name] = min(best[name], took)
            loads.append(os.getloadavg()[0])
    out = {
        "frames": t,
        "size": s,
        "threads": torch.get_num_threads(),
        "seconds": {k: round(v, 3) for k, v in best.items()},
        "load": [round(min(loads), 2), round(max(loads), 2)],
    }
    if "official_tsm_all" in best:
        out["official_over"] = {
            k: round(best["official_tsm_all"] / v, 2) for k, v in best.items() if k != "official_tsm_all"
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
