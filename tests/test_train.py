"""depthcore.train: single-image overfit, resume equals an uninterrupted run, stale checkpoints, non-finite loss,
the learning-rate schedule and gradient clipping. Bookkeeping runs on a tiny network (tests/helpers.TinyDepthNet);
learning is checked on the real DenseDepth."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import depthcore.train as train_module
from depthcore.checkpoint import TrainState, lr_factor
from depthcore.device import resolve_runtime
from depthcore.inference import ModelFileError, Predictor, save_model
from depthcore.loss import DepthLoss
from depthcore.metrics import depth_errors
from depthcore.model import DenseDepth, ModelSpec
from depthcore.shards import read_manifest
from depthcore.sources.nyu_mat import NyuMat
from depthcore.train import NonFiniteLoss, TrainFiles, fingerprint, fit, train_step
from tests.helpers import tiny_model, tiny_train_config


@pytest.mark.slow
def test_overfits_one_small_image(tiny_mat):
    """The report's section 3.7 check on the real network: it can memorise one image (delta1 > 0.9)."""
    with NyuMat(tiny_mat) as m:
        rgb, depth = m[0]
    rgb_t = F.interpolate(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255, size=(96, 128), mode="area")
    depth_t = F.interpolate(torch.from_numpy(depth)[None, None], size=(96, 128), mode="area")  # (1, 1, 96, 128)
    torch.manual_seed(0)
    config = tiny_train_config(**{"train.lr": 3e-4, "train.weight_decay": 0.0, "model.downsample": False,
                                  "model.decoder": "full"})  # 96x128 is too small for the 4x input pooling
    spec = ModelSpec.from_config(config)
    model = DenseDepth.from_spec(spec)
    runtime = resolve_runtime("cpu", "fp32", False)
    state = TrainState.create(model, config, runtime, total_steps=80)
    predict, loss_fn = Predictor(model, runtime, spec), DepthLoss()
    batch = {"rgb": rgb_t, "depth": depth_t}
    before = depth_errors(predict(rgb_t), depth_t)["delta1"]
    delta1 = before
    for step in range(1, 81):
        model.train()
        train_step(model, batch, loss_fn, state, runtime)
        if step % 10 == 0:
            delta1 = depth_errors(predict(rgb_t), depth_t)["delta1"]
            if delta1 > 0.9:
                break
    assert before < 0.5
    assert delta1 > 0.9


def _run(tmp_path, shards, config):
    records = []
    files = TrainFiles(shards, tmp_path / "model.pt", tmp_path / "checkpoint.pt")
    history = fit(config, files, lambda r, g: records.append((r, g)), build=tiny_model)
    return history, records


def _count_steps(monkeypatch, fail_at: int | None = None) -> list:
    calls = []
    real = train_module.train_step

    def counting(*args, **kwargs):
        calls.append(1)
        if fail_at is not None and len(calls) == fail_at:
            raise KeyboardInterrupt("killed mid-epoch")
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", counting)
    return calls


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


@pytest.mark.parametrize(("checkpoint_every", "ema_decay"), [(1, 0.0), (2, 0.9)])
def test_resume_after_kill_mid_epoch_matches_uninterrupted_run(
    tmp_path, tiny_shards, monkeypatch, checkpoint_every, ema_decay
):
    """3 epochs of 2 steps, killed in epoch 3: it resumes after epoch 2 (every epoch checkpointed, or every second
    one), runs what is missing, and ends with the uninterrupted run's bytes, weight average and schedule included."""
    config = tiny_train_config(**{"train.epochs": 3, "train.checkpoint_every": checkpoint_every,
                                  "train.schedule": "cosine", "train.warmup_fraction": 0.2,
                                  "train.ema_decay": ema_decay})  # fmt: skip
    whole = tmp_path / "whole"
    history, records = _run(whole, tiny_shards, config)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert all(grid is not None and grid.dtype == np.uint8 for _, grid in records)

    resumed = tmp_path / "resumed"
    _count_steps(monkeypatch, fail_at=6)  # 2 steps per epoch: the sixth is the end of epoch 3
    with pytest.raises(KeyboardInterrupt):
        _run(resumed, tiny_shards, config)
    assert not (resumed / "model.pt").exists()
    assert len(torch.load(resumed / "checkpoint.pt", weights_only=True)["history"]) == 2

    calls = _count_steps(monkeypatch)
    history2, records2 = _run(resumed, tiny_shards, config)
    assert len(calls) == 2  # only epoch 3 ran again
    assert history2 == history
    assert [r for r, _ in records2] == [r for r, _ in records]  # epochs 1-2 replayed to the logger, then epoch 3
    assert np.array_equal(records2[1][1], records[1][1])  # the restored epoch's grid, from the restored weights
    expected, got = _weights(whole / "model.pt"), _weights(resumed / "model.pt")
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    # byte for byte, so that DVC records the same hash for a rerun
    assert (whole / "model.pt").read_bytes() == (resumed / "model.pt").read_bytes()


