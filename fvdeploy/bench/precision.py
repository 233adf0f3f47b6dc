"""``fvdeploy bench precision``: reduced-precision stem + layer1 vs fp32 over many clips."""

from __future__ import annotations


def bench_precision(paths: list[str], model: str | None, device: str, precision: str, log=print) -> dict:
    """How often reduced-precision stem + layer1 changes top-1 or moves a cluster boundary by more
    than one frame, against fp32 on the same frames (docs/design.md#reduced-precision: >= 99% of videos must keep
    top-1 and boundaries within +-1 frame, else the clustering reads fp32)."""
    import torch

    from ..runtime import Classifier

    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    ref = Classifier.load(model, device=device, precision="fp32", features_precision="fp32", decode_workers=1)
    low = Classifier.load(model, device=device, precision=precision, features_precision=precision, decode_workers=1)
    same_top1 = within_one = identical = both = n = 0
    worst = 0
    for a, b in zip(ref.classify_many(paths), low.classify_many(paths)):
        if a.error or b.error:
            continue
        n += 1
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
        "device": str(ref.backend.device),
        "videos": n,
        "top1_agreement": round(same_top1 / n, 4),
        "boundaries_within_1": round(within_one / n, 4),
        "boundaries_identical": round(identical / n, 4),
        "worst_boundary_shift": worst,
    }
    out["same_top1_and_within_1"] = round(both / n, 4)
    out["rule_ok"] = both / n >= 0.99
    log(
        f"{precision} vs fp32 on {n} videos: top-1 agrees {out['top1_agreement']:.2%}, boundaries within 1 frame "
        f"{out['boundaries_within_1']:.2%} (identical {out['boundaries_identical']:.2%}); rule "
        f"{'met' if out['rule_ok'] else 'NOT met: clustering must read fp32'}"
    )
    return out
