"""Write ``samples/<class>.mp4``: one generated Move4 video per class, with its distractor chunk,
from a seed no training set used; then check that a model classifies each one correctly, through
``fvdeploy.io.transforms.preprocess`` + the model and through ``fvdeploy classify``.

    python scripts/experiments/make_samples.py --seed 2024 --size 64 --out samples \\
        --model fvdeploy/assets/default_model
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from fvdeploy.bundle import load_model
from fvdeploy.io.sources import read_video
from fvdeploy.io.transforms import preprocess
from fvdeploy.training.move4 import CLASSES, Move4Spec, render_video, write_mp4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--out", type=Path, default=Path("samples"))
    ap.add_argument("--model", type=Path, help="check the samples with this model folder")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    spec = Move4Spec(frames=args.frames, size=args.size)
    rows = []
    for label, name in enumerate(CLASSES):
        video = render_video(spec, args.seed, "test", label, label=label)
        path = args.out / f"{name}.mp4"
        if path.exists():
            raise SystemExit(f"{path} exists; remove it first (samples are regenerated, never overwritten)")
        write_mp4(path, video.frames, spec.fps)
        rows.append({"file": path.name, "label": name, "digit": video.digit, "kinds": video.kinds})
    report = {"seed": args.seed, "size": args.size, "frames": args.frames, "samples": rows}
    if args.model:
        model = load_model(args.model)
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "fvdeploy",
                "classify",
                "--model",
                str(args.model),
                "--json",
                "--device",
                "cpu",
                *[str(args.out / r["file"]) for r in rows],
            ],
            capture_output=True,
            text=True,
        )
        by_path = {}
        if cli.returncode == 0:
            for line in cli.stdout.splitlines():
                r = json.loads(line)
                by_path[Path(r["path"]).name] = (r["label"], r["score"])
        for r in rows:
            frames = torch.from_numpy(read_video(args.out / r["file"]))
            with torch.no_grad():
                probs = model(preprocess(frames, model.config.input)[None]).logits.softmax(1)[0]
            r["predicted"], r["score"] = model.config.labels[int(probs.argmax())], round(float(probs.max()), 4)
            if r["file"] in by_path:
                r["classify_label"], r["classify_score"] = by_path[r["file"]][0], round(by_path[r["file"]][1], 4)
        report["classify_exit"] = cli.returncode
    (args.out / "samples.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
