"""The inference graph (BatchNorm folded, channels_last, copy-free shift, stem + layer1 a few frames
at a time on CPU) gives today's answers: the fp32 tolerances of docs/design.md#equality against the unfolded
model, and identical cluster ids on the test clips; training never sees the folded copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from clips import synthetic_frames, write_clip
from conftest import tiny_config
from torch import nn

from fvdeploy.backends.torch_backend import TorchBackend, default_block_frames
from fvdeploy.bundle import load_model
from fvdeploy.export.parity import ATOL, MAX_ABS, RTOL, boundary_shift
from fvdeploy.models import create_model
from fvdeploy.models.inference import (
    StepBuffers,
    conv_bn_pairs,
    drop_inference_copy,
    fold_batchnorm,
    frames_blocked,
    has_batchnorm,
    steppable,
)
from fvdeploy.ops.temporal_shift import _shift_traceable, temporal_shift
from fvdeploy.runtime import Classifier

SAMPLES = sorted((Path(__file__).resolve().parents[1] / "samples").glob("*.mp4"))


def with_real_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random-init BatchNorms are identities (mean 0, var 1, weight 1, bias 0) and fold to nothing:
    give them statistics a trained network has, so folding has something to get wrong."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(c, generator=gen) * 2 + 0.1)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.2)
    return model


def assert_within_tolerance(ref, got):
    diff = (ref.logits - got.logits).abs().max().item()
    assert diff <= MAX_ABS and torch.allclose(got.logits, ref.logits, rtol=RTOL, atol=ATOL), diff
    assert torch.equal(ref.logits.argmax(-1), got.logits.argmax(-1))


# -- the shift ------------------------------------------------------------------------------------
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("lengths", [None, [7, 3, 1]])
def test_eager_shift_equals_the_exported_writing_and_keeps_the_layout(memory_format, lengths):
    x = torch.randn(3 * 7, 24, 5, 6).to(memory_format=memory_format)
    lengths = None if lengths is None else torch.tensor(lengths)
    out = temporal_shift(x, 7, lengths)
    assert torch.equal(out, _shift_traceable(x, 7, lengths, 8))
    assert out.is_contiguous(memory_format=memory_format)  # no conversion back and forth around the conv


def test_eager_shift_gradient_equals_the_exported_writing():
    x = torch.randn(2 * 5, 16, 3, 3, requires_grad=True)
    w = torch.randn(2 * 5, 16, 3, 3)
    lengths = torch.tensor([5, 2])
    (temporal_shift(x, 5, lengths) * w).sum().backward()
    eager, x.grad = x.grad, None
    (_shift_traceable(x, 5, lengths, 8) * w).sum().backward()
    assert torch.equal(eager, x.grad)


# -- folding ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["tiny", "resnet18", "resnet50"])
def test_every_batchnorm_is_folded_and_the_original_is_untouched(arch):
    model = with_real_statistics(create_model(tiny_config(arch=arch))).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bns = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert len(conv_bn_pairs(model)) == bns > 0
    folded = fold_batchnorm(model)
    assert not has_batchnorm(folded) and not folded.training
    assert model.training and has_batchnorm(model)  # training keeps its BatchNorms and its mode
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert folded.feature_channels == model.feature_channels


@pytest.mark.parametrize("arch", ["tiny", "resnet18"])
@pytest.mark.parametrize("method", ["cumulative", "slope"])
def test_folded_model_matches_the_unfolded_one(arch, method):
    model = with_real_statistics(create_model(tiny_config(arch=arch, method=method, num_clusters=4))).eval()
    folded = fold_batchnorm(model).to(memory_format=torch.channels_last)
    x = torch.stack([torch.from_numpy(synthetic_frames(19, 32, 32, seed=s, cut_every=6)) for s in (1, 2)])
    x = (x.permute(0, 1, 4, 2, 3).float() / 255 - 0.45) / 0.225
    lengths = torch.tensor([19, 11])
    with torch.inference_mode():
        ref, got = model(x, lengths), folded(x, lengths)
    assert_within_tolerance(ref, got)
    assert torch.equal(ref.cluster_ids, got.cluster_ids)


# -- stem + layer1 a few frames at a time ------------------------------------------------------------
@pytest.mark.parametrize("arch", ["tiny", "resnet18"])
def test_blocked_stem_and_layer1_equal_the_whole_chunk(arch):
    """Every length against every step (1, shorter than the halo, uneven, whole, beyond): the
    shift's context carried from step to step gives the whole chunk's maps, to fp32 rounding (oneDNN
    may pick another kernel for another batch size: ~1e-6 of the maps' magnitude)."""
    model = fold_batchnorm(with_real_statistics(create_model(tiny_config(arch=arch))))
    model = model.to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for t in (1, 2, 3, 7, 12):
            x = torch.randn(t, 3, 32, 32, generator=gen)
            ref = model.forward_frames(x[None])[0]
            for step in (1, 2, 3, 5, t, t + 4):
                got = frames_blocked(model, x, step)
                assert got.is_contiguous(memory_format=torch.channels_last), (t, step)
                scale = ref.abs().max().item()
                torch.testing.assert_close(got, ref, rtol=0, atol=4e-6 * scale, msg=f"T={t} step={step}")


@pytest.mark.parametrize("arch", ["tiny", "resnet18", "resnet50"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_step_buffers_equal_the_whole_chunk(arch, dtype):
    """StepBuffers (every step buffer reused, convolutions fused in place) gives the whole chunk's
    maps for every length and step, call after call (the buffers carry nothing over), with a
    downsample path (the resnet50 layout) and in bf16."""
    if dtype == torch.bfloat16 and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU has no bf16 support in oneDNN")
    model = fold_batchnorm(with_real_statistics(create_model(tiny_config(arch=arch))))
    model = model.to(dtype=dtype, memory_format=torch.channels_last)
    assert steppable(model) and not steppable(with_real_statistics(create_model(tiny_config(arch=arch))))
    gen = torch.Generator().manual_seed(1)
    tol = 4e-6 if dtype == torch.float32 else 2e-2
    with torch.inference_mode():
        for t in (1, 2, 3, 7, 12):
            x = torch.randn(t, 3, 32, 32, generator=gen).to(dtype)
            ref = model.forward_frames(x[None])[0].float()
            for step in (1, 2, 3, 5, t, t + 4):
                stepper = StepBuffers(model, step)
                for _ in range(2):
                    got = stepper(x)
                    assert got.is_contiguous(memory_format=torch.channels_last) and got.dtype == dtype
                    scale = ref.abs().max().item()
                    torch.testing.assert_close(got.float(), ref, rtol=0, atol=tol * scale, msg=f"T={t} step={step}")


def test_block_frames_default_by_device_and_crop():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert default_block_frames(cuda, 224, torch.float32) == 0  # GPUs want whole chunks
    assert 4 <= default_block_frames(cpu, 224, torch.float32) <= 16  # measured: 4..10 equally good
    assert default_block_frames(cpu, 112, torch.float32) > default_block_frames(cpu, 224, torch.float32)
    assert default_block_frames(cpu, 224, torch.bfloat16) > default_block_frames(cpu, 224, torch.float32)
    model = create_model(tiny_config())
    assert TorchBackend(model, cpu, "fp32", optimize=False).block_frames == 0  # the reference stays whole
    assert TorchBackend(model, cpu, "fp32", block_frames=0).block_frames == 0


def test_training_is_unaffected_by_an_inference_backend(tmp_path):
    model = with_real_statistics(create_model(tiny_config())).train()
    TorchBackend(model, torch.device("cpu"), "fp32")
    assert model.training and has_batchnorm(model)
    assert next(model.parameters()).is_contiguous()  # not converted to channels_last under the trainer
    out = model(torch.randn(1, 6, 3, 32, 32))
    out.logits.sum().backward()
    assert model.conv1.weight.grad is not None and model.bn1.weight.grad is not None


# -- end to end on the test clips -----------------------------------------------------------------
@pytest.fixture(scope="module")
def reference_and_optimized():
    """The bundled (trained) model: the runtime on the unfolded reference and on the inference graph."""
    from fvdeploy.bundle import resolve_model_path

    model = load_model(resolve_model_path(None))
    ref = Classifier(TorchBackend(model, torch.device("cpu"), "fp32", optimize=False))
    fast = Classifier(TorchBackend(model, torch.device("cpu"), "fp32"))
    assert fast.backend.optimized and not has_batchnorm(fast.backend.model) and has_batchnorm(ref.backend.model)
    return ref, fast


@pytest.fixture(scope="module")
def whole_and_blocked(reference_and_optimized):
    """The inference graph with stem + layer1 on whole chunks and 3 frames at a time (the bundled
    model's 64 px crop would otherwise take chunks whole)."""
    model = reference_and_optimized[0].backend.model
    return Classifier(TorchBackend(model, torch.device("cpu"), "fp32", block_frames=0)), Classifier(
        TorchBackend(model, torch.device("cpu"), "fp32", block_frames=3)
    )


@pytest.fixture(scope="module")
def test_clips(tmp_path_factory):
    cut = write_clip(tmp_path_factory.mktemp("clips") / "cuts.mp4", synthetic_frames(90, 48, 64, seed=3, cut_every=17))
    return [*SAMPLES, cut]


def test_runtime_results_match_and_cluster_ids_are_identical_on_the_test_clips(reference_and_optimized, test_clips):
    ref_clf, fast_clf = reference_and_optimized
    assert len(test_clips) >= 2
    for clip in test_clips:
        ref, got = ref_clf.classify(str(clip)), fast_clf.classify(str(clip))
        assert got.label == ref.label, clip
        assert [s.start_frame for s in got.segments] == [s.start_frame for s in ref.segments], clip
        for (la, sa), (lb, sb) in zip(ref.topk, got.topk):
            assert la == lb and abs(sa - sb) <= MAX_ABS, clip


def test_blocked_stem_and_layer1_keep_scores_and_cluster_ids_on_the_test_clips(
    reference_and_optimized, whole_and_blocked, test_clips, monkeypatch
):
    import fvdeploy.models.inference as inference

    steps = []
    real = inference.StepBuffers.__call__
    monkeypatch.setattr(inference.StepBuffers, "__call__", lambda self, x: steps.append(self.step) or real(self, x))
    ref_clf = reference_and_optimized[0]
    whole_clf, blocked_clf = whole_and_blocked
    for clip in test_clips:
        ref, whole, got = ref_clf.classify(str(clip)), whole_clf.classify(str(clip)), blocked_clf.classify(str(clip))
        assert got.label == whole.label == ref.label, clip
        starts = [s.start_frame for s in got.segments]
        assert starts == [s.start_frame for s in whole.segments] == [s.start_frame for s in ref.segments], clip
        for (la, sa), (lb, sb) in zip(whole.topk, got.topk):
            assert la == lb and abs(sa - sb) <= 1e-5, clip
    assert steps and set(steps) == {3}  # the steps ran, for the blocked classifier only


def test_the_steps_run_under_a_fixed_mmap_threshold_too():
    """The steps reuse their buffers, so the torch backend steps whatever glibc's threshold is."""
    from fvdeploy.malloc import bound_heap_growth

    bound_heap_growth()
    backend = TorchBackend(create_model(tiny_config()), torch.device("cpu"), "fp32", block_frames=2)
    assert backend.stepper is not None and backend.stepper.step == 2
    x = torch.randn(6, 3, 32, 32)
    with torch.inference_mode():
        ref = backend.frames_model.forward_frames(x[None])[0]
    got = backend.frame_features(x)
    torch.testing.assert_close(got, ref, rtol=0, atol=4e-6 * ref.abs().max().item())


def test_whole_network_ids_are_identical_on_a_real_clip(reference_and_optimized, test_clips):
    from fvdeploy.export.parity import torch_reference, uint8_crops

    ref_clf, fast_clf = reference_and_optimized
    crops = uint8_crops(test_clips[-1], ref_clf.config.input)[None]
    lengths = torch.tensor([crops.shape[1]])
    ref = torch_reference(ref_clf.backend.model, crops, lengths)
    got = torch_reference(fast_clf.backend.model, crops, lengths)
    diff = (ref[0] - got[0]).abs().max().item()
    assert diff <= MAX_ABS and np.allclose(got[0], ref[0], rtol=RTOL, atol=ATOL)
    assert torch.equal(ref[2], got[2]) and boundary_shift(ref[2], got[2]) == 0


@pytest.mark.gpu
def test_folded_channels_last_on_cuda_matches_the_unfolded_model(reference_and_optimized, test_clips):
    """The same parity on CUDA (fp32, TF32 off as docs/design.md#equality asks of fp32 tests)."""
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        ref_clf, _ = reference_and_optimized
        gpu = Classifier(TorchBackend(ref_clf.backend.model, torch.device("cuda"), "fp32"))
        for clip in test_clips:
            ref, got = ref_clf.classify(str(clip)), gpu.classify(str(clip))
            assert got.label == ref.label, clip
            shift = max(abs(a.start_frame - b.start_frame) for a, b in zip(ref.segments, got.segments))
            assert len(got.segments) == len(ref.segments) and shift <= 1, clip
            assert max(abs(a - b) for (_, a), (_, b) in zip(ref.topk, got.topk)) <= MAX_ABS, clip
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


# -- the module's own forward in inference ------------------------------------------------------------
def _frames(n: int, t: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    x = torch.stack([torch.from_numpy(synthetic_frames(t, size, size, seed=seed + i, cut_every=6)) for i in range(n)])
    return (x.permute(0, 1, 4, 2, 3).float() / 255 - 0.45) / 0.225


def _plain(model, *args):
    model.fast_inference = False
    try:
        return model(*args)
    finally:
        model.fast_inference = True


@pytest.mark.parametrize("arch", ["tiny", "resnet18"])
@pytest.mark.parametrize("mode", ["full", "tsm"])
def test_module_forward_in_inference_runs_the_fast_copy_with_the_same_outputs(arch, mode, monkeypatch):
    import fvdeploy.models.inference as inference

    config = tiny_config(arch=arch, num_clusters=4, mode=mode, segments=0 if mode == "tsm" else 8)
    model = with_real_statistics(create_model(config)).eval()
    stepped = []
    real = inference.StepBuffers.__call__
    monkeypatch.setattr(inference.StepBuffers, "__call__", lambda self, x: stepped.append(1) or real(self, x))
    monkeypatch.setattr(inference, "default_block_frames", lambda *a: 5)  # steps at this small crop
    x = _frames(2, 19)
    for lengths in (None, torch.tensor([19, 11])):
        with torch.no_grad():
            ref = _plain(model, x, lengths)
            got = model(x, lengths)
        assert_within_tolerance(ref, got)
        assert torch.equal(ref.cluster_ids, got.cluster_ids)
    assert stepped  # the steps ran (for the batch without padding)
    copy_ = inference.inference_copy(model)
    assert not has_batchnorm(copy_) and copy_.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert has_batchnorm(model) and next(model.parameters()).is_contiguous()  # the module itself is untouched
    drop_inference_copy(model)


def test_the_inference_copy_follows_the_weights():
    """A weight changed in place (an optimizer step, load_state_dict) or a config change is seen by
    the next frozen forward: the copy is remade, never stale."""
    model = with_real_statistics(create_model(tiny_config(num_clusters=4))).eval()
    x = _frames(1, 12)
    with torch.inference_mode():
        first = model(x).logits
    other = with_real_statistics(create_model(tiny_config(num_clusters=4)), seed=5)
    model.load_state_dict(other.state_dict())
    with torch.inference_mode():
        got, ref = model(x), _plain(model, x)
    assert not torch.allclose(first, got.logits)
    assert_within_tolerance(ref, got)
    with torch.no_grad():
        model.fc.bias.add_(1.0)
        assert_within_tolerance(_plain(model, x), model(x))
    model.config = model.config.replace(num_clusters=3)
    with torch.no_grad():
        assert model(x).cluster_logits.shape[1] == 3


def test_training_gradients_are_unchanged_by_the_fast_path():
    """Train mode, and eval mode while gradients are recorded, run the plain forward: the same
    gradients, BatchNorm's included, as with the fast path turned off."""
    torch.manual_seed(0)
    model = with_real_statistics(create_model(tiny_config(num_clusters=4)))
    x = _frames(2, 10)
    for train in (True, False):
        model.train(train)
        grads = []
        for fast in (True, False):
            model.zero_grad()
            model.fast_inference = fast
            torch.manual_seed(1)  # dropout
            model(x).logits.square().sum().backward()
            grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
        model.fast_inference = True
        assert grads[0].keys() == grads[1].keys() and model.bn1.weight.grad is not None
        assert all(torch.equal(grads[0][k], grads[1][k]) for k in grads[0]), train


def test_tracing_sees_the_plain_module():
    from fvdeploy.models.inference import frozen

    model = create_model(tiny_config()).eval()
    x = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        assert frozen(model, x)
        model.train()
        assert not frozen(model, x)
    model.eval()
    assert not frozen(model, x)  # gradients recorded for the parameters
