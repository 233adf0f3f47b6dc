"""``fvdeploy bench onnx``: PyTorch eager vs the export bundle's runtimes (ONNX Runtime, OpenVINO) on
the same clip, same device, same threads.

Two figures per backend, each the best of ``repeats`` runs after a warm-up, the backends
interleaved run by run:

- model only: the already-preprocessed frames of the clip through ``frame_features`` (in the
  runtime's chunks, with halos) and the G cluster means through ``clip_logits``;
- end to end: ``Classifier.classify(path)``: decode, preprocess, model, clustering, results.

Ratios are PyTorch seconds / that backend's seconds: above 1, the backend is faster. Every side runs
fp32 (the ONNX files are fp32) with the same intra-op thread count. Parity figures per backend
against PyTorch on the same clip (docs/design.md#equality): same top-1, largest score difference,
largest cluster-boundary shift.
"""

from __future__ import annotations

import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from ..ops.halo import rechunk, stream_with_halo
from .clips import looped_clip


def _best(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _model_only(backend, frames: torch.Tensor, chunk: int) -> torch.Tensor:
    from ..ops.clustering import aggregate_clusters, cluster_ids

    g = backend.config.num_clusters
    feats = torch.cat(
        list(
            stream_with_halo(
                backend.frame_features, rechunk(iter(frames.split(chunk)), chunk), backend.halo, min_frames=g
            )
        )
    )[None]
    ids = cluster_ids(feats, g, backend.config.method)
    means = aggregate_clusters(feats, ids, g)
    out = backend.clip_logits(means)
    if backend.device.type == "cuda":
        torch.cuda.synchronize(backend.device)
    return out


BUNDLE_BACKENDS = ("onnxruntime", "openvino")


def default_backends(device: str = "cpu") -> tuple[str, ...]:
    """PyTorch, ONNX Runtime, and on the CPU OpenVINO where it is installed."""
    import importlib.util

    cpu = (device or "cpu").strip().lower() == "cpu"
    return ("torch", "onnxruntime") + (("openvino",) if cpu and importlib.util.find_spec("openvino") else ())


def bench_onnx(
    model: str | None,
    video: str | None,
    device: str = "cpu",
    frames: int = 600,
    repeats: int = 2,
    chunk: int = 64,
    size: tuple[int, int] = (320, 180),
    threads: int | None = None,
    log=print,
    backends: tuple[str, ...] | None = None,
) -> dict:
    """``threads``: intra-op threads of every side (default: torch's current count). On a shared
    machine, fewer threads than cores avoids OpenMP barrier stalls that would swamp the figures.
    ``backends``: which to run (default :func:`default_backends`); PyTorch is always the reference."""
    from ..backends import resolve_device
    from ..backends.ort_backend import OrtBackend
    from ..backends.torch_backend import TorchBackend
    from ..bundle import load_model, resolve_model_path
    from ..errors import BackendError
    from ..export.exporter import Exporter, ExportOptions
    from ..export.parity import compare_results
    from ..export_record import open_bundle
    from ..io.sources import read_video
    from ..io.transforms import preprocess
    from ..runtime import Classifier

    names = ("torch",) + tuple(b for b in (backends or default_backends(str(resolve_device(device)))) if b != "torch")
    unknown = [b for b in names if b not in ("torch", *BUNDLE_BACKENDS)]
    if unknown:
        raise BackendError(f"bench onnx compares torch, {', '.join(BUNDLE_BACKENDS)}; not {unknown[0]!r}")
    dev = resolve_device(device)
    source = resolve_model_path(model)
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="fvdeploy-bench-onnx-") as tmp:
        try:
            bundle = open_bundle(source)
            log(f"using the export bundle in {bundle.dir}")
        except BackendError:  # no bundle (or a stale one): export a fresh copy for the benchmark
            log(f"exporting {source} to a temporary bundle ...")
            Exporter(source, ExportOptions(out=Path(tmp) / "model"), log=lambda m: None)()
            bundle = open_bundle(Path(tmp) / "model")
        described = video
        if video is None:
            video = str(looped_clip(Path(tmp) / "bench.mp4", frames, *size))
            described = f"generated: {frames} frames at {size[0]}x{size[1]} (mp4v)"
        net = load_model(source)
        cfg = net.config
        ort_device = "cpu" if dev.type == "cpu" else f"cuda:{dev.index or 0}"
        opened = {
            "torch": lambda: TorchBackend(net, dev, "fp32"),
            "onnxruntime": lambda: OrtBackend(bundle, cfg, device=ort_device, threads=threads),
        }
        if "openvino" in names:
            from fvdeploy.backends.openvino_backend import OpenVinoBackend

            opened["openvino"] = lambda: OpenVinoBackend(bundle, cfg, device=str(dev), threads=threads)
        backends = {name: opened[name]() for name in names}
        decoded = torch.from_numpy(read_video(video))
        x = preprocess(decoded.to(dev), cfg.input, "bgr")
        n = x.shape[0]
        log(f"{cfg.arch} at {cfg.input.crop} px, G={cfg.num_clusters}, {n} frames, {threads} threads, device {dev}")
        out: dict = {
            "model": str(source),
            "arch": cfg.arch,
            "crop": cfg.input.crop,
            "clusters": cfg.num_clusters,
            "video": str(described),
            "frames": n,
            "device": str(dev),
            "threads": threads,
            "precision": "fp32",
        }
        classifiers = {name: Classifier(backend) for name, backend in backends.items()}
        for name, backend in backends.items():  # warm up: allocations, ORT's arena, the decoder
            with torch.inference_mode():
                _model_only(backend, x[: min(n, chunk)], chunk)
            classifiers[name].classify(video)
        # Interleaved repeats, best of each: a load that drifts during the run hits both sides alike.
        best = {name: {"model": float("inf"), "e2e": float("inf"), "timings": {}} for name in backends}
        results, model_logits = {}, {}
        for _ in range(repeats):
            for name, backend in backends.items():
                with torch.inference_mode():
                    seconds, model_logits[name] = _best(partial(_model_only, backend, x, chunk), 1)
                best[name]["model"] = min(best[name]["model"], seconds)
            for name, clf in classifiers.items():
                seconds, result = _best(partial(clf.classify, video), 1)
                if seconds < best[name]["e2e"]:
                    best[name]["e2e"], best[name]["timings"] = seconds, result.timings
                results[name] = result
        for name, backend in backends.items():
            model_s, e2e_s = best[name]["model"], best[name]["e2e"]
            out[name] = {
                "provider": backend.provider,
                "model_s": round(model_s, 4),
                "model_fps": round(n / model_s, 1),
                "end_to_end_s": round(e2e_s, 4),
                "end_to_end_fps": round(n / e2e_s, 1),
                "end_to_end_timings": best[name]["timings"],
            }
            log(
                f"{name:12s} ({backend.provider}): model only {out[name]['model_fps']} fps, "
                f"end to end {out[name]['end_to_end_fps']} fps"
            )
        t = out["torch"]
        out["backends"] = list(names)
        out["ratios"], out["parity"] = {}, {}
        for name in names[1:]:
            o = out[name]
            out["ratios"][name] = {
                "model_only": round(t["model_s"] / o["model_s"], 3),
                "end_to_end": round(t["end_to_end_s"] / o["end_to_end_s"], 3),
            }
            check = compare_results(f"{name} vs torch", results["torch"], results[name])
            diff = (model_logits[name].float().cpu() - model_logits["torch"].float().cpu()).abs().max().item()
            out["parity"][name] = {"passed": check.passed, **check.figures, "model_only_logits_max_abs": diff}
            log(
                f"PyTorch s / {name} s: model only {out['ratios'][name]['model_only']}, end to end "
                f"{out['ratios'][name]['end_to_end']}; parity: {check.detail}"
            )
        if "onnxruntime" in names:  # the fields of the two-backend version of this benchmark
            out["ratio"] = out["ratios"]["onnxruntime"]
            out["same_top1"] = out["parity"]["onnxruntime"]["same_top1"]
        return out