def test_the_saved_model_is_the_average_of_the_weights(tmp_path, tiny_shards, monkeypatch):
    """ema_decay 0.5 over 2 steps: the first update copies the weights w1, the second gives 0.5 w1 + 0.5 w2."""
    real, seen = train_module.train_step, []

    def recording(net, *args, **kwargs):
        loss = real(net, *args, **kwargs)
        seen.append({k: v.detach().clone() for k, v in net.state_dict().items()})
        return loss

    monkeypatch.setattr(train_module, "train_step", recording)
    _run(tmp_path, tiny_shards, tiny_train_config(**{"train.epochs": 1, "train.ema_decay": 0.5}))
    saved, (w1, w2) = _weights(tmp_path / "model.pt"), seen
    assert all(torch.allclose(saved[k], 0.5 * w1[k] + 0.5 * w2[k]) for k in saved)
    assert not all(torch.equal(saved[k], w2[k]) for k in saved)  # not the last weights


def test_checkpoints_are_written_every_checkpoint_every_epochs(tmp_path, tiny_shards, monkeypatch):
    saved = []
    real = train_module.save_checkpoint
    monkeypatch.setattr(train_module, "save_checkpoint", lambda path, state, fp: (saved.append(len(state.history)),
                                                                                  real(path, state, fp)))
    _run(tmp_path, tiny_shards, tiny_train_config(**{"train.epochs": 5, "train.checkpoint_every": 2}))
    assert saved == [2, 4, 5]  # and always the last epoch


def test_checkpoint_from_other_params_is_ignored(tmp_path, tiny_shards, monkeypatch):
    _run(tmp_path, tiny_shards, tiny_train_config(**{"train.epochs": 1}))
    calls = _count_steps(monkeypatch)
    _run(tmp_path, tiny_shards, tiny_train_config(**{"train.epochs": 1, "train.lr": 1e-3}))
    assert len(calls) == 2  # trained from scratch, not resumed


def test_a_finished_run_restored_whole_logs_every_epoch_and_the_last_grid(tmp_path, tiny_shards, monkeypatch):
    """DVC reruns train after a change to, e.g., train.num_vis: nothing to train, but the logs must be complete."""
    _, records = _run(tmp_path, tiny_shards, tiny_train_config())
    calls = _count_steps(monkeypatch)
    _, replayed = _run(tmp_path, tiny_shards, tiny_train_config(**{"train.num_workers": 1}))
    assert calls == []
    assert [r for r, _ in replayed] == [r for r, _ in records]
    assert replayed[0][1] is None and np.array_equal(replayed[1][1], records[1][1])


def test_fingerprint_covers_the_training_code_only(tmp_path, tiny_shards):
    code = tmp_path / "code"
    code.mkdir()
    for module in (*train_module.TRAINING_CODE, "visualize"):
        (code / f"{module}.py").write_bytes((train_module.PACKAGE_DIR / f"{module}.py").read_bytes())
    config, manifest = tiny_train_config(), read_manifest(tiny_shards)
    original = fingerprint(config, manifest, 1)
    assert fingerprint(config, manifest, 1, code) == original
    assert fingerprint(config, manifest, 2, code) != original  # two processes: twice the global batch
    with (code / "visualize.py").open("a") as f:
        f.write("# not training code\n")
    assert fingerprint(config, manifest, 1, code) == original
    with (code / "loss.py").open("a") as f:
        f.write("# a change to the loss\n")
    assert fingerprint(config, manifest, 1, code) != original


def test_the_file_model_init_names_counts_in_the_fingerprint_by_its_contents(tmp_path, tiny_shards, monkeypatch):
    monkeypatch.chdir(tmp_path)  # model.init is relative to the repository root: a file in init/
    manifest, start = read_manifest(tiny_shards), Path("init/start.pt")
    start.parent.mkdir()
    config = tiny_train_config(**{"model.init": str(start)})
    start.write_bytes(b"weights, first version")
    first = fingerprint(config, manifest, 1)
    start.write_bytes(b"weights, second version")  # same name, other contents: a checkpoint of the first is stale
    assert fingerprint(config, manifest, 1) != first


def test_epochs_count_in_the_fingerprint_only_when_the_schedule_spans_them(tiny_shards):
    manifest = read_manifest(tiny_shards)

    def fp(**overrides):
        return fingerprint(tiny_train_config(**overrides), manifest, 1)

    constant = {"train.schedule": "constant"}
    assert fp(**constant, **{"train.epochs": 2}) == fp(**constant, **{"train.epochs": 3})  # more epochs continue
    cosine = {"train.schedule": "cosine"}
    assert fp(**cosine, **{"train.epochs": 2}) != fp(**cosine, **{"train.epochs": 3})
    # a warm-up is a share of all steps: a 10-epoch run resumed with 20 would warm up again halfway through
    warmup = {"train.schedule": "constant", "train.warmup_fraction": 0.1}
    assert fp(**warmup, **{"train.epochs": 2}) != fp(**warmup, **{"train.epochs": 3})


