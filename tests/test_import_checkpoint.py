"""Importing published TSM checkpoints (issue 8).

Each source's model is rebuilt here from its published code's structure (module names, the shift
function, the head and consensus), with random weights and BatchNorm statistics from train-mode
forwards, and saved with the pickle structure that source writes. The imported model must give the
same logits as that independent forward.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from conftest import run_cli, tiny_config
from torch import nn
from torchvision.models.resnet import Bottleneck

from fvdeploy.bundle import load_model
from fvdeploy.errors import ModelError
from fvdeploy.importers import ImportOptions, import_checkpoint, named_labels
from fvdeploy.importers.checkpoint import infer_arch, load_converted
from fvdeploy.importers.layouts import MMACTION_MEAN, MMACTION_STD, convert, detect_layout
from fvdeploy.importers.reading import read_checkpoint
from fvdeploy.models import create_model

REPO = Path(__file__).resolve().parents[1]
SIZE = 32  # input side: the weights are full ResNet-18/50 shapes, the frames are small


# -- the official TSM code's model (mit-han-lab/temporal-shift-module ops/models.py, ops/temporal_shift.py)
def official_shift(x, n_segment, fold_div=8):
    """ops/temporal_shift.py TemporalShift.shift: a zero tensor filled slice by slice."""
    nt, c, h, w = x.size()
    x = x.view(nt // n_segment, n_segment, c, h, w)
    fold = c // fold_div
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]  # channel group 0 reads the next frame
    out[:, 1:, fold : 2 * fold] = x[:, :-1, fold : 2 * fold]  # group 1 reads the previous frame
    out[:, :, 2 * fold :] = x[:, :, 2 * fold :]
    return out.view(nt, c, h, w)


class OfficialShift(nn.Module):
    """TemporalShift(net=block.conv1): the shift runs on the input of the wrapped conv."""

    def __init__(self, net, n_segment):
        super().__init__()
        self.net, self.n_segment = net, n_segment

    def forward(self, x):
        return self.net(official_shift(x, self.n_segment))


class NarrowResNet(torchvision.models.ResNet):
    """torchvision's ResNet (its own ``_make_layer`` and forward) at base width ``base`` instead of
    64: the ResNet-50 layout (Bottleneck blocks 3-4-6-3, a downsample on every stage's first block,
    the same key names) at a size the default test run affords."""

    def __init__(self, base: int, layers=(3, 4, 6, 3)):
        nn.Module.__init__(self)  # ResNet.__init__ fixes the widths at 64..512
        self._norm_layer, self.inplanes, self.dilation, self.groups, self.base_width = nn.BatchNorm2d, base, 1, 1, 64
        self.conv1 = nn.Conv2d(3, base, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1, self.relu = nn.BatchNorm2d(base), nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for i, n in enumerate(layers):
            setattr(self, f"layer{i + 1}", self._make_layer(Bottleneck, base * 2**i, n, stride=1 if i == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.inplanes, 1000)


class OfficialTSN(nn.Module):
    """TSN(is_shift=True, shift_place='blockres', dropout=0.5): base_model + new_fc, avg consensus.
    ``base_model``: a torchvision-layout ResNet to use instead of ``torchvision.models.<arch>()``."""

    def __init__(self, arch, num_classes, n_segment, base_model=None):
        super().__init__()
        self.n_segment = n_segment
        self.base_model = base_model if base_model is not None else getattr(torchvision.models, arch)()
        for layer in (self.base_model.layer1, self.base_model.layer2, self.base_model.layer3, self.base_model.layer4):
            for block in layer:
                block.conv1 = OfficialShift(block.conv1, n_segment)
        feature_dim = self.base_model.fc.in_features
        self.base_model.fc = nn.Dropout(p=0.5)
        self.new_fc = nn.Linear(feature_dim, num_classes)

    def forward(self, frames):  # [N, K, 3, H, W]
        base_out = self.new_fc(self.base_model(frames.reshape(-1, *frames.shape[2:])))
        return base_out.view(-1, self.n_segment, base_out.shape[-1]).mean(1)


# -- mmaction2's model (mmaction/models/backbones/resnet.py, resnet_tsm.py, heads/tsm_head.py) -----------
def mmaction_shift(x, num_segments, shift_div=8):
    """resnet_tsm.py TemporalShift.shift: split, pad with zeros made from the input, concatenate."""
    n, c, h, w = x.size()
    x = x.view(-1, num_segments, c, h * w)
    fold = c // shift_div
    left, mid, right = x[:, :, :fold], x[:, :, fold : 2 * fold], x[:, :, 2 * fold :]
    left = torch.cat((left[:, 1:], (left - left)[:, :1]), 1)
    mid = torch.cat(((mid - mid)[:, :1], mid[:, :-1]), 1)
    return torch.cat((left, mid, right), 2).view(n, c, h, w)


class MMShift(nn.Module):
    def __init__(self, net, num_segments):
        super().__init__()
        self.net, self.num_segments = net, num_segments

    def forward(self, x):
        return self.net(mmaction_shift(x, self.num_segments))


class ConvModule(nn.Module):
    """mmcv ConvModule order ('conv', 'norm', 'act'), BN named ``bn``."""

    def __init__(self, cin, cout, k, stride=1, padding=0, act=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.activate = nn.ReLU(inplace=True) if act else None

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.activate(x) if self.activate is not None else x


class MMBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride, downsample):
        super().__init__()
        self.conv1 = ConvModule(inplanes, planes, 3, stride, 1)
        self.conv2 = ConvModule(planes, planes, 3, 1, 1, act=False)
        self.downsample, self.relu = downsample, nn.ReLU(inplace=True)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + identity)


class MMBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride, downsample):  # style='pytorch': stride on the 3x3
        super().__init__()
        self.conv1 = ConvModule(inplanes, planes, 1)
        self.conv2 = ConvModule(planes, planes, 3, stride, 1)
        self.conv3 = ConvModule(planes, planes * 4, 1, act=False)
        self.downsample, self.relu = downsample, nn.ReLU(inplace=True)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


class MMResNetTSM(nn.Module):
    def __init__(self, depth, num_segments, base=64):  # base: the stem's width (64; smaller for narrow tests)
        super().__init__()
        block, stages = {18: (MMBasicBlock, (2, 2, 2, 2)), 50: (MMBottleneck, (3, 4, 6, 3))}[depth]
        self.conv1 = ConvModule(3, base, 7, 2, 3)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = base
        for i, n in enumerate(stages):
            planes, stride = base * 2**i, 1 if i == 0 else 2
            down = None
            if stride != 1 or inplanes != planes * block.expansion:
                down = ConvModule(inplanes, planes * block.expansion, 1, stride, act=False)
            blocks = [block(inplanes, planes, stride, down)]
            inplanes = planes * block.expansion
            blocks += [block(inplanes, planes, 1, None) for _ in range(1, n)]
            for b in blocks:  # make_temporal_shift, 'blockres'
                b.conv1.conv = MMShift(b.conv1.conv, num_segments)
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.feat_dim = inplanes

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class TSMHead(nn.Module):
    def __init__(self, num_classes, in_channels, num_segments):
        super().__init__()
        self.num_segments = num_segments
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(p=0.5)
        self.fc_cls = nn.Linear(in_channels, num_classes)

    def forward(self, x):
        cls_score = self.fc_cls(self.dropout(torch.flatten(self.avg_pool(x), 1)))
        return cls_score.view((-1, self.num_segments) + cls_score.size()[1:]).mean(1)  # AvgConsensus(dim=1)


class MMRecognizer2D(nn.Module):
    def __init__(self, depth, num_classes, num_segments, base=64):
        super().__init__()
        self.backbone = MMResNetTSM(depth, num_segments, base)
        self.cls_head = TSMHead(num_classes, self.backbone.feat_dim, num_segments)

    def forward(self, frames):
        return self.cls_head(self.backbone(frames.reshape(-1, *frames.shape[2:])))


# -- building published-layout files ---------------------------------------------------------------
def _populate_bn(model, k, seed):
    """Real BatchNorm statistics: running averages of a few train-mode batches, then eval."""
    g = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(1, k, 3, SIZE, SIZE, generator=g) * 1.5 + 0.2)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):  # affine parameters away from their 1/0 init
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.2, 0.2, generator=g)
    return model.eval()


def official_checkpoint(folder, arch, num_classes, k, dataset="kinetics", name=None):
    torch.manual_seed(1)
    ref = _populate_bn(OfficialTSN(arch, num_classes, k), k, seed=2)
    name = name or f"TSM_{dataset}_RGB_{arch}_shift8_blockres_avg_segment{k}_e50.pth"
    path = Path(folder) / name
    # main.py saves the DataParallel model; the 2019 files predate PyTorch's zip format.
    state = nn.DataParallel(ref).state_dict()
    torch.save(
        {"epoch": 50, "arch": arch, "state_dict": state, "best_prec1": 71.25},
        path,
        _use_new_zipfile_serialization=False,
    )
    return path, ref


MM_CONFIG = """model = dict(
    type='Recognizer2D',
    backbone=dict(type='ResNetTSM', pretrained='torchvision://resnet{depth}', depth={depth}, norm_eval=False,
                  shift_div=8, num_segments={k}),
    cls_head=dict(type='TSMHead', num_classes={classes}, in_channels={feat}, spatial_type='avg',
                  consensus=dict(type='AvgConsensus', dim=1), dropout_ratio=0.5, init_std=0.001, is_shift=True,
                  num_segments={k}, average_clips='prob'),
    data_preprocessor=dict(type='ActionDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], format_shape='NCHW'))
ann_file_val = 'data/{dataset}/{dataset}_val_list_videos.txt'
val_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips={k}, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='CenterCrop', crop_size=224),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs')
]
"""


def mmaction_checkpoint(folder, depth, num_classes, k, dataset="kinetics400", mmcv1=False, base=64):
    torch.manual_seed(3)
    ref = _populate_bn(MMRecognizer2D(depth, num_classes, k, base), k, seed=4)
    text = MM_CONFIG.format(depth=depth, k=k, classes=num_classes, feat=ref.backbone.feat_dim, dataset=dataset)
    name = f"tsm_imagenet-pretrained-r{depth}_8xb16-1x1x{k}-50e_{dataset}-rgb_20220831-64d69186.pth"
    path = Path(folder) / name
    state = OrderedDict(ref.state_dict())
    if mmcv1:  # mmcv 1.x runner meta: the config under 'config', a numpy best score in hook_msgs
        meta = {
            "mmcv_version": "1.3.1",
            "time": "Mon Jun  7 10:00:00 2020",
            "config": text,
            "seed": 0,
            "epoch": 50,
            "iter": 60000,
            "hook_msgs": {"last_ckpt": "epoch_50.pth", "best_score": np.float64(0.7124)},
        }
    else:  # mmengine Runner.save_checkpoint + tools/deployment/publish_model.py
        meta = {
            "cfg": text,
            "seed": 1234,
            "experiment_name": "tsm",
            "time": "20220831_120000",
            "mmengine_version": "0.1.0",
            "epoch": 50,
            "iter": 60000,
            "dataset_meta": None,
        }
    torch.save({"meta": meta, "state_dict": state}, path)
    return path, ref


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("published")
    return {
        "tsm18": official_checkpoint(folder, "resnet18", 400, 4),
        "mm18": mmaction_checkpoint(folder, 18, 174, 4, dataset="sthv2"),
    }


def _clip(n, k, seed=5):
    return torch.randn(n, k, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _logits(model, frames):
    """Logits of an fvdeploy model (ModelOutput) or of a reference model (a tensor)."""
    with torch.no_grad():
        out = model(frames)
    return out if isinstance(out, torch.Tensor) else out.logits


def _assert_nothing_written(out: Path):
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")], "temporary folder left behind"


def _one_line_error(fn, match):
    with pytest.raises(ModelError, match=match) as e:
        fn()
    assert "\n" not in str(e.value)
    return str(e.value)


# -- imports match each source's own forward --------------------------------------------------------------
def _check_import(path, ref, k, source, tmp_path, arch, classes, videos=2):
    out = tmp_path / "model"
    result = import_checkpoint(path, out, ImportOptions(source=source))
    model = load_model(out)
    cfg = model.config
    assert (cfg.arch, cfg.num_classes, cfg.mode, cfg.segments, cfg.num_clusters) == (arch, classes, "tsm", k, k)
    assert cfg.trained["source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() == result.sha256
    frames = _clip(videos, k)
    diff = (_logits(model, frames) - _logits(ref, frames)).abs().max().item()
    assert diff <= 1e-4, f"max abs logit difference {diff}"
    # Logits that vary across classes and videos: the comparison tested something.
    assert _logits(ref, frames).std().item() > 1e-3
    return model, result


@pytest.mark.parametrize("source", ["tsm", "auto"])
def test_official_tsm_resnet18_matches_its_forward(ckpts, tmp_path, source):
    path, ref = ckpts["tsm18"]
    model, result = _check_import(path, ref, 4, source, tmp_path, "resnet18", 400)
    cfg = model.config
    assert result.layout == "tsm"
    assert cfg.labels == named_labels("kinetics400") and cfg.labels[0] == "abseiling"
    assert (cfg.input.scale, cfg.input.mean, cfg.input.std, cfg.input.color) == (
        1,
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        "rgb",
    )
    assert (cfg.input.shorter_side, cfg.input.crop, cfg.input.interpolation, cfg.input.antialias) == (
        256,
        224,
        "bilinear",
        True,
    )
    assert cfg.trained["data"] == "kinetics400" and cfg.trained["epochs"] == 50 and cfg.trained["top1"] == 71.25
    assert cfg.trained["source_layout"] == "tsm" and cfg.trained["source_shift_div"] == 8


@pytest.mark.parametrize("source", ["mmaction2", "auto"])
def test_mmaction2_resnet18_matches_its_forward(ckpts, tmp_path, source):
    path, ref = ckpts["mm18"]
    model, result = _check_import(path, ref, 4, source, tmp_path, "resnet18", 174)
    cfg = model.config
    assert result.layout == "mmaction2"
    assert cfg.labels == named_labels("sthv2")
    assert cfg.labels[86] == "Pulling something from left to right"  # mmaction2's sthv2 flip map pairs 86/87
    assert (cfg.input.scale, cfg.input.mean, cfg.input.std, cfg.input.antialias) == (
        255,
        MMACTION_MEAN,
        MMACTION_STD,
        False,
    )
    assert cfg.trained["source_segments"] == 4 and cfg.trained["data"] == "sthv2"


@pytest.mark.slow
def test_resnet50_layouts_match_their_forward(tmp_path):
    """ResNet-50 (Bottleneck, downsample on every stage's first block) in both layouts, 8 segments.
    Real size (two 100 MB files written, read and run): under ``slow``. The default run checks the
    same layouts at full shape without weights and at narrow width with them (the two tests below)."""
    path, ref = official_checkpoint(tmp_path, "resnet50", 174, 8, dataset="somethingv2")
    model, _ = _check_import(path, ref, 8, "auto", tmp_path / "a", "resnet50", 174, videos=1)
    assert model.config.labels == named_labels("sthv2")
    path.unlink()
    path, ref = mmaction_checkpoint(tmp_path, 50, 400, 8, mmcv1=True)
    model, _ = _check_import(path, ref, 8, "auto", tmp_path / "b", "resnet50", 400, videos=1)
    assert model.config.labels == named_labels("kinetics400") and model.config.trained["epochs"] == 50


def test_resnet50_files_fit_fvdeploys_resnet50_by_name_and_shape():
    """Both published ResNet-50 layouts at their real shapes, without weights (the meta device):
    detected, converted, recognised as resnet50 from their blocks, and every tensor lands on a
    parameter or buffer of fvdeploy's resnet50 with its shape (``load_converted`` checks both ways)."""
    with torch.device("meta"):
        official = OfficialTSN("resnet50", 174, 8)
        mm = MMRecognizer2D(50, 400, 8)
        files = {
            "tsm": (
                {"epoch": 50, "arch": "resnet50", "state_dict": nn.DataParallel(official).state_dict()},
                Path("TSM_somethingv2_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth"),
                "sthv2",
            ),
            "mmaction2": (
                {
                    "meta": {"cfg": MM_CONFIG.format(depth=50, k=8, classes=400, feat=2048, dataset="kinetics400")},
                    "state_dict": OrderedDict(mm.state_dict()),
                },
                Path("tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb_20220831-64d69186.pth"),
                "kinetics400",
            ),
        }
        for layout, (obj, path, dataset) in files.items():
            labels = named_labels(dataset)
            assert detect_layout(obj) == layout
            converted = convert(obj, layout, path)
            assert infer_arch(converted, path) == ("resnet50", len(labels)), layout
            assert converted.facts.segments == 8 and converted.facts.dataset == dataset, layout
            assert {"layer1.0.downsample.0.weight", "layer4.2.conv3.weight", "layer4.2.bn3.running_var"} <= set(
                converted.state
            )
            model = create_model(tiny_config(arch="resnet50", num_classes=len(labels), labels=labels))
            load_converted(model, converted, path)


NARROW = 8  # base width of the narrow ResNet-50 layout (torchvision's is 64)


@pytest.mark.parametrize("layout", ["tsm", "mmaction2"])
def test_resnet50_layouts_match_their_forward_at_narrow_width(tmp_path, layout, one_thread_here):
    """The default run's stand-in for the real-size test above: the same two files (Bottleneck
    blocks 3-4-6-3, 8 segments) at base width 8, written and read as published, detected,
    converted, recognised as resnet50 from their blocks, loaded into fvdeploy's TSM ResNet on the
    same block layout, and giving the logits of the source's own forward."""
    from fvdeploy.models.tsm_resnet import TSMResNet, make_backbone

    k, classes = 8, 5
    if layout == "tsm":
        torch.manual_seed(1)
        ref = _populate_bn(OfficialTSN("resnet50", classes, k, base_model=NarrowResNet(NARROW)), k, seed=2)
        path = tmp_path / "TSM_somethingv2_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth"
        obj = {"epoch": 50, "arch": "resnet50", "state_dict": nn.DataParallel(ref).state_dict(), "best_prec1": 60.0}
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        path, ref = mmaction_checkpoint(tmp_path, 50, classes, k, mmcv1=True, base=NARROW)
    obj, _ = read_checkpoint(path)
    assert detect_layout(obj) == layout
    converted = convert(obj, layout, path)
    assert infer_arch(converted, path) == ("resnet50", classes)
    assert converted.facts.segments == k
    config = tiny_config(num_classes=classes, labels=list("abcde"), mode="tsm", segments=k, num_clusters=k)
    model = TSMResNet(make_backbone(Bottleneck, [3, 4, 6, 3], tuple(NARROW * 2**i for i in range(4))), config)
    load_converted(model, converted, path)
    frames = _clip(2, k)
    diff = (_logits(model.eval(), frames) - _logits(ref, frames)).abs().max().item()
    assert diff <= 1e-4, f"max abs logit difference {diff}"
    assert _logits(ref, frames).std().item() > 1e-3


def test_full_mode_with_g_equal_k_equals_tsm_mode(ckpts, tmp_path):
    path, ref = ckpts["tsm18"]
    import_checkpoint(path, tmp_path / "full", ImportOptions(mode="full", clusters=4))
    full = load_model(tmp_path / "full")
    assert (full.config.mode, full.config.num_clusters) == ("full", 4)
    frames = _clip(1, 4, seed=9)
    out = full(frames)
    assert out.cluster_ids.tolist() == [[0, 1, 2, 3]]
    torch.testing.assert_close(out.logits, _logits(ref, frames), rtol=0, atol=1e-4)
    tsm = load_model(tmp_path / "full")
    tsm.config.mode = "tsm"
    torch.testing.assert_close(out.logits, _logits(tsm, frames), rtol=0, atol=1e-5)


def test_overrides_and_label_files(ckpts, tmp_path):
    path, _ = ckpts["mm18"]
    names = tmp_path / "names.txt"
    names.write_text("".join(f"action {i}\n" for i in range(174)) + "\n")
    import_checkpoint(path, tmp_path / "m", ImportOptions(labels=str(names), segments=16, method="slope"))
    cfg = load_model(tmp_path / "m").config
    assert cfg.labels[173] == "action 173" and (cfg.segments, cfg.num_clusters, cfg.method) == (16, 16, "slope")
    bad = tmp_path / "short.txt"
    bad.write_text("a\nb\n")
    _one_line_error(
        lambda: import_checkpoint(path, tmp_path / "n", ImportOptions(labels=str(bad))),
        r"174 classes but --labels .*short.txt has 2 names",
    )
    _assert_nothing_written(tmp_path / "n")
    _one_line_error(
        lambda: import_checkpoint(path, tmp_path / "n", ImportOptions(labels="kinetics400")),
        "174 classes but --labels kinetics400 has 400",
    )


def test_torchvision_imagenet_weights(tmp_path):
    net = torchvision.models.resnet18()
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(net.state_dict(), path)
    result = import_checkpoint(path, tmp_path / "tv", ImportOptions(source="auto"))
    model = load_model(tmp_path / "tv")
    assert result.layout == "torchvision" and model.config.mode == "full" and model.config.num_classes == 1000
    for key, value in net.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


# -- refusals: one line, nothing written ----------------------------------------------------------------------
def _official_dict(path):
    return torch.load(path, weights_only=True)


def _resave(obj, path):
    torch.save(obj, path)
    return path


def _refused(src, tmp_path, match, **options):
    out = tmp_path / "out"
    message = _one_line_error(lambda: import_checkpoint(src, out, ImportOptions(**options)), match)
    _assert_nothing_written(out)
    return message


def test_wrong_layout_is_refused(ckpts, tmp_path):
    _refused(ckpts["mm18"][0], tmp_path, r"this is an mmaction2 checkpoint .*use --from mmaction2", source="tsm")
    _refused(ckpts["tsm18"][0], tmp_path, r"this is an official TSM checkpoint .*use --from tsm", source="mmaction2")
    odd = _resave({"state_dict": {"encoder.weight": torch.zeros(2)}}, tmp_path / "odd.pth")
    _refused(odd, tmp_path, r"not a TSM, mmaction2 or torchvision ResNet checkpoint \(unknown key layout")
    _refused(_resave([1, 2, 3], tmp_path / "list.pth"), tmp_path, "no state dict of tensors")


def test_truncated_and_missing_files_are_refused(ckpts, tmp_path):
    data = ckpts["tsm18"][0].read_bytes()
    for cut in (len(data) // 2, 40, 0):
        short = tmp_path / f"cut{cut}.pth"
        short.write_bytes(data[:cut])
        _refused(short, tmp_path, r"not a readable PyTorch checkpoint, truncated or corrupt")
    zipped = ckpts["mm18"][0].read_bytes()
    (tmp_path / "z.pth").write_bytes(zipped[: len(zipped) - 5000])
    _refused(tmp_path / "z.pth", tmp_path, r"truncated or corrupt")
    _refused(tmp_path / "absent.pth", tmp_path, "checkpoint file not found")


def test_mismatched_shape_and_unmatched_keys_are_refused(ckpts, tmp_path):
    obj = _official_dict(ckpts["tsm18"][0])
    key = "module.base_model.layer3.1.conv2.weight"
    obj["state_dict"][key] = obj["state_dict"][key][:, :128].clone()
    _refused(
        _resave(obj, tmp_path / "shape.pth"),
        tmp_path,
        rf"{key} has shape \(256, 128, 3, 3\), resnet18 with 400 classes needs \(256, 256, 3, 3\)",
    )
    obj = _official_dict(ckpts["tsm18"][0])
    obj["state_dict"]["module.base_model.layer2.0.extra.weight"] = torch.zeros(3)
    _refused(_resave(obj, tmp_path / "extra.pth"), tmp_path, r"unmatched key 'module.base_model.layer2.0.extra.weight'")
    obj = _official_dict(ckpts["tsm18"][0])
    del obj["state_dict"]["module.base_model.layer4.1.bn2.running_var"]
    _refused(_resave(obj, tmp_path / "missing.pth"), tmp_path, r"no weights for 'layer4.1.bn2.running_var'")
    mm = torch.load(ckpts["mm18"][0], weights_only=True)
    mm["state_dict"]["cls_head.fc_cls.bias"] = torch.zeros(10)
    _refused(_resave(mm, tmp_path / "head.pth"), tmp_path, r"cls_head.fc_cls.bias has shape \(10,\)")
    mm = torch.load(ckpts["mm18"][0], weights_only=True)
    mm["state_dict"]["cls_head.fc_extra.weight"] = torch.zeros(2)
    _refused(_resave(mm, tmp_path / "mmextra.pth"), tmp_path, r"unmatched key 'cls_head.fc_extra.weight'")


class CustomMeta:
    """A class an attacker (or a careless trainer) pickled into the metadata."""

    def __init__(self):
        self.note = "x"


class RunsCode:
    def __reduce__(self):
        return (os.getcwd, ())  # harmless, but any callable would run under a full unpickle


@pytest.mark.parametrize(
    "payload, refused", [(RunsCode(), r"(posix|os|nt)\.getcwd"), (CustomMeta(), r"test_import_checkpoint\.CustomMeta")]
)
def test_disallowed_globals_are_refused(ckpts, tmp_path, payload, refused):
    obj = _official_dict(ckpts["tsm18"][0])
    obj["extra"] = payload
    path = _resave(obj, tmp_path / "evil.pth")
    message = _refused(path, tmp_path, rf"evil.pth: refused to unpickle {refused}")
    assert "never runs code" in message


def test_numpy_scalars_from_numpy1_files_load(ckpts, tmp_path):
    """A numpy-1.x file names the scalar constructor numpy.core.multiarray.scalar: still allowed."""
    obj = _official_dict(ckpts["tsm18"][0])
    obj["best_prec1"] = np.float64(70.5)
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=False)
    raw = buf.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert b"numpy.core.multiarray\n" in raw
    path = tmp_path / "TSM_kinetics_RGB_resnet18_shift8_blockres_avg_segment4_e50.pth"
    path.write_bytes(raw)
    import_checkpoint(path, tmp_path / "m")
    assert load_model(tmp_path / "m").config.trained["top1"] == 70.5


def _edit_official(ckpts, tmp_path, edit, name=None):
    obj = _official_dict(ckpts["tsm18"][0])
    obj["state_dict"] = edit(obj["state_dict"])
    return _resave(obj, tmp_path / (name or ckpts["tsm18"][0].name))


def _rename(sd, old, new):
    return OrderedDict((k.replace(old, new), v) for k, v in sd.items())


@pytest.mark.parametrize(
    "case, match",
    [
        ("tsn", r"no temporal shift in this checkpoint \(a TSN model"),
        ("partial", r"block layer1.1 has no temporal shift while others do"),
        ("block", r"shift_place='block' checkpoint"),
        ("tpool", r"temporal_pool checkpoint"),
        ("nonlocal", r"non-local TSM checkpoint"),
        ("shift4", r"shift_div=4 \(file name\)"),
        ("flow", r"takes 10 input channels"),
        ("resnet34", r"a resnet34 checkpoint; fvdeploy has resnet18 and resnet50"),
        ("arch", r"says arch 'resnet50' but its tensors are a resnet18"),
        ("mobilenet", r"a mobilenetv2 checkpoint; fvdeploy has resnet18 and resnet50"),
    ],
)
def test_unrepresentable_variants_are_refused(ckpts, tmp_path, case, match):
    name = None
    if case == "tsn":
        path = _edit_official(
            ckpts,
            tmp_path,
            lambda sd: _rename(sd, ".conv1.net.", ".conv1."),
            "TSM_kinetics_RGB_resnet18_avg_segment5_e50.pth",
        )
    elif case == "partial":
        path = _edit_official(ckpts, tmp_path, lambda sd: _rename(sd, "layer1.1.conv1.net.", "layer1.1.conv1."))
    elif case == "block":
        path = _edit_official(ckpts, tmp_path, lambda sd: _rename(sd, "layer2.0.", "layer2.0.net."))
    elif case == "tpool":
        path = _edit_official(ckpts, tmp_path, lambda sd: _rename(sd, "base_model.layer2.", "base_model.layer2.net."))
    elif case == "nonlocal":

        def add_nl(sd):
            sd = _rename(sd, "base_model.layer2.0.", "base_model.layer2.0.block.")
            sd["module.base_model.layer2.0.nl.g.weight"] = torch.zeros(64, 128, 1, 1, 1)
            return sd

        path = _edit_official(ckpts, tmp_path, add_nl)
    elif case == "shift4":
        name = "TSM_kinetics_RGB_resnet18_shift4_blockres_avg_segment8_e50.pth"
        path = _edit_official(ckpts, tmp_path, lambda sd: sd, name)
    elif case == "flow":

        def flow(sd):
            sd["module.base_model.conv1.weight"] = torch.zeros(64, 10, 7, 7)
            return sd

        path = _edit_official(ckpts, tmp_path, flow, "model.pth")
    elif case == "resnet34":
        net = torchvision.models.resnet34()
        path = _resave(net.state_dict(), tmp_path / "resnet34.pth")
    else:
        obj = _official_dict(ckpts["tsm18"][0])
        obj["arch"] = "resnet50" if case == "arch" else "mobilenetv2"
        path = _resave(obj, tmp_path / "x.pth")
    _refused(path, tmp_path, match)


@pytest.mark.parametrize(
    "case, match",
    [
        ("depth", r"a resnet101 checkpoint \(its config\)"),
        ("mobilenet", r"backbone MobileNetV2TSM \(its config\)"),
        ("shift_div", r"shift_div=4 \(its config\)"),
        ("tpool", r"temporal_pool=True in its config"),
        ("nonlocal", r"non-local TSM checkpoint \(backbone.layer2.0.block.conv1.conv.net.weight\)"),
        ("tsn", r"no temporal shift in this checkpoint"),
        ("layer5", r"not a ResNet backbone"),
    ],
)
def test_unrepresentable_mmaction2_variants_are_refused(ckpts, tmp_path, case, match):
    obj = torch.load(ckpts["mm18"][0], weights_only=True)
    cfg, sd = obj["meta"]["cfg"], obj["state_dict"]
    if case == "depth":
        obj["meta"]["cfg"] = cfg.replace("depth=18", "depth=101")
    elif case == "mobilenet":
        obj["meta"]["cfg"] = cfg.replace("type='ResNetTSM'", "type='MobileNetV2TSM'")
    elif case == "shift_div":
        obj["meta"]["cfg"] = cfg.replace("shift_div=8", "shift_div=4")
    elif case == "tpool":
        obj["meta"]["cfg"] = cfg.replace("shift_div=8,", "shift_div=8, temporal_pool=True,")
    elif case == "nonlocal":  # NL3DWrapper: the block moves under .block, the NL module beside it
        obj["state_dict"] = _rename(sd, "backbone.layer2.0.", "backbone.layer2.0.block.")
        obj["state_dict"]["backbone.layer2.0.non_local_block.g.conv.weight"] = torch.zeros(64, 128, 1, 1, 1)
    elif case == "tsn":
        obj["state_dict"] = _rename(sd, ".conv1.conv.net.", ".conv1.conv.")
    else:
        obj["state_dict"]["backbone.layer5.0.conv.0.conv.weight"] = torch.zeros(8, 8, 1, 1)
    _refused(_resave(obj, tmp_path / ckpts["mm18"][0].name), tmp_path, match)


def test_existing_destination_is_kept_unless_forced(ckpts, tmp_path):
    path, _ = ckpts["tsm18"]
    out = tmp_path / "model"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    _one_line_error(lambda: import_checkpoint(path, out), "already exists")
    _one_line_error(lambda: import_checkpoint(path, out, ImportOptions(force=True)), "is not a model folder")
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    import_checkpoint(path, out, ImportOptions(force=True))  # an empty folder may be replaced
    (out / "export").mkdir()
    (out / "export" / "model.onnx").write_bytes(b"old weights")
    import_checkpoint(path, out, ImportOptions(force=True, mode="full"))
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]  # stale export gone
    assert load_model(out).config.mode == "full"


