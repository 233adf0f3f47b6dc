"""Ship a trained run's best model as the bundled default model: measure it on a held-out Move4 test
set generated with a seed no training used, write it in fp16 (``save_model(dtype=float16)``) with
that figure in ``config.trained``, then measure the shipped fp16 folder again (it loads as fp32).

    python scripts/experiments/ship_default_model.py --run runs/default/r18_cum_g8_64 \\
        --heldout runs/data/m4_64_heldout_s99 --out fvdeploy/assets/default_model
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from fvdeploy.bundle import WEIGHTS_NAME, load_model, save_model
from fvdeploy.training.loop import evaluate_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a fvdeploy train --out folder")
    ap.add_argument("--heldout", type=Path, required=True, help="a Move4 folder made with another seed")
    ap.add_argument("--out", type=Path, default=Path("fvdeploy/assets/default_model"))
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; remove it first (the shipped model is never overwritten in place)")
    best = args.run / "best"
    fp32 = evaluate_model(best, args.heldout, workers=args.workers, device="cpu")
    model = load_model(best)
    heldout = json.loads((args.heldout / "move4.json").read_text())
    trained = dict(model.config.trained)
    trained.update(
        {
            "heldout_data": f"Move4 test set, seed {heldout['seed']}, {heldout['test']} videos, "
            f"{heldout['spec']['size']} px, {heldout['spec']['frames']} frames (fvdeploy make-move4)",
            "heldout_top1": round(fp32.top1, 4),
            "dtype": "float16",
        }
    )
    trained["data"] = "Move4 (fvdeploy make-move4), seed 11, 1800 training videos, 64 px, 32 frames"
    trained["val"] = "300 test videos of the same seed-11 set"
    model.config = model.config.replace(trained=trained)
    save_model(model, args.out, dtype=torch.float16)
    shipped = evaluate_model(args.out, args.heldout, workers=args.workers, device="cpu")
    report = {
        "heldout_top1_fp32": fp32.top1,
        "heldout_top1_shipped_fp16": shipped.top1,
        "per_class_shipped": shipped.per_class(),
        "confusion_shipped": shipped.confusion.tolist(),
        "size_mb": round((args.out / WEIGHTS_NAME).stat().st_size / 1e6, 2),
        "trained": trained,
    }
    (args.run / "shipped.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
