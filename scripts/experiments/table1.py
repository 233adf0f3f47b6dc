"""Table 1 of the paper on generated Move4: TSM-8/16/all and ours (uniform, slope, cumulative) with
G = 8 and 16, trained from scratch with ResNet-18 through ``fvdeploy train``.

Each (row, seed) is one run folder under ``--out``; a finished run (summary.json without
stopped_early) is skipped and an interrupted one continued with ``--resume``, so the script can be
re-run until everything is done. Costs are measured once per row at the training resolution and
at 224 px (the paper's), with and without activation checkpointing of stem + layer1.

    OMP_NUM_THREADS=1 nice -n 10 python scripts/experiments/table1.py --data runs/data/m4_32_s1 \\
        --train 480 --test 240 --epochs 6 --seeds 0 --out runs/table1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROWS = {
    "TSM-8": dict(mode="tsm", segments=8),
    "TSM-16": dict(mode="tsm", segments=16),
    "TSM-all": dict(mode="tsm", segments=0),
    "Ours-uniform-8": dict(mode="full", clusters=8, method="uniform"),
    "Ours-slope-8": dict(mode="full", clusters=8, method="slope"),
    "Ours-cumulative-8": dict(mode="full", clusters=8, method="cumulative"),
    "Ours-uniform-16": dict(mode="full", clusters=16, method="uniform"),
    "Ours-slope-16": dict(mode="full", clusters=16, method="slope"),
    "Ours-cumulative-16": dict(mode="full", clusters=16, method="cumulative"),
}


def subset(src: Path, dst: Path, n: int) -> Path:
    """The first n lines of a Move4 list (classes stay balanced: video i has class i % 4)."""
    lines = src.read_text().splitlines(keepends=True)
    if n > len(lines):
        raise SystemExit(f"{src} has {len(lines)} videos, fewer than {n}")
    dst.write_text("".join(f"{src.parent.resolve() / ln.split()[0]} {ln.split()[1]}\n" for ln in lines[:n]))
    return dst


def run_row(name: str, seed: int, args, lists: dict[str, Path]) -> dict:
    out = args.out / f"{name}_seed{seed}"
    summary = out / "summary.json"
    if summary.is_file() and not json.loads(summary.read_text())["stopped_early"]:
        return json.loads(summary.read_text())
    p = ROWS[name]
    cmd = [
        sys.executable,
        "-m",
        "fvdeploy",
        "train",
        "--data",
        str(lists["train"]),
        "--val",
        str(lists["test"]),
        "--classes",
        str(lists["classes"]),
        "--out",
        str(out),
        "--arch",
        "resnet18",
        "--mode",
        p["mode"],
        "--size",
        str(args.size),
        "--shorter-side",
        str(args.size),
        "--frames",
        "32",
        "--epochs",
        str(args.epochs),
        "--batch-size",
        str(args.batch_size),
        "--lr",
        str(args.lr),
        "--warmup-epochs",
        str(args.warmup),
        "--seed",
        str(seed),
        "--workers",
        str(args.workers),
        "--device",
        "cpu",
        "--track-clusters",
        "0",
    ]
    if p["mode"] == "tsm":
        cmd += ["--segments", str(p["segments"])]
    else:
        cmd += ["--clusters", str(p["clusters"]), "--method", p["method"]]
    if (out / "last" / "train_state").is_dir():
        cmd.append("--resume")
    print(f"[{time.strftime('%H:%M:%S')}] {name} seed {seed}: {' '.join(cmd[2:])}", flush=True)
    t0, cpu0 = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(args.out / f"{name}_seed{seed}.log", "a") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=log)
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(summary.read_text())
    result["cpu_seconds"] = round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1)  # with its workers
    summary.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"[{time.strftime('%H:%M:%S')}] {name} seed {seed}: best top-1 {result['best_top1']:.4f}, "
        f"last {result['last_top1']:.4f}, {time.time() - t0:.0f} s",
        flush=True,
    )
    return result


def measure_row(name: str, size: int) -> dict:
    from fvdeploy.config import InputSpec, ModelConfig
    from fvdeploy.models import create_model
    from fvdeploy.training.loop import enable_activation_checkpointing
    from fvdeploy.training.measure import forward_flops, saved_activation_bytes

    p = ROWS[name]
    frames = p["segments"] if p["mode"] == "tsm" and p["segments"] else 32
    cfg = ModelConfig(
        arch="resnet18",
        num_classes=4,
        mode=p["mode"],
        segments=p.get("segments", 8),
        num_clusters=p.get("clusters", 8),
        method=p.get("method", "cumulative"),
        input=InputSpec(size, size),
    )
    torch.manual_seed(0)
    x, y = torch.randn(1, frames, 3, size, size), torch.tensor([0])
    model = create_model(cfg)
    flops = forward_flops(model, x)
    plain = saved_activation_bytes(model, x, y)
    enable_activation_checkpointing(model)
    ckpt = saved_activation_bytes(model, x, y)
    return {
        "frames": frames,
        "gflops": flops / 1e9,
        "gmacs": flops / 2e9,
        "saved_mib": plain / 2**20,
        "saved_mib_checkpointed": ckpt / 2**20,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a Move4 folder (make-move4 output)")
    ap.add_argument("--out", type=Path, default=Path("runs/table1"))
    ap.add_argument("--train", type=int, default=480)
    ap.add_argument("--test", type=int, default=240)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--measure-only", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = args.rows.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    lists = {
        "train": subset(args.data / "train.txt", args.out / f"train{args.train}.txt", args.train),
        "test": subset(args.data / "test.txt", args.out / f"test{args.test}.txt", args.test),
        "classes": args.data / "classes.txt",
    }
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for name in rows:
        entry = results.setdefault(name, {})
        if "cost" not in entry:
            entry["cost"] = {f"{args.size}px": measure_row(name, args.size), "224px": measure_row(name, 224)}
            results_path.write_text(json.dumps(results, indent=2) + "\n")
    if not args.measure_only:
        for seed in seeds:
            for name in rows:
                r = run_row(name, seed, args, lists)
                entry = results[name]
                entry.setdefault("runs", {})[str(seed)] = {
                    "best_top1": r["best_top1"],
                    "last_top1": r["last_top1"],
                    "seconds": r["seconds"],
                    "cpu_seconds": r.get("cpu_seconds"),
                }
                results_path.write_text(json.dumps(results, indent=2) + "\n")
    results["_setup"] = {
        "data": str(args.data),
        "train": args.train,
        "test": args.test,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup": args.warmup,
        "size": args.size,
        "threads": os.environ.get("OMP_NUM_THREADS"),
    }
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results, args.size))


def _pm(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def markdown(results: dict, size: int) -> str:
    lines = [
        f"| Model | #Frames | #Clusters | GFLOPs/video {size}px (224px) | saved MiB/video {size}px: plain / checkpointed "
        f"| 224px: plain / checkpointed | last-epoch top-1 % | best-epoch top-1 % | seeds | wall s/run | CPU s/run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, p in ROWS.items():
        if name not in results:
            continue
        e = results[name]
        c, big = e["cost"][f"{size}px"], e["cost"]["224px"]
        runs = list(e.get("runs", {}).values())
        frames = "all" if p["mode"] == "full" or not p["segments"] else str(p["segments"])
        clusters = str(p.get("clusters", "-"))
        model = name.rsplit("-", 1)[0] if p["mode"] == "full" else "TSM"
        secs = statistics.mean(r["seconds"] for r in runs) if runs else 0
        cpus = [r["cpu_seconds"] for r in runs if r.get("cpu_seconds")]
        cpu = f"{statistics.mean(cpus):.0f}" if cpus else "-"
        lines.append(
            f"| {model} | {frames} | {clusters} | {c['gflops']:.3f} ({big['gflops']:.2f}) | "
            f"{c['saved_mib']:.1f} / {c['saved_mib_checkpointed']:.1f} | "
            f"{big['saved_mib']:.0f} / {big['saved_mib_checkpointed']:.0f} | "
            f"{_pm([r['last_top1'] for r in runs])} | {_pm([r['best_top1'] for r in runs])} | "
            f"{len(runs)} | {secs:.0f} | {cpu} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
