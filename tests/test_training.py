"""The trainer on a tiny generated Move4 set: it lowers the loss, its checkpoints are model folders
that load back to the evaluated model, --resume equals an uninterrupted run, and the options
(--init, --freeze-bn, --checkpoint-activations) do what they say."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import cv2
import pytest
import torch
import torch.nn.functional as F
from conftest import ONE_THREAD_ENV, run_cli, tiny_config

from fvdeploy.bundle import load_model, save_model
from fvdeploy.models import create_model
from fvdeploy.training.datasets import open_source
from fvdeploy.training.loop import (
    TrainConfig,
    TrainError,
    enable_activation_checkpointing,
    eval_loader,
    evaluate,
    freeze_batchnorm,
    state_hash,
    train,
)
from fvdeploy.training.measure import forward_flops, saved_activation_bytes
from fvdeploy.training.move4 import CLASSES, Move4Spec, write_move4

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_move4(
        tmp_path_factory.mktemp("m4") / "data", train=16, test=8, spec=Move4Spec(frames=12, size=32), seed=3
    )


def _cfg(data, out, **kw) -> TrainConfig:
    base = dict(
        data=str(data),
        out=str(out),
        arch="tiny",
        clusters=4,
        frames=12,
        size=32,
        shorter_side=32,
        epochs=3,
        batch_size=4,
        lr=0.05,
        workers=0,
        device="cpu",
        track_clusters=2,
    )
    base.update(kw)
    return TrainConfig(**base)


def _rows(out):
    with open(out / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def _train_set_loss(model, data):
    videos = open_source(data, role="train")
    return evaluate(model, eval_loader(videos, model.config, batch_size=8, workers=0), torch.device("cpu")).loss


def test_short_run_lowers_the_loss_and_round_trips_its_checkpoints(data, tmp_path):
    out = tmp_path / "run"
    cfg = _cfg(data, out, epochs=10, lr=0.01, dropout=0.0)  # loss ratio 0.51-0.62 over seeds 0-3
    torch.manual_seed(cfg.seed)
    initial = create_model(cfg.model_config(list(CLASSES)))  # the run's own initial weights (same seed)
    summary = train(cfg)
    assert summary.epochs_done == 10 and not summary.stopped_early
    last = load_model(out / "last")
    assert _train_set_loss(last, data) < 0.8 * _train_set_loss(initial, data)
    # The saved folder is the evaluated model: its test loss is the logged one.
    rows = _rows(out)
    test_videos = open_source(data, role="val")
    result = evaluate(last, eval_loader(test_videos, last.config, batch_size=8, workers=0), torch.device("cpu"))
    assert result.loss == pytest.approx(float(rows[-1]["val_loss"]), rel=1e-4)
    assert last.config.trained["epochs"] == 10 and last.config.labels == list(CLASSES)
    assert last.config.trained["top1"] == pytest.approx(float(rows[-1]["val_top1"]))
    best_epoch = next(int(r["epoch"]) for r in reversed(rows) if r["best"] == "*")
    assert load_model(out / "best").config.trained["epochs"] == best_epoch == summary.best_epoch
    assert not (out / "best" / "train_state").exists() and (out / "last" / "train_state" / "state.pt").is_file()
    tracked = [json.loads(line) for line in (out / "cluster_ids.jsonl").read_text().splitlines()]
    assert [t["epoch"] for t in tracked] == list(range(1, 11)) and len(tracked[0]["ids"]) == 2
    assert sorted(set(tracked[0]["ids"][0])) == [0, 1, 2, 3]


def test_resume_equals_an_uninterrupted_run(data, tmp_path):
    whole = train(_cfg(data, tmp_path / "whole"))
    first = train(_cfg(data, tmp_path / "split", stop_after=1))
    assert first.stopped_early and first.epochs_done == 1
    resumed = train(_cfg(data, tmp_path / "split"), resume=True)
    assert resumed.epochs_done == 3
    a, b = load_model(tmp_path / "whole" / "last"), load_model(tmp_path / "split" / "last")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert whole.rank_weights_sha256 == resumed.rank_weights_sha256
    strip = lambda rows: [{k: v for k, v in r.items() if k != "epoch_s"} for r in rows]  # noqa: E731
    assert strip(_rows(tmp_path / "whole")) == strip(_rows(tmp_path / "split"))
    sa = torch.load(tmp_path / "whole" / "last" / "train_state" / "state.pt", weights_only=True)
    sb = torch.load(tmp_path / "split" / "last" / "train_state" / "state.pt", weights_only=True)
    for k, buf in sa["optimizer"]["state"].items():
        assert torch.equal(buf["momentum_buffer"], sb["optimizer"]["state"][k]["momentum_buffer"])


def test_resume_refuses_changed_options_and_new_runs_refuse_a_used_folder(data, tmp_path):
    out = tmp_path / "run"
    train(_cfg(data, out, epochs=2, stop_after=1))
    with pytest.raises(TrainError, match="--lr 0.1 differs from its 0.05"):
        train(_cfg(data, out, lr=0.1), resume=True, given={"lr"})
    with pytest.raises(TrainError, match="not empty"):
        train(_cfg(data, out))
    with pytest.raises(TrainError, match="nothing to resume"):
        train(_cfg(data, tmp_path / "fresh"), resume=True)


def test_activation_checkpointing_changes_memory_not_results():
    torch.manual_seed(0)
    plain = create_model(tiny_config(num_clusters=4)).train()
    ckpt = create_model(tiny_config(num_clusters=4)).train()
    ckpt.load_state_dict(plain.state_dict())
    enable_activation_checkpointing(ckpt)
    x, y = torch.randn(2, 10, 3, 32, 32), torch.tensor([0, 2])
    for m in (plain, ckpt):
        torch.manual_seed(1)  # the same dropout mask
        F.cross_entropy(m(x).logits, y).backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)
    for (name, b), c in zip(plain.named_buffers(), ckpt.buffers()):  # the recomputation does not update BN twice
        torch.testing.assert_close(b, c, msg=name)
    assert saved_activation_bytes(ckpt, x, y) < 0.6 * saved_activation_bytes(plain, x, y)


def test_full_video_costs_less_than_tsm_all():
    full = create_model(tiny_config(num_clusters=4))
    tsm_all = create_model(tiny_config(mode="tsm", segments=0))
    x, y = torch.randn(1, 16, 3, 32, 32), torch.tensor([1])
    assert forward_flops(full, x) < forward_flops(tsm_all, x)
    assert saved_activation_bytes(full, x, y) < saved_activation_bytes(tsm_all, x, y)


def test_freeze_bn_keeps_all_but_the_first_batchnorm_fixed():
    torch.manual_seed(0)
    model = create_model(tiny_config(num_clusters=4)).train()
    freeze_batchnorm(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1)
    F.cross_entropy(model(torch.randn(2, 8, 3, 32, 32)).logits, torch.tensor([0, 1])).backward()
    opt.step()
    after = model.state_dict()
    assert not torch.equal(before["bn1.running_mean"], after["bn1.running_mean"])  # the first BN trains
    assert not torch.equal(before["bn1.weight"], after["bn1.weight"])
    for k in ("layer1.0.bn1.running_mean", "layer1.0.bn1.weight", "layer4.0.bn2.bias", "layer4.0.bn2.running_var"):
        assert torch.equal(before[k], after[k]), k
    assert not torch.equal(before["layer1.0.conv1.weight"], after["layer1.0.conv1.weight"])


def test_init_from_a_model_folder_with_other_classes_gets_a_new_head(data, tmp_path):
    torch.manual_seed(5)
    src = create_model(tiny_config(num_clusters=4))  # 3 classes a, b, c
    save_model(src, tmp_path / "src")
    out = tmp_path / "run"
    train(_cfg(data, out, init=str(tmp_path / "src"), epochs=1, lr=0.0, clip_grad=0.0))
    got = load_model(out / "last")
    assert got.fc.out_features == 4 and got.config.labels == list(CLASSES)
    own = src.state_dict()
    for k, v in got.state_dict().items():
        if not k.startswith("fc.") and "running" not in k and "num_batches" not in k:
            assert torch.equal(v, own[k]), k  # lr 0: the backbone is the --init one
    assert got.config.trained["source"] is not None


def test_eval_cli_prints_json_and_writes_the_confusion_png(data, tmp_path):
    out = tmp_path / "run"
    train(_cfg(data, out, epochs=1))
    png = tmp_path / "cm.png"
    r = run_cli("eval", "--model", out / "best", "--data", data, "--confusion", png, "--json", "--workers", "0")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["videos"] == 8 and sum(map(sum, result["confusion"])) == 8
    assert result["top1"] == pytest.approx(float(_rows(out)[-1]["val_top1"]))
    assert set(result["per_class"]) == set(CLASSES)
    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] > 100
    r = run_cli("eval", "--model", out / "best", "--data", data, "--confusion", png)
    assert r.returncode == 2 and "--force" in r.stderr
    other = tmp_path / "other" / "Bowling"  # a class the model does not know
    other.mkdir(parents=True)
    (other / "v.mp4").write_bytes((data / "test" / "move_up" / "00000.mp4").read_bytes())
    r = run_cli("eval", "--model", out / "best", "--data", tmp_path / "other")
    assert r.returncode == 1 and "'Bowling' is not one of the model's labels" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_train_cli_errors_are_one_line(tmp_path):
    # the train family's (train, eval, make-move4) real-process smoke test (python -m fvdeploy)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "fvdeploy",
            "train",
            "--data",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "o"),
            "--arch",
            "tiny",
        ],
        capture_output=True,
        text=True,
        env=ONE_THREAD_ENV,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error:") and "nope: not found" in r.stderr
    assert not (tmp_path / "o").exists()


def _train_args(data, out, *extra):
    return [
        "train",
        "--data",
        str(data),
        "--out-dir",
        str(out),
        "--arch",
        "tiny",
        "--clusters",
        "4",
        "--frames",
        "12",
        "--size",
        "32",
        "--shorter-side",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--track-clusters",
        "0",
        *extra,
    ]


def test_train_cli_shows_steps_per_second_and_eta_per_step_and_q_silences_it(data, tmp_path, terminal_stderr):
    from typer.testing import CliRunner

    from fvdeploy.cli import app

    runner = CliRunner()
    r = runner.invoke(app, _train_args(data, tmp_path / "run", "--stop-after", "1"))
    assert r.exit_code == 0, r.output
    assert re.search(r"\d[\d,.]* steps/s", r.stderr) and "ETA" in r.stderr, r.stderr
    assert "epoch 1/2" in r.stderr and "loss " in r.stderr  # the bar's running loss, then the epoch line
    assert json.loads(r.stdout)["epochs_done"] == 1
    # -q: nothing on stderr, the summary still on stdout (and --resume with --out-dir works from the CLI)
    r = runner.invoke(app, _train_args(data, tmp_path / "run", "--resume", "-q"))
    assert r.exit_code == 0, r.output
    assert r.stderr == "" and json.loads(r.stdout)["epochs_done"] == 2


def test_train_reporter_off_a_terminal_writes_timed_step_lines(capsys):
    from fvdeploy.cli.train import RichReporter

    rep = RichReporter(None, every_s=0.0)
    rep.start_epoch(1, 3, 4)
    for _ in range(4):
        rep.step(1.0, 0.5)
    rep.end_epoch({"epoch": 1, "train_loss": "1.0", "train_top1": "0.5", "epoch_s": "0.1"})
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4, lines  # steps 1-3 (the last step is the epoch's line), then the epoch
    assert all(re.match(r"epoch 1/3  step \d/4  \d[\d.]* steps/s  ETA \d+:\d\d  loss 1\.000", ln) for ln in lines[:3])
    assert lines[3].startswith("epoch 1  loss 1.0000")
    quiet = RichReporter(None, quiet=True, every_s=0.0)
    quiet.start_epoch(1, 3, 4)
    for _ in range(4):
        quiet.step(1.0, 0.5)
    quiet.end_epoch({"epoch": 1, "train_loss": "1.0", "train_top1": "0.5", "epoch_s": "0.1"})
    assert capsys.readouterr().err == ""


def test_weights_hash_is_a_function_of_the_weights():
    a, b = create_model(tiny_config()), create_model(tiny_config())
    b.load_state_dict(a.state_dict())
    assert state_hash(a) == state_hash(b)
    with torch.no_grad():
        b.fc.bias[0] += 1
    assert state_hash(a) != state_hash(b)
