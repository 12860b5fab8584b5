"""The training loop: AdamW over the train shards, validation loss each epoch, checkpoint and resume.

A checkpoint (`models/checkpoint.pt`) is written atomically after every epoch with the model, optimizer and scaler
state, the epoch and the per-epoch history. Shuffle order and augmentation are functions of (seed, epoch, index)
(depthcore.data), so a run killed mid-epoch and started again resumes from the last complete epoch and, on the CPU,
ends with exactly the weights of a run that was never interrupted. A checkpoint made with other settings, other
data or other training code (its fingerprint differs) is ignored and training starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from depthcore.files import atomic_path
from depthcore.config import Config, as_dict
from depthcore.data import ShardDataset, make_loader
from depthcore.device import Runtime, resolve_runtime
from depthcore.loss import DepthLoss, to_metres
from depthcore.model import DenseDepth
from depthcore.shards import read_manifest
from depthcore.visualize import depth_grid

#: Params that do not change the trained weights, left out of the checkpoint fingerprint: more epochs continue a run.
NOT_FINGERPRINTED = {"train": ("epochs", "num_workers", "num_vis")}
#: The modules of this package whose code determines the trained weights, part of the checkpoint fingerprint.
TRAINING_CODE = ("train", "model", "loss", "data", "device")
PACKAGE_DIR = Path(__file__).resolve().parent


#: rgb (B, 3, H, W) in [0, 1] -> depth (B, 1, H, W) in metres at the input's resolution.
Predictor = Callable[[torch.Tensor], torch.Tensor]


class NonFiniteLoss(FloatingPointError):
    """The training loss became NaN or infinite."""


def build_model(config: Config) -> DenseDepth:
    """The model of the `model` params, initialised from `seed`; the encoder is frozen only when pretrained."""
    torch.manual_seed(config.seed)
    m = config.model
    return DenseDepth(m.downsample, pretrained=m.pretrained, freeze_encoder=m.pretrained and m.freeze_encoder)


def build_loss(config: Config) -> DepthLoss:
    c = config.loss
    return DepthLoss(c.w_depth, c.w_grad, c.w_ssim, target=c.target, min_depth=c.min_depth, max_depth=c.max_depth)


def prepare(model: DenseDepth, runtime: Runtime, compile_model: bool = False) -> torch.nn.Module:
    """Move `model` to the runtime's device and memory format; returns the module to call (compiled or not)."""
    fmt = torch.channels_last if runtime.channels_last else torch.contiguous_format
    model.to(runtime.device, memory_format=fmt)
    return torch.compile(model) if compile_model else model


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the parameters that train (a frozen encoder's are left out), its state fp32 like them.

    Fused: one kernel updates every parameter, instead of a Python loop of small ops per tensor; on the 2-core CPU
    that takes the optimizer from ~0.18 s to ~0.07 s of a ~1.6 s bf16 step (benchmarks/train_step.py).
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay, fused=True)


