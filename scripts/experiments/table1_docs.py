"""Table 1's documentation outputs: ``docs/table1_sparse.json`` (per row: seeds, top-1 per seed, mean,
std, GMAC per video at 224 px) from a ``table1.py`` results file, ``docs/table1_default.json`` (the
default Move4 table of docs/results.md, whose per-seed values were not kept), a markdown table, and
the accuracy-vs-cost PNG of both sets (top-1 against GMAC per video, error bars over seeds).

    python scripts/experiments/table1_docs.py --results runs/table1_sparse/results.json \\
        --data runs/data/m4_32_sparse4_s3 --json docs/table1_sparse.json --png docs/table1_accuracy_vs_cost.png

Top-1 is the last epoch's (the model training ends with; the best epoch is chosen on the test set
itself, so it is reported beside it but not plotted).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import cv2
import numpy as np

from fvdeploy.training.plots import BLACK, FONT, GREY, PALETTE, save_png

# The default Move4 table (docs/results.md, "Default Move4"): last-epoch top-1 mean ± std over the
# seeds run; seed 2 only for TSM-8 and TSM-16. GMAC per video at 224 px from table1.py's measurement.
DEFAULT_TABLE = [
    # model, frames, clusters, seeds, mean %, std %, GMAC at 224 px
    ("TSM-8", 8, None, [0, 1, 2], 98.75, 0.83, 14.51),
    ("TSM-16", 16, None, [0, 1, 2], 99.17, 1.10, 29.02),
    ("TSM-all", 32, None, [0, 1], 98.96, 0.88, 58.03),
    ("Ours-uniform-8", 32, 8, [0, 1], 98.96, 0.29, 28.49),
    ("Ours-slope-8", 32, 8, [0, 1], 88.96, 0.88, 28.49),
    ("Ours-cumulative-8", 32, 8, [0, 1], 99.38, 0.29, 28.49),
    ("Ours-uniform-16", 32, 16, [0, 1], 98.75, 0.59, 38.41),
    ("Ours-slope-16", 32, 16, [0, 1], 96.67, 0.59, 38.41),
    ("Ours-cumulative-16", 32, 16, [0, 1], 99.17, 0.59, 38.41),
]
ROW_ORDER = [r[0] for r in DEFAULT_TABLE]


def default_rows() -> list[dict]:
    return [
        {
            "model": m,
            "frames": f,
            "clusters": g,
            "seeds": s,
            "top1": None,
            "top1_mean": mean,
            "top1_std": std,
            "gmac_224": gmac,
            "source": "docs/results.md (per-seed values not kept)",
        }
        for m, f, g, s, mean, std, gmac in DEFAULT_TABLE
    ]


def sparse_rows(results: dict) -> list[dict]:
    """One object per row of a table1.py results.json that has at least one finished seed."""
    rows = []
    for name in ROW_ORDER:
        entry = results.get(name)
        if not entry or not entry.get("runs"):
            continue
        seeds = sorted(int(s) for s in entry["runs"])
        runs = [entry["runs"][str(s)] for s in seeds]
        top1 = [round(100 * r["last_top1"], 2) for r in runs]
        best = [round(100 * r["best_top1"], 2) for r in runs]
        cost = entry["cost"]["224px"]
        clusters = None if name.startswith("TSM") else int(name.rsplit("-", 1)[1])
        rows.append(
            {
                "model": name,
                "frames": cost["frames"],
                "clusters": clusters,
                "seeds": seeds,
                "top1": top1,
                "top1_mean": round(statistics.mean(top1), 2),
                "top1_std": round(statistics.stdev(top1), 2) if len(top1) > 1 else None,
                "top1_best_epoch": best,
                "gmac_224": round(cost["gmacs"], 2),
                "saved_mib_224": round(cost["saved_mib"]),
                "saved_mib_224_checkpointed": round(cost["saved_mib_checkpointed"]),
                "wall_seconds": [round(r["seconds"]) for r in runs],
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    out = [
        "| Model | #Frames | #Clusters | GMAC/video at 224 px | saved MiB/video at 224 px: plain / checkpointed "
        "| top-1 % per seed (last epoch) | top-1 % mean ± std | best-epoch top-1 % per seed | wall s/run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        std = "" if r["top1_std"] is None else f" ± {r['top1_std']:.2f}"
        seeds = ", ".join(f"{v:.2f} (s{s})" for s, v in zip(r["seeds"], r["top1"]))
        out.append(
            f"| {r['model']} | {'all (32)' if r['frames'] == 32 else r['frames']} | {r['clusters'] or '-'} | "
            f"{r['gmac_224']:.2f} | {r['saved_mib_224']} / {r['saved_mib_224_checkpointed']} | {seeds} | "
            f"{r['top1_mean']:.2f}{std} | {', '.join(f'{v:.2f}' for v in r['top1_best_epoch'])} | "
            f"{statistics.mean(r['wall_seconds']):.0f} |"
        )
    return "\n".join(out)


# --- the figure (OpenCV, like fvdeploy.training.plots: the project has no plotting dependency) ---
PANEL_W, PANEL_H, PAD_L, PAD_R, PAD_T, PAD_B = 470, 400, 55, 15, 40, 45
X_MAX, Y_MIN, Y_MAX = 60.0, 0.0, 100.0
JITTER = {"uniform": -1.0, "slope": 0.0, "cumulative": 1.0}  # GMAC offsets so the G = 8 rows don't overlap


def _colour(name: str) -> tuple[int, int, int]:
    return PALETTE[ROW_ORDER.index(name) % len(PALETTE)]


def _marker(img: np.ndarray, name: str, x: int, y: int) -> None:
    c = _colour(name)
    if name.startswith("TSM"):
        cv2.circle(img, (x, y), 6, c, -1, cv2.LINE_AA)
    elif name.endswith("-8"):
        cv2.rectangle(img, (x - 5, y - 5), (x + 5, y + 5), c, -1)
    else:
        pts = np.array([[x, y - 7], [x + 7, y], [x, y + 7], [x - 7, y]], np.int32)
        cv2.fillPoly(img, [pts], c, cv2.LINE_AA)


def _panel(rows: list[dict], title: str) -> np.ndarray:
    img = np.full((PANEL_H, PANEL_W, 3), 255, np.uint8)
    x0, x1, y0, y1 = PAD_L, PANEL_W - PAD_R, PANEL_H - PAD_B, PAD_T

    def px(gmac: float, top1: float) -> tuple[int, int]:
        return (
            int(round(x0 + (x1 - x0) * gmac / X_MAX)),
            int(round(y0 + (y1 - y0) * (top1 - Y_MIN) / (Y_MAX - Y_MIN))),
        )

    for v in range(0, 101, 20):
        _, y = px(0, v)
        cv2.line(img, (x0, y), (x1, y), (235, 235, 235), 1)
        cv2.putText(img, f"{v}", (x0 - 32, y + 5), FONT, 0.42, BLACK, 1, cv2.LINE_AA)
    for g in range(0, 61, 10):
        x, _ = px(g, 0)
        cv2.line(img, (x, y0), (x, y0 + 4), BLACK, 1)
        cv2.putText(img, f"{g}", (x - 8, y0 + 18), FONT, 0.42, BLACK, 1, cv2.LINE_AA)
    _, chance = px(0, 25)
    for x in range(x0, x1, 10):  # chance level: four classes
        cv2.line(img, (x, chance), (min(x + 5, x1), chance), GREY, 1)
    cv2.putText(img, "chance", (x1 - 55, chance - 5), FONT, 0.4, GREY, 1, cv2.LINE_AA)
    cv2.rectangle(img, (x0, y1), (x1, y0), BLACK, 1)
    cv2.putText(img, "GMAC per video at 224 px", (x0 + 110, PANEL_H - 8), FONT, 0.45, BLACK, 1, cv2.LINE_AA)
    cv2.putText(img, title, (x0, 25), FONT, 0.5, BLACK, 1, cv2.LINE_AA)
    for r in rows:
        method = r["model"].split("-")[1]
        x, y = px(r["gmac_224"] + JITTER.get(method, 0.0), r["top1_mean"])
        if r["top1_std"]:
            _, lo = px(0, max(Y_MIN, r["top1_mean"] - r["top1_std"]))
            _, hi = px(0, min(Y_MAX, r["top1_mean"] + r["top1_std"]))
            cv2.line(img, (x, lo), (x, hi), _colour(r["model"]), 2)
            cv2.line(img, (x - 4, lo), (x + 4, lo), _colour(r["model"]), 2)
            cv2.line(img, (x - 4, hi), (x + 4, hi), _colour(r["model"]), 2)
        _marker(img, r["model"], x, y)
    return img


def _legend(height: int) -> np.ndarray:
    img = np.full((height, 190, 3), 255, np.uint8)
    cv2.putText(img, "top-1 % (last epoch)", (5, 25), FONT, 0.42, BLACK, 1, cv2.LINE_AA)
    for i, name in enumerate(ROW_ORDER):
        y = 60 + 26 * i
        _marker(img, name, 15, y)
        cv2.putText(img, name, (30, y + 5), FONT, 0.42, BLACK, 1, cv2.LINE_AA)
    cv2.putText(img, "bars: +-1 std over seeds", (5, 60 + 26 * len(ROW_ORDER) + 10), FONT, 0.38, GREY, 1, cv2.LINE_AA)
    return img


def figure(default: list[dict], sparse: list[dict], path: Path, sparse_seeds: str) -> Path:
    a = _panel(default, "Default Move4 (target moves in 16-24 of 32 frames)")
    b = _panel(sparse, f"Sparse Move4 (4 of 32 frames; seeds {sparse_seeds})")
    img = np.hstack([a, b, _legend(PANEL_H)])
    return save_png(img, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, required=True, help="table1.py's results.json of the sparse set")
    ap.add_argument("--data", type=Path, help="the sparse Move4 folder, for TSM's sampling coverage of its test set")
    ap.add_argument("--test", type=int, default=240, help="test videos used (the first N of the list)")
    ap.add_argument("--json", type=Path, default=Path("docs/table1_sparse.json"))
    ap.add_argument("--default-json", type=Path, default=Path("docs/table1_default.json"))
    ap.add_argument("--png", type=Path, default=Path("docs/table1_accuracy_vs_cost.png"))
    args = ap.parse_args()
    rows = sparse_rows(json.loads(args.results.read_text()))
    if not rows:
        raise SystemExit(f"{args.results}: no finished runs yet")
    args.json.write_text(json.dumps(rows, indent=2) + "\n")
    args.default_json.write_text(json.dumps(default_rows(), indent=2) + "\n")
    seeds = sorted({s for r in rows for s in r["seeds"]})
    figure(default_rows(), rows, args.png, ",".join(map(str, seeds)))
    print(markdown(rows))
    if args.data:
        from fvdeploy.training.move4 import read_frame_kinds, run_frames_sampled

        kinds = [r["kinds"] for r in read_frame_kinds(args.data, "test").values()][: args.test]
        for k in (8, 16):
            hits = [run_frames_sampled(s, k) for s in kinds]
            print(
                f"TSM-{k} test sampling on {len(kinds)} test videos: >= 2 run frames in "
                f"{sum(h >= 2 for h in hits) / len(hits):.1%}, >= 1 in {sum(h >= 1 for h in hits) / len(hits):.1%}"
            )


if __name__ == "__main__":
    main()
