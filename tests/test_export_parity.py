"""Exported graphs give PyTorch's answers: the whole graph (static-G clustering inside) over the
method x G x T x batch grid, and the split pair through the runtime on a 200-frame clip in small
chunks (a 2,000-frame clip at the runtime's own sizes under ``slow``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from clips import synthetic_frames, write_clip
from conftest import tiny_config

from fvdeploy.bundle import save_model
from fvdeploy.engine import MemoryPlan
from fvdeploy.export import Exporter, ExportOptions
from fvdeploy.export.onnx import export_whole
from fvdeploy.export.parity import ATOL, MAX_ABS, RTOL, cluster_starts, torch_reference
from fvdeploy.io.sources import read_video
from fvdeploy.models import create_model
from fvdeploy.runtime import Classifier

ort = pytest.importorskip("onnxruntime")

S = 32


def frames_u8(n: int, t: int, seed: int) -> torch.Tensor:
    """Moving content with scene cuts (the clustering has boundaries to find), per video."""
    return torch.stack([torch.from_numpy(synthetic_frames(t, S, S, seed=seed + i, cut_every=11)) for i in range(n)])


@pytest.fixture(scope="module")
def whole_graphs(tmp_path_factory):
    """(method, G) -> (model, ONNX Runtime session on model.onnx), exported once per module."""
    cache = {}

    def get(method: str, g: int):
        if (method, g) not in cache:
            torch.manual_seed(g)
            model = create_model(tiny_config(num_clusters=g, method=method)).eval()
            path = export_whole(model, tmp_path_factory.mktemp(f"{method}{g}") / "model.onnx", 17)
            cache[method, g] = model, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return cache[method, g]

    return get


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("g", [8, 16])
@pytest.mark.parametrize("method", ["cumulative", "slope", "uniform"])
def test_whole_graph_matches_pytorch(whole_graphs, method, g, batch):
    model, session = whole_graphs(method, g)
    for t in (1, g - 1, g, 37, 300):
        lengths = [t] if batch == 1 else [t, max(1, t // 2), max(1, t - 5)]
        frames = frames_u8(batch, t, seed=t)
        lens = torch.tensor(lengths)
        logits, cluster_logits, ids = session.run(None, {"frames": frames.numpy(), "lengths": lens.numpy()})
        ref = torch_reference(model, frames, lens)
        where = f"{method} G={g} T={t} lengths={lengths}"
        assert ids.shape == (batch, max(t, g)), where
        np.testing.assert_array_equal(ids, ref[2].numpy(), err_msg=where)
        for got, want in ((logits, ref[0]), (cluster_logits, ref[1])):
            assert np.abs(got - want.numpy()).max() <= MAX_ABS, where
            np.testing.assert_allclose(got, want.numpy(), rtol=RTOL, atol=ATOL, err_msg=where)
        # the comparison saw real clusters: every video has G of them, padding is -1
        for row, length in zip(ids, lengths):
            assert len(cluster_starts(row)) == g and (row[max(length, g) :] == -1).all(), where
    assert ref[0].std() > 1e-3  # logits that vary across classes: the comparison can fail


@pytest.mark.parametrize("method", ["cumulative", "slope", "uniform"])
def test_int32_graph_that_tensorrt_builds_matches_pytorch(tmp_path, method):
    """The whole graph TensorRT's engine is built from (int32 clustering, int32 lengths and ids), run
    here on ONNX Runtime: the same ids as PyTorch's int64 op within the int32 frame bound."""
    torch.manual_seed(7)
    model = create_model(tiny_config(num_clusters=8, method=method)).eval()
    path = export_whole(model, tmp_path / "model.int32.onnx", 17, torch.int32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for t in (1, 7, 8, 37, 300):
        lengths = torch.tensor([t, max(1, t // 2), max(1, t - 5)])
        frames = frames_u8(3, t, seed=t)
        logits, _, ids = session.run(None, {"frames": frames.numpy(), "lengths": lengths.numpy().astype(np.int32)})
        ref = torch_reference(model, frames, lengths)
        assert ids.dtype == np.int32
        np.testing.assert_array_equal(ids, ref[2].numpy(), err_msg=f"{method} T={t}")
        np.testing.assert_allclose(logits, ref[0].numpy(), rtol=RTOL, atol=ATOL)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A tiny model (G = 8) exported with its bundle, once per module."""
    torch.manual_seed(3)
    root = tmp_path_factory.mktemp("bundle")
    model_dir = save_model(create_model(tiny_config(num_clusters=8, method="cumulative")).eval(), root / "model")
    Exporter(model_dir, ExportOptions())()
    return model_dir


def check_split_pair_whole_graph_and_pytorch(model_dir, clip, num_frames, chunk_size=None, sums_plan=None):
    """The runtime on the split pair (ONNX Runtime) and on PyTorch, and the whole graph, on one clip:
    identical ids on identical input, the same label, segments within a frame, scores within 1e-4;
    and the bounded-memory path too (``sums_plan``: nothing stored verbatim, slot sums, straddling
    slots recomputed). ``chunk_size``: frames per stem + layer1 call (default: the runtime's)."""
    frames = torch.from_numpy(read_video(clip)[:, :, :, ::-1].copy())[None]  # BGR -> the model's RGB, already SxS
    lens = torch.tensor([frames.shape[1]])
    torch_clf = Classifier.load(model_dir, device="cpu", backend="torch", chunk_size=chunk_size)
    ort_clf = Classifier.load(model_dir, device="cpu", backend="onnxruntime", chunk_size=chunk_size)
    assert ort_clf.run_info["provider"] == "CPUExecutionProvider" and ort_clf.backend.name == "onnxruntime"
    ref = torch_reference(torch_clf.backend.model, frames, lens)
    session = ort.InferenceSession(str(model_dir / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    whole = session.run(None, {"frames": frames.numpy(), "lengths": lens.numpy()})
    np.testing.assert_array_equal(whole[2], ref[2].numpy())  # identical ids on identical input
    np.testing.assert_allclose(whole[0], ref[0].numpy(), rtol=RTOL, atol=ATOL)

    starts = cluster_starts(ref[2][0].numpy())
    probs = torch.softmax(ref[0][0].double(), 0)
    unit_probs = torch.softmax(ref[1][0].double(), 1)
    results = {"torch": torch_clf.classify(clip), "onnxruntime": ort_clf.classify(clip)}
    assert torch_clf.plan(1).chunk_frames < num_frames and ort_clf.plan(1).chunk_frames < num_frames  # chunked
    ort_clf.memory_plan = sums_plan
    results["onnxruntime, slot sums"] = ort_clf.classify(clip)
    assert ort_clf.last_stats["memory_path"].startswith("sums")
    labels = torch_clf.config.labels
    for name, result in results.items():
        assert result.num_frames == num_frames, name
        assert result.label == labels[int(probs.argmax())], name
        got = [s.start_frame for s in result.segments]
        assert len(got) == 8 and max(abs(a - b) for a, b in zip(got, starts)) <= 1, (name, got, starts)
        for label, score in result.topk:
            assert abs(score - float(probs[labels.index(label)])) <= 1e-4, name
        for seg, p in zip(result.segments, unit_probs):
            assert abs(seg.score - float(p.max())) <= 1e-4, name
    uniform = [i * num_frames // 8 for i in range(8)]
    assert len(set(starts)) == 8 and starts != uniform  # real, non-uniform clusters


@pytest.mark.slow
def test_split_pair_whole_graph_and_pytorch_agree_on_2000_frames(bundle, tmp_path):
    """A long clip (the real size: under slow). The default run's version is the next test."""
    clip = write_clip(tmp_path / "clip2000.mp4", synthetic_frames(2000, S, S, seed=5))
    plan = MemoryPlan(budget=2**20, chunk_frames=50, decode_frames=25, store_bytes=0, slot_bytes=12 * 16 * 8 * 8 * 8)
    check_split_pair_whole_graph_and_pytorch(bundle, clip, 2000, sums_plan=plan)


def test_split_pair_whole_graph_and_pytorch_agree_across_chunks(bundle, tmp_path):
    """The same checks on a 200-frame clip with the chunks made small, so that it crosses about as
    many stem + layer1 chunk boundaries (halo context from the previous chunk: 33 here, 31 there)
    and as many slot boundaries (11 slots, straddling ones recomputed) as the 2,000-frame clip at
    the runtime's own sizes."""
    clip = write_clip(tmp_path / "clip200.mp4", synthetic_frames(200, S, S, seed=5))
    plan = MemoryPlan(budget=2**20, chunk_frames=7, decode_frames=5, store_bytes=0, slot_bytes=12 * 16 * 8 * 8 * 8)
    check_split_pair_whole_graph_and_pytorch(bundle, clip, 200, chunk_size=6, sums_plan=plan)


@pytest.mark.parametrize("method", ["cumulative", "slope", "uniform"])
def test_int32_clustering_is_exact_up_to_its_frame_bound(method):
    """At the recorded bound (ResNet-50 layer1 at 224 px), with distances as large as they can be,
    the int32 op equals the int64 core op: no intermediate overflows (the paper's G * C_i would)."""
    from fvdeploy.export.graphs import int32_max_frames, static_cluster_ids
    from fvdeploy.ops.clustering import cluster_ids_from_distances

    chw = 256 * 56 * 56
    t = int32_max_frames((256, 56, 56))
    gen = torch.Generator().manual_seed(0)
    distances = torch.randint(chw // 2, chw + 1, (2, t - 1), generator=gen)
    distances[1, : t // 3] = chw  # saturated, then quieter: uneven clusters
    distances[1, t // 3 :] //= 7
    for g in (8, 16):
        eff = torch.tensor([t, t])
        want = cluster_ids_from_distances(distances, g, method)
        got = static_cluster_ids(distances.to(torch.int32), eff.to(torch.int32), g, method, torch.int32)
        assert got.dtype == torch.int32
        assert torch.equal(got.long(), want), (method, g)
    assert (t - 1) * chw < 2**31 <= 8 * (t - 1) * chw  # the bound is tight where G * C_total is not
