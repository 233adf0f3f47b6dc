"""Steps of scripts/gpu-check.sh: probe, GPU tests, benchmarks, one summary table and JSON.

Each step runs as a subprocess with its own time limit (the whole check must fit 5 minutes on one
H100); a step that fails or times out is recorded as such and the check goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO / ".carry" / "clips"


def probe() -> dict:
    import torch

    from fvdeploy.io.nvdec import probe_nvdec

    info = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "cpu_cores": os.cpu_count(),
    }
    if info["cuda"]:
        p = torch.cuda.get_device_properties(0)
        info.update(
            gpu=p.name,
            capability=f"{p.major}.{p.minor}",
            gpu_memory_gib=round(p.total_memory / 2**30, 1),
            gpus=torch.cuda.device_count(),
        )
    missing = probe_nvdec()
    info["nvdec"] = "ok" if missing is None else missing
    try:
        import cv2

        info["opencv"] = cv2.__version__
    except ImportError:
        info["opencv"] = None
    return info


def make_models(folder: Path, size: int) -> dict[str, str]:
    """R18 and R50 full-video models at ``size`` (random weights: throughput does not depend on them)."""
    import torch

    from fvdeploy import InputSpec, ModelConfig, create_model, save_model

    out = {}
    for arch in ("resnet18", "resnet50"):
        torch.manual_seed(0)
        cfg = ModelConfig(
            arch=arch, num_classes=400, num_clusters=8, input=InputSpec(shorter_side=size * 8 // 7, crop=size)
        )
        out[arch] = str(save_model(create_model(cfg).eval(), folder / arch, overwrite=True))
    return out


class Runner:
    def __init__(self, out: Path, budget_s: float) -> None:
        self.out, self.deadline, self.steps = out, time.monotonic() + budget_s, []
        self.after_step = lambda: None
        self.skip = os.environ.get("GPU_CHECK_SKIP", "")  # a regex of step names, to rerun only some

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(
        self, name: str, cmd: list[str], limit_s: float, env: dict | None = None, expect_json: bool = True
    ) -> dict | None:
        if self.skip and re.search(self.skip, name):
            print(f"-- {name}: skipped (GPU_CHECK_SKIP)")
            self.steps.append({"step": name, "status": "skipped (GPU_CHECK_SKIP)"})
            return None
        limit = min(limit_s, self.left() - 5)
        if limit < 10:
            print(f"-- {name}: skipped, time budget spent")
            self.steps.append({"step": name, "status": "skipped (time budget)"})
            return None
        print(f"\n== {name} (limit {limit:.0f} s)\n$ {' '.join(cmd)}", flush=True)
        t0 = time.monotonic()
        try:
            r = subprocess.run(
                cmd, capture_output=True, text=True, timeout=limit, env={**os.environ, **(env or {})}, cwd=REPO
            )
        except subprocess.TimeoutExpired as e:

            def text(b) -> str:
                return (b.decode(errors="replace") if isinstance(b, bytes) else (b or ""))[-3000:]

            print(text(e.stdout), text(e.stderr), sep="\n")
            self.steps.append({"step": name, "status": f"timeout after {limit:.0f} s"})
            self.after_step()
            return None
        seconds = round(time.monotonic() - t0, 1)
        print(r.stdout[-4000:], r.stderr[-4000:], sep="\n")
        result = None
        if expect_json and r.returncode == 0:
            try:
                result = json.loads(r.stdout.strip().splitlines()[-1])
            except (json.JSONDecodeError, IndexError):
                pass
        status = "ok" if r.returncode == 0 else f"exit {r.returncode}"
        self.steps.append(
            {
                "step": name,
                "status": status,
                "seconds": seconds,
                "result": result,
                "tail": None if r.returncode == 0 else (r.stdout + r.stderr)[-600:],
            }
        )
        self.after_step()
        return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gpu-check")
    ap.add_argument("--budget-s", type=float, default=285)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runner = Runner(out, args.budget_s)
    info = probe()
    print("== probe\n" + json.dumps(info, indent=2))
    cuda = info["cuda"]
    nvdec = info["nvdec"] == "ok"
    device = "cuda" if cuda else "cpu"
    fv = [sys.executable, "-m", "fvdeploy"]
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    models = make_models(tmp / "models", 224 if cuda else 64)

    def save() -> None:  # after every step, so a check cut short still leaves its figures
        (out / "gpu-check.json").write_text(json.dumps({"device": info, "steps": runner.steps}, indent=2))

    runner.after_step = save
    env = {"FVDEPLOY_REQUIRE": "gpu"} if cuda else {}
    runner.run(
        "pytest -m gpu",
        [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-s", "-p", "no:cacheprovider", "tests"],
        100 if cuda else 60,
        env=env,
        expect_json=False,
    )

    clips = {name: CLIPS / f"{name}.mp4" for name in ("360p", "1080p") if (CLIPS / f"{name}.mp4").is_file()}
    if not clips or not cuda:
        from fvdeploy.bench.clips import looped_clip

        print("no GPU or no carried clips (.carry/clips): a small mp4v stand-in instead")
        clips = {
            "360p": looped_clip(tmp / "360p.mp4", 3000 if cuda else 120, 640 if cuda else 320, 360 if cuda else 180)
        }
    decoders = ["opencv"] + (["nvdec"] if nvdec else [])

    # Most wanted first: a budget cut drops the tail (torch.compile, live streams), not the core figures.
    # 1. end to end vs decode-only, R18 and R50, each clip, each decoder
    for arch in ("resnet18", "resnet50"):
        for res, clip in sorted(clips.items(), reverse=True):
            for dec in decoders:
                runner.run(
                    f"throughput {arch} {res} {dec}",
                    fv
                    + ["bench", "throughput", str(clip), "--model", models[arch], "--device", device, "--decoder", dec],
                    45,
                )
    # 2. model only: ours vs TSM-all vs a plain ResNet-50
    quick = [] if cuda else ["--quick"]
    runner.run(
        "model resnet50 fp16",
        fv
        + [
            "bench",
            "model",
            "--device",
            device,
            "--arch",
            "resnet50",
            "--frames",
            "3000",
            "--precision",
            "fp16" if cuda else "fp32",
        ]
        + quick,
        60,
    )
    # 3. a corpus of clips: nvdec vs OpenCV with several decode workers
    # 16 videos of 300 frames at 1080p (4 carried clips, each 4 times), else the long clip twice
    corpus = tmp / "corpus"
    corpus.mkdir()
    short = sorted(CLIPS.glob("corpus1080p_*.mp4")) if cuda else []
    bases = short * 4 if short else [clips.get("1080p") or next(iter(clips.values()))] * 2
    for i, base in enumerate(bases):
        os.symlink(base, corpus / f"clip{i:02d}.mp4")
    cores = os.cpu_count() or 1
    for dec, workers in [("opencv", max(1, cores // 4)), ("opencv", max(1, cores // 2))] + (
        [("nvdec", 4)] if nvdec else []
    ):
        runner.run(
            f"corpus {dec} x{workers}",
            fv
            + [
                "bench",
                "corpus",
                str(corpus),
                "--model",
                models["resnet18"],
                "--device",
                device,
                "--decoder",
                dec,
                "--decode-workers",
                str(workers),
            ],
            45,
        )
    # memory bounded in T on the device, R50 fp16 at 224 with the CUDA default budget (2048 MiB: the
    # 256 MiB default of `bench memory` leaves R50 at 224 chunks of 1-3 frames, slow and over budget)
    runner.run(
        "memory resnet50" if cuda else "memory resnet18",
        fv
        + [
            "bench",
            "memory",
            "--model",
            models["resnet50" if cuda else "resnet18"],
            "--device",
            device,
            "--size",
            "160x90",
        ]
        + (["--max-memory", "2048"] if cuda else ["--quick"]),
        100,
    )
    # fp16 vs fp32 signs over many clips: held-out Move4 videos for the bundled model
    move4 = tmp / "move4"
    runner.run(
        "make-move4 (precision clips)",
        fv
        + ["make-move4", str(move4), "--train", "0", "--test", "120" if cuda else "8", "--size", "64", "--seed", "99"],
        45,
        expect_json=False,
    )
    runner.run(
        "precision fp16 vs fp32",
        fv + ["bench", "precision", str(move4 / "test"), "--device", device, "--precision", "fp16" if cuda else "bf16"],
        45,
    )
    # live streams on one device (issue 9): how many 30-fps streams stay real time, R18 at 224 px
    for res, n in (("360p", 16), ("1080p", 8)) if cuda else (("360p", 1),):
        runner.run(
            f"watch {n} x {res}",
            fv
            + [
                "bench",
                "watch",
                "--streams",
                str(n),
                "--resolution",
                res,
                "--device",
                device,
                "--arch",
                "resnet18",
                "--seconds",
                "12",
                "--max-memory",
                "16384",
            ]
            + ([] if cuda else ["--quick", "--crop", "64"]),
            45,
        )
    if cuda:  # does torch.compile of stem + layer1 pay? (the runtime does not use it until measured)
        runner.run(
            "model resnet50 fp16 compiled",
            fv
            + [
                "bench",
                "model",
                "--device",
                device,
                "--arch",
                "resnet50",
                "--frames",
                "3000",
                "--precision",
                "fp16",
                "--compile",
            ],
            90,
        )

    summary = {"device": info, "steps": runner.steps}
    (out / "gpu-check.json").write_text(json.dumps(summary, indent=2))
    print("\n== summary")
    width = max(len(s["step"]) for s in runner.steps)
    for s in runner.steps:
        r = s.get("result") or {}
        key = {
            k: r[k]
            for k in (
                "decode_fps",
                "end_to_end_fps",
                "ratio",
                "cpu_s_per_frame",
                "full_fps",
                "tsm_all_fps",
                "speedup_vs_tsm_all",
                "plain_images_per_s",
                "videos_per_s",
                "frames_per_s",
                "gpu_util_percent",
                "growth_mib",
                "ok",
                "top1_agreement",
                "boundaries_within_1",
                "rule_ok",
                "sustained",
                "dropped_frames",
                "window_latency_ms",
            )
            if k in r
        }
        print(f"{s['step']:<{width}}  {s['status']:<14} {json.dumps(key)}")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"\ntotal {args.budget_s - runner.left():.0f} s of a {args.budget_s:.0f} s budget")
    print(f"\nwrote {out / 'gpu-check.log'} and {out / 'gpu-check.json'}")


if __name__ == "__main__":
    main()
