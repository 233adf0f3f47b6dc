"""``fvdeploy bench model``: model-only frames/s, full-video model vs TSM-all vs a plain ResNet."""

from __future__ import annotations

import time

from .gpu import sync


def bench_model(
    arch: str,
    device: str,
    precision: str | None,
    frames: int,
    size: int,
    clusters: int,
    batch: int,
    chunk: int,
    model: str | None = None,
    compile: bool = False,
    block_frames: int | None = None,
    log=print,
) -> dict:
    """Model-only frames/s of the full-video model (G clusters) vs TSM-all on the same weights and
    precision, on synthetic preprocessed frames already on the device; plus images/s of a plain
    torchvision ResNet of the same arch at ``batch`` as the yardstick. ``block_frames``: the torch
    backend's frames per stem + layer1 step (None: its default, 0: whole chunks), for both models;
    the JSON's ``block_frames`` is the step that ran (0: whole chunks)."""
    import torch
    import torchvision

    from ..backends import resolve_device, resolve_precision
    from ..backends.base import PRECISIONS
    from ..backends.torch_backend import TorchBackend
    from ..bundle import load_model
    from ..config import InputSpec, ModelConfig
    from ..engine.clusters import ClusterAccumulator
    from ..models import create_model
    from ..ops.halo import rechunk, stream_with_halo

    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    net = (
        load_model(model)
        if model
        else create_model(ModelConfig(arch=arch, num_classes=400, num_clusters=clusters, input=InputSpec(size, size)))
    )
    net.config = net.config.replace(num_clusters=clusters)
    backend = TorchBackend(net, dev, prec, block_frames=block_frames)
    size = net.config.input.crop
    dtype = PRECISIONS[prec]
    gen = torch.Generator(device=dev).manual_seed(0)
    video = torch.randn(frames, 3, size, size, device=dev, dtype=dtype, generator=gen)

    def chunks():
        return rechunk(iter(video.split(chunk)), chunk)

    features = backend.frame_features
    if compile:  # torch.compile of stem + layer1 on the fixed chunk shape: measured, not yet used by the runtime
        compiled = torch.compile(backend.frames_model.forward_frames, dynamic=False)

        def features(x):
            with torch.inference_mode():
                return compiled(x.to(backend.features_dtype)[None])[0]

    def full() -> None:
        acc = ClusterAccumulator(1 << 62, 1 << 30, can_recompute=False)
        for feats in stream_with_halo(features, chunks(), backend.halo, min_frames=clusters):
            acc.add(feats)
        means, _ = acc.finish(clusters, net.config.method)
        backend.clip_logits(means[None].to(dev))

    def stem_layer1() -> None:  # the part of full() that runs on every frame, as the runtime streams it
        for _ in stream_with_halo(features, chunks(), backend.halo, min_frames=clusters):
            pass

    def tsm_all() -> None:
        for _ in stream_with_halo(
            lambda x: backend.clip_logits(backend.frame_features(x)[None])[0], chunks(), backend.network_halo
        ):
            pass

    plain = getattr(torchvision.models, arch if arch != "tiny" else "resnet18")().eval().to(dev, dtype)
    if dev.type == "cuda":
        plain = plain.to(memory_format=torch.channels_last)
    images = torch.randn(batch, 3, size, size, device=dev, dtype=dtype, generator=gen)

    def yardstick() -> None:
        with torch.inference_mode():
            plain(images)

    def timed(fns: dict, repeat: int = 3) -> dict:
        """Best of ``repeat`` runs of each, after a warm-up (cudnn autotuning, allocator), the
        functions interleaved run by run: a load that drifts during the benchmark (a shared
        machine) then hits every figure alike instead of skewing the ratios."""
        for fn in fns.values():
            fn()
        sync(dev)
        best = dict.fromkeys(fns, float("inf"))
        for _ in range(repeat):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                sync(dev)
                best[name] = min(best[name], time.perf_counter() - t0)
        return best

    times = timed({"full": full, "tsm_all": tsm_all, "plain": yardstick, "stem": stem_layer1})
    t_full, t_all, t_plain, t_stem = times["full"], times["tsm_all"], times["plain"], times["stem"]
    out = {
        "arch": net.config.arch,
        "device": str(dev),
        "precision": prec,
        "frames": frames,
        "size": size,
        "clusters": clusters,
        "chunk": chunk,
        "full_fps": round(frames / t_full, 1),
        "tsm_all_fps": round(frames / t_all, 1),
        "speedup_vs_tsm_all": round(t_all / t_full, 2),
        "full_s": round(t_full, 3),
        "tsm_all_s": round(t_all, 3),
        "stem_layer1_s": round(t_stem, 3),
        "plain_images_per_s": round(batch / t_plain, 1),
        "plain_batch": batch,
        "compiled": compile,
        "block_frames": backend.block_frames,
        "threads": torch.get_num_threads(),
        # what --backend auto runs for this device and precision (this benchmark runs torch)
        "auto": _auto(dev, prec),
    }
    log(f"auto on {dev} {prec}: {out['auto']}")
    log(
        f"{out['arch']} {prec} on {dev}: full-video G={clusters} {out['full_fps']} frames/s, TSM-all "
        f"{out['tsm_all_fps']} frames/s ({out['speedup_vs_tsm_all']}x); stem + layer1 {out['stem_layer1_s']} s; plain {arch} {out['plain_images_per_s']} images/s"
    )
    return out


def _auto(device, precision: str) -> str:
    from ..backends import choose_backend
    from ..errors import FvdeployError

    try:
        chosen = choose_backend(device, None, precision)
    except FvdeployError as e:
        return str(e)
    return f"{chosen.backend} {precision}: {chosen.reason}"
