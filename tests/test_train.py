"""depthcore.train: single-image overfit, resume equals an uninterrupted run, stale checkpoints, non-finite loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import depthcore.train as train_module
from depthcore.device import resolve_runtime
from depthcore.loss import DepthLoss
from depthcore.metrics import depth_errors
from depthcore.model import DenseDepth
from depthcore.nyu import NyuMat
from depthcore.shards import read_manifest
from depthcore.train import NonFiniteLoss, fingerprint, fit, make_optimizer, predict_depth, train_step
from tests.conftest import tiny_train_config


def test_overfits_one_small_image(tiny_mat):
    """The report's section 3.7 check: the network can memorise one image (delta1 > 0.9)."""
    with NyuMat(tiny_mat) as m:
        rgb, depth = m[0]
    rgb_t = F.interpolate(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255, size=(96, 128), mode="area")
    depth_t = F.interpolate(torch.from_numpy(depth)[None, None], size=(96, 128), mode="area")  # (1, 1, 96, 128)
    torch.manual_seed(0)
    model = DenseDepth(downsample=False)  # 96x128 is too small for the 4x input pooling
    runtime = resolve_runtime("cpu", "fp32", False)
    loss_fn = DepthLoss()
    optimizer = make_optimizer(model, lr=3e-4, weight_decay=0.0)
    scaler = runtime.grad_scaler()
    batch = {"rgb": rgb_t, "depth": depth_t}
    before = depth_errors(predict_depth(model.eval(), rgb_t, runtime, loss_fn), depth_t)["delta1"]
    delta1 = before
    for step in range(1, 81):
        model.train()
        train_step(model, batch, loss_fn, optimizer, scaler, runtime)
        if step % 10 == 0:
            delta1 = depth_errors(predict_depth(model.eval(), rgb_t, runtime, loss_fn), depth_t)["delta1"]
            if delta1 > 0.9:
                break
    assert before < 0.5
    assert delta1 > 0.9


def _run(tmp_path, shards, config):
    records = []
    history = fit(
        config, shards, tmp_path / "model.pt", tmp_path / "checkpoint.pt", lambda r, g: records.append((r, g))
    )
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


def test_resume_after_kill_mid_epoch_matches_uninterrupted_run(tmp_path, tiny_shards, monkeypatch):
    config = tiny_train_config()
    whole = tmp_path / "whole"
    history, records = _run(whole, tiny_shards, config)
    assert [r["epoch"] for r in history] == [1, 2]
    assert all(grid is not None and grid.dtype == np.uint8 for _, grid in records)
    (whole / "checkpoint.pt").unlink()  # ~490 MB; only model.pt is compared

    resumed = tmp_path / "resumed"
    _count_steps(monkeypatch, fail_at=3)  # 2 steps per epoch: the third is the middle of epoch 2
    with pytest.raises(KeyboardInterrupt):
        _run(resumed, tiny_shards, config)
    assert not (resumed / "model.pt").exists()
    assert len(torch.load(resumed / "checkpoint.pt", weights_only=True)["history"]) == 1

    calls = _count_steps(monkeypatch)
    history2, records2 = _run(resumed, tiny_shards, config)
    assert len(calls) == 2  # only epoch 2 ran again
    assert history2 == history
    assert [r for r, _ in records2] == [r for r, _ in records]  # epoch 1 replayed to the logger, then epoch 2
    assert np.array_equal(records2[0][1], records[0][1])  # the restored epoch's grid, from the restored weights
    expected, got = _weights(whole / "model.pt"), _weights(resumed / "model.pt")
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    # byte for byte, so that DVC records the same hash for a rerun
    assert (whole / "model.pt").read_bytes() == (resumed / "model.pt").read_bytes()


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
    original = fingerprint(config, manifest)
    assert fingerprint(config, manifest, code) == original
    with (code / "visualize.py").open("a") as f:
        f.write("# not training code\n")
    assert fingerprint(config, manifest, code) == original
    with (code / "loss.py").open("a") as f:
        f.write("# a change to the loss\n")
    assert fingerprint(config, manifest, code) != original


def test_more_epochs_continue_a_finished_run(tmp_path, tiny_shards, monkeypatch):
    _run(tmp_path, tiny_shards, tiny_train_config(**{"train.epochs": 1}))
    calls = _count_steps(monkeypatch)
    history, _ = _run(tmp_path, tiny_shards, tiny_train_config(**{"train.epochs": 2}))
    assert len(calls) == 2 and [r["epoch"] for r in history] == [1, 2]
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert saved["epoch"] == 2 and saved["config"]["train"]["epochs"] == 2


def test_non_finite_loss_names_epoch_and_step(tmp_path, tiny_shards, monkeypatch):
    real = train_module.train_step
    calls = []

    def nan_on_second(*args, **kwargs):
        calls.append(1)
        loss, parts = real(*args, **kwargs)
        return (torch.tensor(float("nan")) if len(calls) == 2 else loss), parts

    monkeypatch.setattr(train_module, "train_step", nan_on_second)
    with pytest.raises(NonFiniteLoss, match=r"epoch 1, step 2"):
        _run(tmp_path, tiny_shards, tiny_train_config(**{"train.epochs": 1}))
    assert not (tmp_path / "model.pt").exists()