# -- command line ----------------------------------------------------------------------------------------------
def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "fvdeploy", *map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=300
    )


def test_cli_import_and_errors(ckpts, tmp_path):
    from typer.testing import CliRunner

    from fvdeploy.cli import app

    path, _ = ckpts["mm18"]
    out = tmp_path / "my model"
    # the import-checkpoint family's real-process smoke test (python -m fvdeploy)
    r = _cli("import-checkpoint", path, "--from", "mmaction2", "--out", out, "--mode", "full", "--clusters", "6")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["arch"], summary["num_classes"], summary["mode"], summary["num_clusters"]) == (
        "resnet18",
        174,
        "full",
        6,
    )
    assert summary["labels"] == "sthv2" and json.loads((out / "config.json").read_text())["segments"] == 4
    r = run_cli("import-checkpoint", path, "--from", "tsm", "--out", tmp_path / "x")
    assert r.returncode == 1 and "use --from mmaction2" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    runner = CliRunner()
    r = runner.invoke(app, ["import-checkpoint", str(path), "--out", str(out)])
    assert r.exit_code == 1 and "already exists" in r.output
    r = runner.invoke(app, ["import-checkpoint", str(path), "--from", "caffe", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2
    assert not (tmp_path / "x").exists()


# -- end to end: the runtime feeds an imported model as its source did ---------------------------------------
def _write_video(path, frames_bgr, fps=10.0):
    import cv2

    h, w = frames_bgr.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for frame in frames_bgr:
        writer.write(np.ascontiguousarray(frame))
    writer.release()


def _decoded(path):
    import cv2

    cap, frames = cv2.VideoCapture(str(path)), []
    ok, frame = cap.read()
    while ok:
        frames.append(frame)
        ok, frame = cap.read()
    return np.stack(frames)


def _official_test_transform(frames_bgr, side):
    """test_models.py: RGB, shorter side to ``side`` (bilinear, antialiased, uint8 out like PIL),
    centre crop, /255, ImageNet mean/std. Written with torch.nn.functional, independently of
    fvdeploy.io."""
    x = torch.from_numpy(frames_bgr[..., ::-1].copy()).permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    size = (side, round(w * side / h)) if h <= w else (round(h * side / w), side)
    x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    x = x.round().clamp(0, 255)  # PIL hands back uint8 levels
    top, left = round((x.shape[-2] - side) / 2), round((x.shape[-1] - side) / 2)
    x = x[..., top : top + side, left : left + side] / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    return (x - mean) / std


@pytest.fixture
def imported_small(ckpts, tmp_path):
    """The official-layout ResNet-18 import, fed at 32 px (the frames of a small real video file)."""
    from fvdeploy.bundle import read_config

    path, ref = ckpts["tsm18"]
    out = tmp_path / "k400"
    import_checkpoint(path, out)
    cfg = read_config(out)
    cfg.input.shorter_side = cfg.input.crop = SIZE
    (out / "config.json").write_text(json.dumps(cfg.to_dict()))
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (6, 36, 44, 3), dtype=np.uint8)
    frames = np.concatenate([np.repeat(base[i : i + 1], 4, 0) for i in range(6)])  # 24 frames, 6 scenes
    video = tmp_path / "clip.avi"
    _write_video(video, frames)
    return out, ref, video


def test_classify_imported_model_tsm_mode_matches_official_test(imported_small):
    from fvdeploy.ops.sampling import tsm_indices
    from fvdeploy.runtime.classifier import Classifier

    out, ref, video = imported_small
    result = Classifier.load(out, device="cpu", mode="tsm", segments=4).classify(video)
    assert result.ok and result.run["mode"] == "tsm" and len(result.segments) == 4
    frames = _decoded(video)
    assert result.num_frames == len(frames) == 24
    x = _official_test_transform(frames[tsm_indices(len(frames), 4).numpy()], SIZE)
    probs = torch.softmax(_logits(ref, x[None]), 1)[0]
    top = probs.topk(5)
    labels = named_labels("kinetics400")
    assert [label for label, _ in result.topk] == [labels[i] for i in top.indices.tolist()]
    np.testing.assert_allclose([s for _, s in result.topk], top.values.numpy(), rtol=1e-3, atol=1e-5)


def test_classify_imported_model_full_mode(imported_small):
    from fvdeploy.runtime.classifier import Classifier

    out, ref, video = imported_small
    model = load_model(out)
    model.config.mode, model.config.num_clusters = "full", 6
    x = _official_test_transform(_decoded(video), SIZE)
    expected = torch.softmax(_logits(model, x[None]), 1)[0]
    result = Classifier.load(out, device="cpu", mode="full", num_clusters=6).classify(video)
    assert result.ok and result.run["mode"] == "full" and len(result.segments) == 6
    assert result.label == named_labels("kinetics400")[int(expected.argmax())]
    np.testing.assert_allclose(result.score, float(expected.max()), rtol=1e-3, atol=1e-5)


def test_cli_classify_imported_model(imported_small):
    out, _, video = imported_small
    for mode, extra, units in (("tsm", ["--segments", "4"], 4), ("full", ["--clusters", "3"], 3)):
        r = run_cli("classify", video, "--model", out, "--mode", mode, *extra, "--json", "--device", "cpu")
        assert r.returncode == 0, r.stderr
        row = json.loads(r.stdout.strip().splitlines()[-1])
        assert row["run"]["mode"] == mode and len(row["segments"]) == units
        assert row["label"] in named_labels("kinetics400")
