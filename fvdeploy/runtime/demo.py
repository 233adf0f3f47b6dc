"""A first demo, until the runtime lands: a real forward pass of a freshly initialised full-video
model over every frame of the shared Big Buck Bunny clip (or a generated clip), printing the
temporal clusters it finds."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from ..config import InputSpec, ModelConfig
from ..models import create_model
from ..ops import cluster_segments

CLIP = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "bigbuckbunny.mp4"


def frames() -> np.ndarray:
    if CLIP.is_file():
        cap, out = cv2.VideoCapture(str(CLIP)), []
        ok, frame = cap.read()
        while ok:
            out.append(cv2.resize(frame, (112, 112), interpolation=cv2.INTER_AREA)[:, :, ::-1])
            ok, frame = cap.read()
        return np.stack(out)
    t = np.arange(60)[:, None, None, None]
    return ((np.sin(t / 7.0) * 127 + 128) * np.ones((60, 112, 112, 3))).astype(np.uint8)


def main() -> None:
    video = frames()
    x = torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255.0
    cfg = ModelConfig(arch="resnet18", num_classes=4, input=InputSpec(112, 112))
    model = create_model(cfg).eval()
    with torch.no_grad():
        out = model(((x - 0.45) / 0.225)[None])
    print(f"{len(video)} frames -> {cfg.num_clusters} clusters ({cfg.method}):")
    for k, (s, e) in enumerate(cluster_segments(out.cluster_ids)[0]):
        print(f"  cluster {k}: frames {s}-{e - 1}")


if __name__ == "__main__":
    main()