def train_step(
    net: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    loss_fn: DepthLoss,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    runtime: Runtime,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimizer step on `rgb` (B, 3, H, W) and `depth` (B, 1, H, W) metres; returns detached loss and parts.

    The forward runs under the runtime's autocast; the loss is computed in fp32 (DepthLoss) and so is the optimizer.
    """
    rgb, depth = runtime.images(batch["rgb"]), batch["depth"].to(runtime.device, non_blocking=True)
    optimizer.zero_grad(set_to_none=True)
    with runtime.autocast():
        pred = net(rgb)  # (B, 1, h, w) target space
    loss, parts = loss_fn(pred, depth)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach(), parts


@torch.no_grad()
def predict_depth(net: torch.nn.Module, rgb: torch.Tensor, runtime: Runtime, loss_fn: DepthLoss) -> torch.Tensor:
    """rgb (B, 3, H, W) in [0, 1] -> depth (B, 1, H, W) in metres, upsampled bilinearly to the input's size."""
    with runtime.autocast():
        pred = net(runtime.images(rgb))  # (B, 1, h, w) target space
    pred = torch.nn.functional.interpolate(pred.float(), size=rgb.shape[-2:], mode="bilinear", align_corners=True)
    return to_metres(pred, loss_fn.target, loss_fn.min_depth, loss_fn.max_depth)


@torch.no_grad()
def validation_loss(
    net: torch.nn.Module, loader: torch.utils.data.DataLoader, loss_fn: DepthLoss, runtime: Runtime
) -> float:
    """Mean loss over the loader's images, each batch weighted by its size."""
    net.eval()
    total, count = 0.0, 0
    for batch in loader:
        with runtime.autocast():
            pred = net(runtime.images(batch["rgb"]))
        loss, _ = loss_fn(pred, batch["depth"].to(runtime.device))
        total += loss.item() * len(pred)
        count += len(pred)
    return total / count


def fingerprint(config: Config, manifest: dict, code_dir: Path = PACKAGE_DIR) -> str:
    """SHA-256 of what determines the trained weights: params (less NOT_FINGERPRINTED), shards and training code.

    The code is the TRAINING_CODE modules' files in `code_dir`, so that a fix to, say, the loss retrains rather than
    resuming the checkpoint of the old code (DVC reruns the stage on any change to them).
    """
    params = as_dict(config)
    params.pop("eval")
    for section, keys in NOT_FINGERPRINTED.items():
        for key in keys:
            params[section].pop(key)
    code = {name: hashlib.sha256((code_dir / f"{name}.py").read_bytes()).hexdigest() for name in TRAINING_CODE}
    blob = json.dumps({"params": params, "shards": manifest["shards"], "code": code}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save that leaves either the complete new file or the old one; equal objects give equal bytes.

    torch.save names the archive inside the file after the file it is given, here a randomly named temporary file;
    through an open file object it is always "archive", so a rerun writes the same bytes (and DVC the same hash).
    """
    with atomic_path(path) as tmp, tmp.open("wb") as file:
        torch.save(obj, file)


def load_checkpoint(path: Path, expected_fingerprint: str) -> dict | None:
    """The checkpoint at `path` if it exists and was made with the same fingerprint, else None."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("fingerprint") != expected_fingerprint:
        tqdm.write(f"ignoring {path}: it was made with other params or data; training from scratch")
        return None
    return state


def fit(
    config: Config,
    shard_dir: Path,
    model_path: Path,
    checkpoint_path: Path,
    log: Callable[[dict[str, float], np.ndarray], None],
) -> list[dict[str, float]]:
    """Train per `config` on `shard_dir`, resuming from `checkpoint_path`; write the final `model_path`.

    `log(epoch_metrics, grid)` is called after every epoch, and replayed for epochs restored from a checkpoint (grid
    None but for the last), so that a resumed run logs what an uninterrupted one does: every epoch's metrics, and
    the grid of the last epoch run or restored, even when the checkpoint already holds every epoch (DVC reruns the
    stage after a change to a param that the fingerprint leaves out). Returns the per-epoch history.
    """
    c, a = config.train, config.augment
    runtime = resolve_runtime(c.device, c.precision, c.channels_last)
    model = build_model(config)
    net = prepare(model, runtime, c.compile)  # on the device before the optimizer, so resumed state lands there too
    loss_fn = build_loss(config)
    optimizer = make_optimizer(model, c.lr, c.weight_decay)
    scaler = runtime.grad_scaler()
    manifest = read_manifest(shard_dir)
    fp = fingerprint(config, manifest)
    history: list[dict[str, float]] = []
    state = load_checkpoint(checkpoint_path, fp)
    if state is not None and len(state["history"]) <= c.epochs:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        history = state["history"]
        tqdm.write(f"resuming from {checkpoint_path} after epoch {len(history)}")
    train_set = ShardDataset(
        shard_dir, "train", augment=True, flip_p=a.flip_p, channel_swap_p=a.channel_swap_p, seed=config.seed
    )
    val_set = ShardDataset(shard_dir, "val", verify=False)
    val_loader = make_loader(
        val_set, c.batch_size, shuffle=False, seed=config.seed, num_workers=c.num_workers, device=runtime.device
    )

    def grid() -> np.ndarray:
        net.eval()
        return prediction_grid(
            lambda rgb: predict_depth(net, rgb, runtime, loss_fn), val_set, c.num_vis, loss_fn.max_depth
        )

    for i, record in enumerate(history):  # restored epochs: the last one with its grid, the image a run leaves
        log(record, grid() if i == len(history) - 1 else None)
    tqdm.write(
        f"training on {runtime.device} ({runtime.precision}), {len(train_set)} train / {len(val_set)} val images"
    )
    for epoch in range(len(history), c.epochs):
        loader = make_loader(
            train_set,
            c.batch_size,
            shuffle=True,
            seed=config.seed,
            epoch=epoch,
            num_workers=c.num_workers,
            device=runtime.device,
        )
        net.train()
        total, count = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{c.epochs}", unit="batch", leave=False)
        for step, batch in enumerate(bar):
            loss, _ = train_step(net, batch, loss_fn, optimizer, scaler, runtime)
            value = loss.item()
            if not math.isfinite(value):
                raise NonFiniteLoss(
                    f"training loss is {value} at epoch {epoch + 1}, step {step + 1}; lower train.lr, or try "
                    "train.precision=fp32 to rule out reduced precision"
                )
            total += value * len(batch["rgb"])
            count += len(batch["rgb"])
            bar.set_postfix(loss=f"{total / count:.4f}")
        record = {
            "epoch": epoch + 1,
            "train_loss": total / count,
            "val_loss": validation_loss(net, val_loader, loss_fn, runtime),
        }
        history.append(record)
        tqdm.write(
            f"epoch {epoch + 1}/{c.epochs}: train loss {record['train_loss']:.4f}, val loss {record['val_loss']:.4f}"
        )
        checkpoint = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "history": history,
            "fingerprint": fp,
        }
        atomic_save(checkpoint, checkpoint_path)
        log(record, grid())
    atomic_save({"model": model.state_dict(), "config": as_dict(config), "epoch": len(history)}, model_path)
    return history


def prediction_grid(
    predict: Predictor, dataset: ShardDataset, num: int, max_depth: float, with_error: bool = False
) -> np.ndarray:
    """The first `num` images of `dataset` as an RGB | truth | prediction (| error) grid, (num*H, C*W, 3) uint8."""
    items = [dataset[i] for i in range(min(num, len(dataset)))]
    rgb = torch.stack([item["rgb"] for item in items])  # (N, 3, H, W)
    pred = predict(rgb).cpu()[:, 0].numpy()  # (N, H, W) metres
    gt = torch.stack([item["depth"][0] for item in items]).numpy()  # (N, H, W) metres
    rgb_u8 = (rgb.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)  # (N, H, W, 3)
    return depth_grid(rgb_u8, gt, pred, max_depth, with_error)
