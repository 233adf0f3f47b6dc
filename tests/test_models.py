"""TSM / full-video models: the shift, padding invariance, chunking, equivalences, gradients."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config
from torchvision.models.resnet import Bottleneck

from fvdeploy.models import create_model, list_models
from fvdeploy.models.tsm_resnet import TSMResNet, make_backbone
from fvdeploy.ops import temporal_shift

METHODS = ["cumulative", "slope", "uniform"]


def test_registry_lists_the_architectures():
    assert {"resnet18", "resnet50", "tiny"} <= set(list_models())


def test_shift_moves_one_eighth_each_way_with_zeros_at_the_ends():
    t, c = 5, 16
    x = torch.arange(t, dtype=torch.float32)[:, None, None, None].expand(t, c, 1, 1) + 1  # value = frame + 1
    out = temporal_shift(x, t).reshape(t, c)
    assert out[:, 0].tolist() == [2, 3, 4, 5, 0]  # channels [0, 2) take t+1
    assert out[:, 2].tolist() == [0, 1, 2, 3, 4]  # channels [2, 4) take t-1
    assert out[:, 4].tolist() == [1, 2, 3, 4, 5]  # the rest stay


def test_shift_ends_each_video_at_its_length():
    x = torch.randn(2 * 6, 16, 2, 2)
    out = temporal_shift(x, 6, torch.tensor([6, 3])).reshape(2, 6, 16, 2, 2)
    assert torch.all(out[1, 2, :2] == 0)  # nothing shifts in from the padding at position 3
    torch.testing.assert_close(out[1, :2, :2], x.reshape(2, 6, 16, 2, 2)[1, 1:3, :2])


def narrow_bottleneck_model(**overrides) -> TSMResNet:
    """fvdeploy's TSM ResNet on the resnet50 block layout (Bottleneck, 3-4-6-3 blocks: three in
    layer1, so halo 3) at widths 8..64: the resnet50 code paths at the tiny model's cost."""
    return TSMResNet(make_backbone(Bottleneck, [3, 4, 6, 3], (8, 16, 32, 64)), tiny_config(**overrides))


# resnet50 at full width (25 M parameters) is a real size: under slow; the bottleneck case runs its layout.
@pytest.mark.parametrize("arch", ["tiny", "resnet18", pytest.param("resnet50", marks=pytest.mark.slow), "bottleneck"])
def test_forward_shapes(arch, one_thread_here):
    model = (narrow_bottleneck_model() if arch == "bottleneck" else create_model(tiny_config(arch=arch))).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 9, 3, 32, 32))
    assert out.logits.shape == (2, 3) and out.cluster_logits.shape == (2, 4, 3) and out.cluster_ids.shape == (2, 9)
    assert torch.isfinite(out.logits).all()
    torch.testing.assert_close(out.logits, out.cluster_logits.mean(1))


@pytest.mark.parametrize("method", METHODS)
def test_padded_batch_equals_each_video_alone(method):
    model = create_model(tiny_config(method=method)).eval()
    videos = [torch.randn(t, 3, 32, 32) for t in (1, 3, 4, 9, 14)]
    t_max = 16
    batch = torch.stack([torch.cat([v, torch.randn(t_max - len(v), 3, 32, 32)]) for v in videos])
    lengths = torch.tensor([len(v) for v in videos])
    with torch.no_grad():
        out = model(batch, lengths)
        for n, v in enumerate(videos):
            alone = model(v[None])
            torch.testing.assert_close(out.logits[n], alone.logits[0], rtol=1e-5, atol=1e-5)
            valid = max(len(v), 4)
            assert out.cluster_ids[n, :valid].tolist() == alone.cluster_ids[0, :valid].tolist()


@pytest.mark.parametrize("chunk", [1, 3, 23])
def test_chunked_stem_layer1_equals_whole(tiny_model, chunk):
    frames = torch.randn(23, 3, 32, 32)
    with torch.no_grad():
        whole = tiny_model.forward_frames(frames[None])[0]
        chunked = tiny_model.forward_frames_chunked(frames, chunk)
    assert chunked.shape == whole.shape
    assert (chunked - whole).abs().max().item() <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("chunk", [1, 3, 17])
def test_chunked_equals_whole_resnet50(chunk):
    model = create_model(tiny_config(arch="resnet50")).eval()  # three blocks in layer1: halo 3
    frames = torch.randn(17, 3, 64, 64)
    with torch.no_grad():
        diff = (model.forward_frames_chunked(frames, chunk) - model.forward_frames(frames[None])[0]).abs().max()
    assert diff.item() <= 1e-5


@pytest.mark.parametrize("chunk", [1, 3, 17])
def test_chunked_equals_whole_on_the_resnet50_layout(chunk, one_thread_here):
    """The default run's version of the real-size test above: the same block layout, narrow."""
    model = narrow_bottleneck_model().eval()
    assert model.frame_halo == 3
    frames = torch.randn(17, 3, 64, 64)
    with torch.no_grad():
        diff = (model.forward_frames_chunked(frames, chunk) - model.forward_frames(frames[None])[0]).abs().max()
    assert diff.item() <= 1e-5


def test_streaming_pads_short_videos_to_min_frames(tiny_model):
    frames = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        streamed = torch.cat(list(tiny_model.iter_frame_features(frames.split(1), min_frames=4)))
        padded = torch.cat([frames, frames[-1:].expand(2, -1, -1, -1)])
        torch.testing.assert_close(streamed, tiny_model.forward_frames(padded[None])[0], rtol=0, atol=1e-5)


def test_full_model_with_g_equal_t_is_tsm_all():
    full = create_model(tiny_config(num_clusters=7)).eval()
    tsm = create_model(tiny_config(mode="tsm", segments=0)).eval()
    tsm.load_state_dict(full.state_dict())
    frames = torch.randn(2, 7, 3, 32, 32)
    with torch.no_grad():
        a, b = full(frames), tsm(frames)
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.cluster_logits, b.cluster_logits, rtol=1e-5, atol=1e-5)


def test_tsm_all_with_lengths_equals_alone():
    tsm = create_model(tiny_config(mode="tsm", segments=0)).eval()
    videos = [torch.randn(t, 3, 32, 32) for t in (2, 6)]
    batch = torch.stack([torch.cat([v, torch.randn(6 - len(v), 3, 32, 32)]) for v in videos])
    with torch.no_grad():
        out = tsm(batch, torch.tensor([2, 6]))
        for n, v in enumerate(videos):
            torch.testing.assert_close(out.logits[n], tsm(v[None]).logits[0], rtol=1e-5, atol=1e-5)


def test_training_step_updates_stem_and_layer1():
    model = create_model(tiny_config()).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    frames, labels = torch.randn(2, 10, 3, 32, 32), torch.tensor([0, 2])
    loss = torch.nn.functional.cross_entropy(model(frames).logits, labels)
    loss.backward()
    assert model.conv1.weight.grad.abs().sum() > 0
    assert model.layer1[0].conv1.weight.grad.abs().sum() > 0
    opt.step()
    after = model.state_dict()
    for key in ("conv1.weight", "layer1.0.conv1.weight", "layer1.1.conv2.weight", "layer4.0.conv1.weight", "fc.weight"):
        assert not torch.equal(before[key], after[key]), key
