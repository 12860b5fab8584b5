"""The training loop: Adam(W) over the train shards, validation loss each epoch, checkpoint and resume, one or many
processes.

With `train.ema_decay` > 0 an exponential moving average of the weights (updated after every optimizer step, its
BatchNorm statistics too) is what gets validated, shown and saved as the model; the raw weights keep training.

A resume checkpoint (`models/checkpoint.pt`) is written atomically every `train.checkpoint_every` epochs and after
the last one, with the model, its average, optimizer, scaler and learning-rate schedule state and the per-epoch
history (its length is the number of epochs done). Shuffle order and augmentation are functions of (seed, epoch, index)
(depthcore.data), so a run killed mid-epoch and started again resumes from the last checkpoint and, on the CPU,
ends with exactly the weights of a run that was never interrupted. A checkpoint made with other settings, other
data or other training code (its fingerprint differs) is ignored and training starts afresh.

The loop, its checkpoint and its multi-process parts share this module (over 300 lines): they handle the same state.

Under torchrun (`depthcore.distributed`) every process trains on its share of each batch with DistributedDataParallel
(the global batch is `train.batch_size` times the processes), every process loads the checkpoint, validation sums
are added over the processes, and rank 0 alone writes logs, checkpoints and the model.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from depthcore.config import Config, TrainConfig, as_dict
from depthcore.data import ShardDataset, make_loader, resolve_num_workers
from depthcore.device import Runtime, resolve_runtime
from depthcore.distributed import Dist
from depthcore.errors import DepthcoreError
from depthcore.inference import Predictor, atomic_save, prediction_grid, prepare, save_model
from depthcore.loss import DepthLoss
from depthcore.model import DenseDepth
from depthcore.progress import bar, write
from depthcore.shards import read_manifest

#: Params that do not change the trained weights, left out of the checkpoint fingerprint: more epochs continue a run
#: (unless the learning-rate schedule spans the epochs: see `fingerprint`).
NOT_FINGERPRINTED = {"train": ("epochs", "nproc", "num_workers", "checkpoint_every", "num_vis")}
#: The modules of this package whose code determines the trained weights, part of the checkpoint fingerprint
#: (tests/test_dvc_deps.py checks this list against the import closure of this module).
TRAINING_CODE = (
    "train", "model", "loss", "data", "shards", "codec", "nyu", "device", "distributed", "config", "checks",
)  # fmt: skip
PACKAGE_DIR = Path(__file__).resolve().parent
#: Optimizer steps between looks at the running loss (a device-to-host copy): the progress bar and the check that
#: the loss is finite; the end of an epoch always looks.
LOSS_CHECK_EVERY = 20

#: config -> a freshly initialised network (B, 3, H, W) -> (B, 1, h, w); `build_model` unless a test swaps it.
ModelFactory = Callable[[Config], torch.nn.Module]


class NonFiniteLoss(DepthcoreError, FloatingPointError):
    """The training loss became NaN or infinite."""


def build_model(config: Config) -> DenseDepth:
    """The model of the `model` params, initialised from `seed`; the encoder is frozen only when pretrained."""
    torch.manual_seed(config.seed)
    m = config.model
    return DenseDepth(
        m.downsample, decoder=m.decoder, pretrained=m.pretrained, freeze_encoder=m.pretrained and m.freeze_encoder
    )


def build_loss(config: Config) -> DepthLoss:
    loss = config.loss
    return DepthLoss(
        loss.w_depth, loss.w_grad, loss.w_ssim, target=loss.target, min_depth=loss.min_depth, max_depth=loss.max_depth
    )


def make_optimizer(model: torch.nn.Module, config: Config) -> torch.optim.Optimizer:
    """Adam or AdamW (`train.optimizer`) over the parameters that train (a frozen encoder's are left out).

    Fused: one kernel updates every parameter, instead of a Python loop of small ops per tensor (what it saves:
    benchmarks/train_step.py and README).
    """
    t = config.train
    trainable = [p for p in model.parameters() if p.requires_grad]
    kind = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return kind(trainable, lr=t.lr, weight_decay=t.weight_decay, amsgrad=t.amsgrad, fused=True)


def lr_factor(step: int, total_steps: int, schedule: str, warmup_fraction: float) -> float:
    """The learning rate at optimizer step `step` (0-based) as a fraction of `train.lr`.

    A linear warm-up over the first round(warmup_fraction * total_steps) steps, from 1 / (warm-up steps + 1) up to 1;
    then 1 (constant) or a cosine from 1 down to 0 at step `total_steps` (cosine).
    """
    warmup = round(warmup_fraction * total_steps)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(total_steps - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def train_step(
    net: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    loss_fn: DepthLoss,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    runtime: Runtime,
    grad_clip: float = 0.0,
) -> torch.Tensor:
    """One optimizer step on `rgb` (B, 3, H, W) uint8 and `depth` (B, 1, H, W) metres; returns the detached loss.

    The forward runs under the runtime's autocast; the loss is computed in fp32 (DepthLoss) and so is the optimizer.
    With `grad_clip` > 0 the gradient's global norm is clipped to it first. Nothing here waits for the device.
    """
    rgb, depth = runtime.images(batch["rgb"]), batch["depth"].to(runtime.device, non_blocking=True)
    optimizer.zero_grad(set_to_none=True)
    with runtime.autocast():
        pred = net(rgb)  # (B, 1, h, w) target space
    loss, _ = loss_fn(pred, depth)
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


@torch.no_grad()
def validation_loss(
    net: torch.nn.Module, loader: torch.utils.data.DataLoader, loss_fn: DepthLoss, runtime: Runtime, info: Dist
) -> float:
    """Mean loss over the validation images of every process, each batch weighted by its size."""
    net.eval()
    total, count = torch.zeros((), dtype=torch.float64, device=runtime.device), 0
    for batch in loader:
        with runtime.autocast():
            pred = net(runtime.images(batch["rgb"]))
        loss, _ = loss_fn(pred, batch["depth"].to(runtime.device, non_blocking=True))
        total += loss.double() * len(pred)
        count += len(pred)
    total_all, count_all = info.sum([total.item(), count])
    return total_all / count_all


def fingerprint(config: Config, manifest: dict, world_size: int, code_dir: Path = PACKAGE_DIR) -> str:
    """SHA-256 of what determines the trained weights: params (less NOT_FINGERPRINTED), the number of processes
    (the global batch), shards and training code.

    `train.epochs` counts too when the learning-rate schedule spans the run (cosine): its steps then depend on it.
    The code is the TRAINING_CODE modules' files in `code_dir`, so that a fix to, say, the loss retrains rather than
    resuming the checkpoint of the old code (DVC reruns the stage on any change to them).
    """
    params = as_dict(config)
    params.pop("eval")
    for section, keys in NOT_FINGERPRINTED.items():
        for key in keys:
            if not (key == "epochs" and config.train.schedule != "constant"):
                params[section].pop(key)
    code = {name: hashlib.sha256((code_dir / f"{name}.py").read_bytes()).hexdigest() for name in TRAINING_CODE}
    blob = {"params": params, "world_size": world_size, "shards": manifest["shards"], "code": code}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


def load_checkpoint(path: Path, expected_fingerprint: str) -> dict | None:
    """The checkpoint at `path` if it exists and was made with the same fingerprint, else None."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("fingerprint") != expected_fingerprint:
        write(f"ignoring {path}: it was made with other params, data or code; training from scratch")
        return None
    return state


def fit(
    config: Config,
    shard_dir: Path,
    model_path: Path,
    checkpoint_path: Path,
    log: Callable[[dict[str, float], np.ndarray | None], None],
    info: Dist | None = None,
    build: ModelFactory = build_model,
) -> list[dict[str, float]]:
    """Train per `config` on `shard_dir`, resuming from `checkpoint_path`; write the final `model_path`.

    `log(epoch_metrics, grid)` is called on rank 0 after every epoch, and replayed for epochs restored from a
    checkpoint (grid None but for the last), so that a resumed run logs what an uninterrupted one does: every epoch's
    metrics, and the grid of the last epoch run or restored, even when the checkpoint already holds every epoch (DVC
    reruns the stage after a change to a param that the fingerprint leaves out). `info` is this process's place in
    a torchrun launch (`depthcore.distributed.setup`; None: one process); `build` makes the network. Returns the
    per-epoch history.
    """
    info = info or Dist()
    t, a = config.train, config.augment
    runtime = resolve_runtime(t.device, t.precision, t.channels_last)
    if runtime.device.type == "cuda":
        runtime = Runtime(torch.device("cuda", torch.cuda.current_device()), runtime.dtype, runtime.channels_last)
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels once
    model = build(config)
    if t.sync_bn and info.active and runtime.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net = prepare(model, runtime, t.compile)  # on the device before the optimizer, so resumed state lands there too
    if info.active:
        net = DistributedDataParallel(net, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
    loss_fn = build_loss(config)
    optimizer = make_optimizer(model, config)
    scaler = runtime.grad_scaler()
    train_set = ShardDataset(
        shard_dir, "train", augment=True, flip_p=a.flip_p, channel_swap_p=a.channel_swap_p, seed=config.seed
    )
    val_set = ShardDataset(shard_dir, "val", verify=False)
    workers = resolve_num_workers(t.num_workers, info.local_world_size)
    loader = make_loader(train_set, t.batch_size, shuffle=True, seed=config.seed, rank=info.rank,
                         world_size=info.world_size, num_workers=workers, device=runtime.device)
    val_loader = make_loader(val_set, t.batch_size, shuffle=False, seed=config.seed, rank=info.rank,
                             world_size=info.world_size, num_workers=workers, device=runtime.device)
    steps_per_epoch = len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, t.epochs * steps_per_epoch, t.schedule, t.warmup_fraction)
    )
    ema = None
    if t.ema_decay > 0:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(t.ema_decay), use_buffers=True)
    kept = model if ema is None else ema.module  # the weights validated, shown and saved
    fp = fingerprint(config, read_manifest(shard_dir), info.world_size)
    history: list[dict[str, float]] = []
    state = load_checkpoint(checkpoint_path, fp)
    if state is not None and len(state["history"]) <= t.epochs:
        model.load_state_dict(state["model"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        scheduler.load_state_dict(state["scheduler"])
        history = state["history"]
        if info.is_main:
            write(f"resuming from {checkpoint_path} after epoch {len(history)}")
    info.barrier()  # every process has read the checkpoint before rank 0 may write it again
    predictor = Predictor(kept, runtime, as_dict(config.loss))

    def after_step() -> None:
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)

    def grid() -> np.ndarray:
        return prediction_grid(predictor, val_set, t.num_vis)

    if info.is_main:
        for i, record in enumerate(history):  # restored epochs: the last one with its grid, the image a run leaves
            log(record, grid() if i == len(history) - 1 else None)
        write(
            f"training on {runtime.device} ({runtime.precision}), {info.world_size} process(es) x batch "
            f"{t.batch_size}, {len(train_set)} train / {len(val_set)} val images, {steps_per_epoch} steps per epoch"
        )
    for epoch in range(len(history), t.epochs):
        record = {
            "epoch": epoch + 1,
            "train_loss": _train_epoch(net, loader, epoch, loss_fn, optimizer, scaler, after_step, runtime, info, t),
            "val_loss": validation_loss(kept, val_loader, loss_fn, runtime, info),
        }
        history.append(record)
        if info.is_main:
            write(f"epoch {epoch + 1}/{t.epochs}: train loss {record['train_loss']:.4f}, "
                      f"val loss {record['val_loss']:.4f}, lr {scheduler.get_last_lr()[0]:.3g}")
            if (epoch + 1) % t.checkpoint_every == 0 or epoch + 1 == t.epochs:
                checkpoint = {
                    "model": model.state_dict(),
                    **({} if ema is None else {"ema": ema.state_dict()}),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "history": history,
                    "fingerprint": fp,
                }
                atomic_save(checkpoint, checkpoint_path)
            log(record, grid())
        info.barrier()
    if info.is_main:
        save_model(model_path, kept, config, len(history))
    info.barrier()
    return history


def _train_epoch(
    net: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    epoch: int,
    loss_fn: DepthLoss,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    after_step: Callable[[], None],
    runtime: Runtime,
    info: Dist,
    t: TrainConfig,
) -> float:
    """One pass over this process's share of the training split; returns the mean loss over every process's images.

    The per-step losses stay on the device; every LOSS_CHECK_EVERY steps and at the end they are copied to the host
    once, to update the progress bar and to stop at the first non-finite one.
    """
    net.train()
    loader.sampler.set_epoch(epoch)
    losses = torch.zeros(len(loader), dtype=torch.float64, device=runtime.device)  # per step, this process
    sizes = []
    checked = 0
    with bar(total=len(loader), desc=f"epoch {epoch + 1}/{t.epochs}", unit="batch", leave=False,
             disable=not info.is_main) as progress:
        for step, batch in enumerate(loader):
            losses[step] = train_step(net, batch, loss_fn, optimizer, scaler, runtime, t.grad_clip)
            after_step()  # the learning-rate schedule and the weights' average move on
            sizes.append(len(batch["rgb"]))
            if step + 1 - checked == LOSS_CHECK_EVERY or step + 1 == len(loader):
                seen = losses[: step + 1].cpu().numpy()
                _check_finite(seen, checked, epoch)
                weights = np.asarray(sizes, dtype=np.float64)
                progress.set_postfix(loss=f"{np.dot(seen, weights) / weights.sum():.4f}", refresh=False)
                progress.update(step + 1 - checked)
                checked = step + 1
    per_step = losses.cpu().numpy()
    total, count = info.sum([float(np.dot(per_step, np.asarray(sizes, dtype=np.float64))), float(sum(sizes))])
    return total / count


def _check_finite(losses: np.ndarray, start: int, epoch: int) -> None:
    """Raise NonFiniteLoss naming the first non-finite loss among steps start.. of `losses` (per step, 0-based)."""
    bad = np.flatnonzero(~np.isfinite(losses[start:]))
    if bad.size:
        step = start + int(bad[0])
        raise NonFiniteLoss(
            f"training loss is {losses[step]} at epoch {epoch + 1}, step {step + 1}; lower train.lr, set "
            "train.grad_clip, or try train.precision=fp32 to rule out reduced precision"
        )