def test_more_epochs_continue_a_finished_run(tmp_path, tiny_shards, monkeypatch):
    _run(tmp_path, tiny_shards, tiny_train_config(**{"train.epochs": 1}))
    calls = _count_steps(monkeypatch)
    history, _ = _run(tmp_path, tiny_shards, tiny_train_config(**{"train.epochs": 2}))
    assert len(calls) == 2 and [r["epoch"] for r in history] == [1, 2]
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert saved["epochs"] == 2 and saved["config"]["train"]["epochs"] == 2


def test_epochs_zero_validates_and_saves_the_starting_model_without_a_step(tmp_path, tiny_shards, monkeypatch):
    """model.init with train.epochs 0: the given model is validated, shown and saved as it is."""
    monkeypatch.chdir(tmp_path)  # model.init is relative to the repository root: a file in init/
    start = Path("init/start.pt")
    config = tiny_train_config(**{"train.epochs": 0, "model.init": str(start)})
    model, spec = tiny_model(config)
    save_model(start, model, spec, config=None, epochs=0, origin="a test")
    calls = _count_steps(monkeypatch)
    history, records = _run(tmp_path, tiny_shards, config)  # tiny_model: the same seeded weights as `model`
    assert calls == [] and history == []
    (record, grid), = records
    assert sorted(record) == ["epoch", "val_loss"] and record["epoch"] == 0 and np.isfinite(record["val_loss"])
    assert grid is not None and grid.ndim == 3
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.equal(saved["model"][k], v) for k, v in model.state_dict().items())


def test_model_init_of_another_network_is_refused_in_one_line(tmp_path, tiny_shards, monkeypatch):
    config = tiny_train_config(**{"train.epochs": 0, "model.init": "init/released.pt", "model.downsample": True})
    other = ModelSpec.from_config(tiny_train_config(**{"model.downsample": False}))
    monkeypatch.setattr(train_module, "load_any_model", lambda path: (None, other, "a test"))
    with pytest.raises(ModelFileError, match=r"model.init init/released.pt is another network than params.yaml's "
                                             r"\(model.downsample: trained with False, params.yaml says True\)"):
        train_module.build_model(config)


def test_non_finite_loss_names_epoch_and_step(tmp_path, tiny_shards, monkeypatch):
    real = train_module.train_step
    calls = []

    def nan_on_second(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return torch.tensor(float("nan")) if len(calls) == 2 else loss

    monkeypatch.setattr(train_module, "train_step", nan_on_second)
    with pytest.raises(NonFiniteLoss, match=r"epoch 1, steps 1-2"):
        _run(tmp_path, tiny_shards, tiny_train_config(**{"train.epochs": 1}))
    assert not (tmp_path / "model.pt").exists()


def test_lr_factor_by_hand():
    # 100 steps, 10 % warm-up: steps 0..9 rise as (s + 1) / 11; then a cosine over the remaining 90 steps.
    assert [lr_factor(s, 100, "cosine", 0.1) for s in (0, 9)] == pytest.approx([1 / 11, 10 / 11])
    assert lr_factor(10, 100, "cosine", 0.1) == 1.0
    assert lr_factor(55, 100, "cosine", 0.1) == pytest.approx(0.5)  # half way: (1 + cos(pi / 2)) / 2
    assert lr_factor(99, 100, "cosine", 0.1) == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))
    assert lr_factor(50, 100, "constant", 0.0) == 1.0 and lr_factor(3, 100, "constant", 0.1) == pytest.approx(4 / 11)


def test_gradient_clipping_bounds_the_step(tiny_shards):
    """With plain SGD the step is lr * gradient, so the clipped gradient's norm is visible in the weights' change."""
    from tests.helpers import TinyDepthNet

    runtime = resolve_runtime("cpu", "fp32", False)
    batch = {"rgb": torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8), "depth": torch.rand(2, 1, 64, 64) + 1}
    norms = {}
    for clip in (0.0, 1e-3):
        torch.manual_seed(0)
        net = TinyDepthNet()
        before = torch.cat([p.detach().flatten().clone() for p in net.parameters()])
        optimizer = torch.optim.SGD(net.parameters(), lr=1.0)
        constant = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        state = TrainState(net, optimizer, runtime.grad_scaler(), constant, ema=None)
        train_step(net, batch, DepthLoss(), state, runtime, grad_clip=clip)
        after = torch.cat([p.detach().flatten() for p in net.parameters()])
        norms[clip] = float((after - before).norm())
    assert norms[0.0] > 1e-2 and norms[1e-3] == pytest.approx(1e-3, rel=1e-3)
