"""``fvdeploy bench precision``: reduced-precision stem + layer1 vs fp32 over many clips."""

from __future__ import annotations


def bench_precision(
    paths: list[str],
    model: str | None,
    device: str,
    precision: str,
    log=print,
    backend: str = "auto",
    features_precision: str | None = None,
) -> dict:
    """How often reduced precision (fp16, bf16, int8) changes top-1 or moves a cluster boundary by
    more than one frame, against fp32 on the same frames (docs/design.md#reduced-precision: >= 99% of videos
    must keep top-1 and boundaries within +-1 frame, else the clustering reads fp32), and the model's
    frames/s in each (the runtime's model seconds summed over the videos). ``backend``: what runs
    the reduced precision (auto: ``backends.choice``); fp32 runs on the same backend where it can
    (int8: the bundle's fp32 pair on the same runtime). ``features_precision``: of stem + layer1
    (default: ``precision``; fp32 measures the rule's fallback)."""
    import torch

    from ..runtime import Classifier

    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    feats = features_precision or precision
    low = Classifier.load(
        model, device=device, backend=backend, precision=precision, features_precision=feats, decode_workers=1
    )
    ref = Classifier.load(
        model,
        device=device,
        backend=low.backend.name,
        precision="fp32",
        features_precision="fp32",
        decode_workers=1,
    )
    same_top1 = within_one = identical = both = n = 0
    worst = 0
    seconds = {"fp32": 0.0, precision: 0.0}
    frames = 0
    for a, b in zip(ref.classify_many(paths), low.classify_many(paths)):
        if a.error or b.error:
            continue
        n += 1
        frames += a.num_frames
        seconds["fp32"] += a.timings["model"]
        seconds[precision] += b.timings["model"]
        same_top1 += a.label == b.label
        shifts = [abs(x.start_frame - y.start_frame) for x, y in zip(a.segments, b.segments)]
        worst = max(worst, max(shifts))
        within_one += max(shifts) <= 1
        identical += max(shifts) == 0
        both += a.label == b.label and max(shifts) <= 1
    if n == 0:
        from ..errors import VideoError

        raise VideoError("no video could be classified")
    out = {
        "precision": precision,
        "features_precision": low.backend.features_precision,
        "backend": low.backend.name,
        "provider": low.backend.provider,
        "choice": low.backend.choice,
        "device": str(ref.backend.device),
        "model_fps": {k: round(frames / max(v, 1e-9), 1) for k, v in seconds.items()},
        "speedup_vs_fp32": round(seconds["fp32"] / max(seconds[precision], 1e-9), 2),
        "videos": n,
        "top1_agreement": round(same_top1 / n, 4),
        "boundaries_within_1": round(within_one / n, 4),
        "boundaries_identical": round(identical / n, 4),
        "worst_boundary_shift": worst,
    }
    out["same_top1_and_within_1"] = round(both / n, 4)
    out["rule_ok"] = both / n >= 0.99
    log(
        f"{precision} ({out['backend']}, stem + layer1 {out['features_precision']}) vs fp32 on {n} videos: "
        f"model {out['speedup_vs_fp32']}x fp32's frames/s; top-1 agrees {out['top1_agreement']:.2%}, boundaries within 1 frame "
        f"{out['boundaries_within_1']:.2%} (identical {out['boundaries_identical']:.2%}); rule "
        f"{'met' if out['rule_ok'] else 'NOT met: clustering must read fp32'}"
    )
    return out
