"""Small PNG plots drawn with OpenCV (no plotting dependency): a confusion matrix, grouped bars,
and coloured strips of cluster assignments."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (150, 150, 150)
# A qualitative palette (BGR), distinct neighbours: cluster k gets PALETTE[k % len].
PALETTE = [
    (180, 119, 31),
    (14, 127, 255),
    (44, 160, 44),
    (40, 39, 214),
    (189, 103, 148),
    (75, 86, 140),
    (194, 119, 227),
    (127, 127, 127),
    (34, 189, 188),
    (207, 190, 23),
    (232, 199, 174),
    (120, 187, 255),
    (138, 223, 152),
    (150, 152, 255),
    (213, 176, 197),
    (148, 156, 196),
]


def _text(img: np.ndarray, s: str, org: tuple[int, int], scale: float = 0.45, color=BLACK, thickness: int = 1) -> None:
    cv2.putText(img, s, org, FONT, scale, color, thickness, cv2.LINE_AA)


def _write(path: str | Path, img: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"{path}: could not write the PNG")
    return path


def confusion_png(confusion: np.ndarray, labels: list[str], path: str | Path, title: str = "") -> Path:
    """Rows: true class, columns: predicted; cells shaded by the row-normalised rate, counts written."""
    c = len(labels)
    cell = max(28, min(64, 640 // max(1, c)))
    left = 12 + 8 * max(len(n) for n in labels)
    top = 40 + 8 * max(len(n) for n in labels)
    img = np.full((top + c * cell + 20, left + c * cell + 20, 3), 255, np.uint8)
    rows = confusion.sum(1, keepdims=True).clip(min=1)
    rate = confusion / rows
    for i in range(c):
        for j in range(c):
            shade = int(255 - 200 * rate[i, j])
            y, x = top + i * cell, left + j * cell
            cv2.rectangle(img, (x, y), (x + cell, y + cell), (255, shade, shade) if i != j else (shade, 255, shade), -1)
            cv2.rectangle(img, (x, y), (x + cell, y + cell), GREY, 1)
            if c <= 30:
                _text(img, str(int(confusion[i, j])), (x + 4, y + cell // 2 + 5), 0.4)
        _text(img, labels[i], (6, top + i * cell + cell // 2 + 5), 0.4)
    col_labels = np.full((cell * c, top - 30, 3), 255, np.uint8)
    for j in range(c):
        _text(col_labels, labels[j], (4, j * cell + cell // 2 + 5), 0.4)
    img[30:top, left : left + c * cell] = cv2.rotate(col_labels, cv2.ROTATE_90_COUNTERCLOCKWISE)
    _text(img, title or "confusion (rows: true, columns: predicted)", (6, 20), 0.5)
    return _write(path, img)


def grouped_bars_png(
    values: dict[str, list[float]],
    path: str | Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    errors: dict[str, list[float]] | None = None,
) -> Path:
    """One group per x position (1..n), one bar per series; optional error bars."""
    names = list(values)
    n = max(len(v) for v in values.values())
    vmax = max(max(v) + (max(errors[k]) if errors else 0) for k, v in values.items()) or 1.0
    w, h, left, bottom, top = 900, 450, 70, 50, 80
    img = np.full((h, w, 3), 255, np.uint8)
    plot_w, plot_h = w - left - 20, h - top - bottom
    group = plot_w / n
    bar = group * 0.8 / len(names)
    for tick in range(6):
        y = int(h - bottom - plot_h * tick / 5)
        cv2.line(img, (left, y), (w - 20, y), (230, 230, 230), 1)
        _text(img, f"{vmax * tick / 5:.3g}", (4, y + 4), 0.4)
    for s, name in enumerate(names):
        color = PALETTE[s % len(PALETTE)]
        for i, v in enumerate(values[name]):
            x0 = int(left + i * group + group * 0.1 + s * bar)
            y0 = int(h - bottom - plot_h * v / vmax)
            cv2.rectangle(img, (x0, y0), (int(x0 + bar) - 1, h - bottom), color, -1)
            if errors:
                e = int(plot_h * errors[name][i] / vmax)
                xc = int(x0 + bar / 2)
                cv2.line(img, (xc, y0 - e), (xc, y0 + e), BLACK, 1)
        cv2.rectangle(img, (left + 10 + s * 170, 34), (left + 24 + s * 170, 48), color, -1)
        _text(img, name, (left + 30 + s * 170, 47), 0.45)
    for i in range(n):
        _text(img, str(i + 1), (int(left + i * group + group / 2 - 5), h - bottom + 18), 0.4)
    cv2.line(img, (left, h - bottom), (w - 20, h - bottom), BLACK, 1)
    cv2.line(img, (left, top), (left, h - bottom), BLACK, 1)
    _text(img, xlabel, (w // 2 - 60, h - 10), 0.5)
    _text(img, ylabel, (4, top - 20), 0.45)
    _text(img, title, (10, 20), 0.5)
    return _write(path, img)


def cluster_strip(ids: list[int], width: int, height: int = 18) -> np.ndarray:
    """One row: each frame a cell coloured by its cluster id (-1, padding, in grey)."""
    t = len(ids)
    img = np.full((height, width, 3), 255, np.uint8)
    for i, c in enumerate(ids):
        x0, x1 = int(i * width / t), int((i + 1) * width / t)
        cv2.rectangle(img, (x0, 0), (max(x0, x1 - 1), height - 1), PALETTE[c % len(PALETTE)] if c >= 0 else GREY, -1)
    for i in range(1, t):  # a thin line where the cluster changes
        if ids[i] != ids[i - 1]:
            x = int(i * width / t)
            cv2.line(img, (x, 0), (x, height - 1), BLACK, 1)
    return img


def labelled_rows(rows: list[tuple[str, np.ndarray]], title: str, label_width: int = 150) -> np.ndarray:
    """Stack image rows with a text label on the left of each and a title on top."""
    width = max(r.shape[1] for _, r in rows)
    parts = [np.full((28, label_width + width, 3), 255, np.uint8)]
    _text(parts[0], title, (6, 19), 0.5)
    for label, r in rows:
        row = np.full((r.shape[0] + 4, label_width + width, 3), 255, np.uint8)
        row[2 : 2 + r.shape[0], label_width : label_width + r.shape[1]] = r
        _text(row, label, (4, r.shape[0] // 2 + 7), 0.4)
        parts.append(row)
    return np.concatenate(parts)


def save_png(img: np.ndarray, path: str | Path) -> Path:
    return _write(path, img)
