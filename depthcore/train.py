"""The training loop: Adam(W) over the train shards, validation loss each epoch, checkpoint and resume, one or many
processes.

`fit` reads as set-up, restore, loop, save. The state that changes as the run trains is a `TrainState`
(`depthcore.checkpoint`): model, weight average, optimizer, grad scaler, schedule, history. With `train.ema_decay` > 0
the average (its BatchNorm statistics too) is what gets validated, shown and saved; the raw weights keep training.

A resume checkpoint (`models/checkpoint.pt`) is written every `train.checkpoint_every` epochs and after the last one.
Shuffle order and augmentation are functions of (seed, epoch, index) (depthcore.data), so a run killed mid-epoch and
started again resumes from the last checkpoint and, on the CPU, ends with exactly the weights of a run that was never
interrupted. A checkpoint made with other settings, other data or other training code (its fingerprint differs) is
ignored and training starts afresh.

`model.init` starts from a model file (a depthcore model or the authors' Keras .h5) instead of `model.pretrained`'s
initialisation; with `train.epochs: 0` that model is validated, shown and saved as it is, with no optimizer step.

Under torchrun (`depthcore.distributed`) every process trains on its share of each batch with DistributedDataParallel
(`config.per_process_batch`: `train.global_batch_size` split over the processes, or `train.batch_size` each), every
process loads the checkpoint, validation sums are added over the processes, and rank 0 alone writes logs, checkpoints
and the model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed
from torch.nn.parallel import DistributedDataParallel

from depthcore.checkpoint import TrainState, load_checkpoint, save_checkpoint
from depthcore.config import Config, as_dict, per_process_batch
from depthcore.data import LoaderOptions, ShardDataset, make_loader, resolve_num_workers, verify_for_training
from depthcore.device import Runtime, resolve_runtime
from depthcore.distributed import Dist
from depthcore.errors import DepthcoreError
from depthcore.files import sha256_file
from depthcore.inference import ModelFileError, Predictor, load_any_model, prepare, save_model
from depthcore.loss import DepthLoss
from depthcore.model import DenseDepth, ModelSpec
from depthcore.paths import CHECKPOINT, MODEL, SHARDS
from depthcore.progress import bar, write
from depthcore.visualize import prediction_grid

#: Params that do not change the trained weights, left out of the checkpoint fingerprint: more epochs continue a run
#: (unless the learning-rate schedule spans the epochs: see `fingerprint`).
NOT_FINGERPRINTED = {"train": ("epochs", "nproc", "num_workers", "checkpoint_every", "num_vis")}
#: The modules of this package whose code determines the trained weights, part of the checkpoint fingerprint
#: (tests/test_dvc_deps.py checks this list against the import closure of this module).
TRAINING_CODE = (
    "train", "checkpoint", "inference", "keras_import", "model", "loss", "data", "shards", "codec", "nyu", "device",
    "distributed", "config", "checks",
)  # fmt: skip
PACKAGE_DIR = Path(__file__).resolve().parent
#: Optimizer steps between looks at the running loss (a device-to-host copy, and on several processes a collective):
#: the progress bar and the check that the loss is finite; the end of an epoch always looks.
LOSS_CHECK_EVERY = 20

#: config -> a network (B, 3, H, W) -> (B, 1, h, w) and its spec; `build_model` unless a test swaps it.
ModelFactory = Callable[[Config], tuple[torch.nn.Module, ModelSpec]]


class NonFiniteLoss(DepthcoreError, FloatingPointError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainFiles:
    """Where a run reads its shards and writes its model and resume checkpoint."""

    shards: Path = SHARDS
    model: Path = MODEL
    checkpoint: Path = CHECKPOINT


@dataclass
class Run:
    """The fixed parts of one training process: its settings, device, place among the processes and data."""

    config: Config
    runtime: Runtime
    info: Dist
    net: torch.nn.Module  # what the training steps call: the model, under DDP and torch.compile when asked
    loss_fn: DepthLoss
    loader: torch.utils.data.DataLoader  # this process's share of the train split
    val_loader: torch.utils.data.DataLoader
    val_set: ShardDataset


def build_model(config: Config) -> tuple[DenseDepth, ModelSpec]:
    """The network to train and its spec: the weights of the file `model.init`, or else the `model` params'
    network initialised from `seed` (ImageNet's encoder with `model.pretrained`, frozen with `freeze_encoder`)."""
    m = config.model
    if m.init:
        model, spec, _ = load_any_model(m.init)
        differ = spec.differences(config)
        if differ:
            raise ModelFileError(f"model.init {m.init} is another network than params.yaml's ({'; '.join(differ)})")
        return model, spec
    torch.manual_seed(config.seed)
    spec = ModelSpec.from_config(config)
    return DenseDepth.from_spec(spec, pretrained=m.pretrained, freeze_encoder=m.pretrained and m.freeze_encoder), spec


def build_loss(config: Config) -> DepthLoss:
    loss = config.loss
    return DepthLoss(
        loss.w_depth, loss.w_grad, loss.w_ssim, target=loss.target, min_depth=loss.min_depth, max_depth=loss.max_depth
    )


def train_step(
    net: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    loss_fn: DepthLoss,
    state: TrainState,
    runtime: Runtime,
    grad_clip: float = 0.0,
) -> torch.Tensor:
    """One optimizer step on `rgb` (B, 3, H, W) uint8 and `depth` (B, 1, H, W) metres; returns the detached loss.

    The forward runs under the runtime's autocast; the loss is computed in fp32 (DepthLoss) and so is the optimizer.
    With `grad_clip` > 0 the gradient's global norm is clipped to it first. The schedule and the weights' average
    then move on (`TrainState.advance`). Nothing here waits for the device.
    """
    rgb, depth = runtime.images(batch["rgb"]), batch["depth"].to(runtime.device, non_blocking=True)
    state.optimizer.zero_grad(set_to_none=True)
    with runtime.autocast():
        pred = net(rgb)  # (B, 1, h, w) target space
    loss, _ = loss_fn(pred, depth)
    state.scaler.scale(loss).backward()
    if grad_clip > 0:
        state.scaler.unscale_(state.optimizer)
        params = [p for group in state.optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.advance()
    return loss.detach()


@torch.no_grad()
def validation_loss(run: Run, net: torch.nn.Module) -> float:
    """Mean loss of `net` over the validation images of every process, each batch weighted by its size."""
    net.eval()
    device = run.runtime.device
    total, count = torch.zeros((), dtype=torch.float64, device=device), 0
    for batch in run.val_loader:
        with run.runtime.autocast():
            pred = net(run.runtime.images(batch["rgb"]))
        loss, _ = run.loss_fn(pred, batch["depth"].to(device, non_blocking=True))
        total += loss.double() * len(pred)
        count += len(pred)
    total_all, count_all = run.info.sum([total.item(), count])
    return total_all / count_all


def fingerprint(config: Config, manifest: dict, world_size: int, code_dir: Path = PACKAGE_DIR) -> str:
    """SHA-256 of what determines the trained weights: params (less NOT_FINGERPRINTED), the number of processes
    (the global batch), shards, training code, and the contents of the file `model.init` names, if any.

    `train.epochs` counts too when the learning-rate schedule spans the run (a cosine, or any warm-up, whose length
    is a share of all steps). The code is the TRAINING_CODE modules' files in `code_dir`, so that a fix to, say, the
    loss retrains rather than resuming the checkpoint of the old code (DVC reruns the stage on any change to them).
    """
    params = as_dict(config)
    params.pop("eval")
    spans_the_run = config.train.schedule != "constant" or config.train.warmup_fraction > 0
    for section, keys in NOT_FINGERPRINTED.items():
        for key in keys:
            if not (key == "epochs" and spans_the_run):
                params[section].pop(key)
    code = {name: hashlib.sha256((code_dir / f"{name}.py").read_bytes()).hexdigest() for name in TRAINING_CODE}
    blob = {"params": params, "world_size": world_size, "shards": manifest["shards"], "code": code}
    if config.model.init:  # the starting weights: another file under the same name must not resume this run
        blob["init"] = sha256_file(config.model.init)
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


def fit(
    config: Config,
    files: TrainFiles,
    log: Callable[[dict[str, float], np.ndarray | None], None],
    info: Dist | None = None,
    build: ModelFactory = build_model,
) -> list[dict[str, float]]:
    """Train per `config` on `files.shards`, resuming from `files.checkpoint`; write the final `files.model`.

    `log(epoch_metrics, grid)` is called on rank 0 after every epoch, and replayed for epochs restored from a
    checkpoint (grid None but for the last), so that a resumed run logs what an uninterrupted one does. With
    `train.epochs: 0` it is called once, with the validation loss of the starting model (epoch 0) and its grid.
    `info` is this process's place in a torchrun launch (`depthcore.distributed.setup`; None: one process);
    `build` makes the network. Returns the per-epoch history.
    """
    info, t = info or Dist(), config.train
    manifest = verify_for_training(files.shards, info)  # every split, once per machine, before any work
    model, spec = build(config)
    run = _set_up(config, files.shards, model, info)
    state = TrainState.create(model, config, run.runtime, t.epochs * len(run.loader))
    fp = fingerprint(config, manifest, info.world_size)
    _restore(state, files.checkpoint, fp, info, t.epochs)
    predictor = Predictor(state.kept, run.runtime, spec)

    def grid() -> np.ndarray:
        return prediction_grid(predictor, run.val_set, t.num_vis)

    if info.is_main:
        for i, record in enumerate(state.history):  # restored epochs: the last one with its grid
            log(record, grid() if i == len(state.history) - 1 else None)
        write(f"training on {run.runtime}, {info.world_size} process(es) x batch "
              f"{per_process_batch(t, info.world_size)}, {len(run.loader.dataset)} train / {len(run.val_set)} val "
              f"images, {len(run.loader)} steps per epoch")
    if t.epochs == 0:
        _validate_only(run, state, log, grid)
    for epoch in range(len(state.history), t.epochs):
        record = {"epoch": epoch + 1, "train_loss": _train_epoch(run, state, epoch)}
        record["val_loss"] = validation_loss(run, _synced(state.kept, info))
        state.history.append(record)
        if info.is_main:
            write(f"epoch {epoch + 1}/{t.epochs}: train loss {record['train_loss']:.4f}, "
                  f"val loss {record['val_loss']:.4f}, lr {state.scheduler.get_last_lr()[0]:.3g}")
            if (epoch + 1) % t.checkpoint_every == 0 or epoch + 1 == t.epochs:
                save_checkpoint(files.checkpoint, state, fp)
            log(record, grid())
        info.barrier()
    if info.is_main:
        origin = f"{config.model.init} fine-tuned" if config.model.init else "trained by depthcore.train"
        save_model(files.model, state.kept, spec, config=config, epochs=len(state.history), origin=origin)
    info.barrier()
    return state.history


def _set_up(config: Config, shard_dir: Path, model: torch.nn.Module, info: Dist) -> Run:
    """The runtime, the network as the steps call it, the loss and the loaders of this process."""
    t = config.train
    runtime = resolve_runtime(t.device, t.precision, t.channels_last)
    if runtime.device.type == "cuda":
        runtime = dataclasses.replace(runtime, device=torch.device("cuda", torch.cuda.current_device()))
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels once
    if t.sync_bn and info.active and runtime.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net = prepare(model, runtime)  # on the device before the optimizer, so resumed state lands there too
    if info.active:
        net = DistributedDataParallel(net, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
    if t.compile:  # after DDP, so that gradient communication overlaps the backward pass
        net = torch.compile(net)
    batch = per_process_batch(t, info.world_size)
    train_set = ShardDataset(shard_dir, "train", augment=config.augment, seed=config.seed, verify=False)
    val_set = ShardDataset(shard_dir, "val", verify=False)
    workers = resolve_num_workers(t.num_workers, info.local_world_size)
    share = {"rank": info.rank, "world_size": info.world_size, "device": runtime.device}
    train_options = LoaderOptions(num_workers=workers, **share)
    val_options = LoaderOptions(num_workers=min(workers, 1), persistent=False, **share)  # no idle workers between
    loader = make_loader(train_set, batch, shuffle=True, seed=config.seed, options=train_options)
    val_loader = make_loader(val_set, batch, shuffle=False, seed=config.seed, options=val_options)
    loss_fn = build_loss(config).to(runtime.device)  # its SSIM window a buffer on the device, made once
    return Run(config, runtime, info, net, loss_fn, loader, val_loader, val_set)


def _restore(state: TrainState, path: Path, fp: str, info: Dist, epochs: int) -> None:
    """Load the checkpoint at `path` into `state` when it was made with fingerprint `fp` and holds at most `epochs`
    epochs; every process reads it before rank 0 may write it again."""
    saved = load_checkpoint(path, fp)
    if saved is not None and len(saved["history"]) <= epochs:
        state.load_state_dict(saved)
        if info.is_main:
            write(f"resuming from {path} after epoch {len(state.history)}")
    info.barrier()


def _validate_only(run: Run, state: TrainState, log: Callable, grid: Callable[[], np.ndarray]) -> None:
    """`train.epochs: 0`: the starting model's validation loss and grid, logged as epoch 0; no optimizer step."""
    record = {"epoch": 0, "val_loss": validation_loss(run, state.kept)}
    if run.info.is_main:
        write(f"train.epochs is 0: no optimizer step; {run.config.model.init} is validated and saved as it is "
              f"(val loss {record['val_loss']:.4f})")
        log(record, grid())


def _synced(module: torch.nn.Module, info: Dist) -> torch.nn.Module:
    """`module` with rank 0's buffers (BatchNorm statistics) on every process. DDP broadcasts them at the start of
    each forward pass only, so after the last step each rank's statistics include its own last batch."""
    if info.active:
        for buffer in module.buffers():
            torch.distributed.broadcast(buffer, src=0)
    return module


def _train_epoch(run: Run, state: TrainState, epoch: int) -> float:
    """One pass over this process's share of the training split; returns the mean loss over every process's images.

    The per-step losses stay on the device; every LOSS_CHECK_EVERY steps and at the end they are copied to the host
    once, to update the progress bar and to stop every process at once when any has a non-finite loss.
    """
    t, info, loader = run.config.train, run.info, run.loader
    run.net.train()
    loader.sampler.set_epoch(epoch)
    losses = torch.zeros(len(loader), dtype=torch.float64, device=run.runtime.device)  # per step, this process
    sizes = []
    checked = 0
    with bar(total=len(loader), desc=f"epoch {epoch + 1}/{t.epochs}", unit="batch", leave=False,
             disable=not info.is_main) as progress:
        for step, batch in enumerate(loader):
            losses[step] = train_step(run.net, batch, run.loss_fn, state, run.runtime, t.grad_clip)
            sizes.append(len(batch["rgb"]))
            if step + 1 - checked == LOSS_CHECK_EVERY or step + 1 == len(loader):
                seen = losses[: step + 1].cpu().numpy()
                _check_finite(seen[checked:], info, epoch, (checked + 1, step + 1))
                weights = np.asarray(sizes, dtype=np.float64)
                progress.set_postfix(loss=f"{np.dot(seen, weights) / weights.sum():.4f}", refresh=False)
                progress.update(step + 1 - checked)
                checked = step + 1
    per_step = losses.cpu().numpy()
    total, count = info.sum([float(np.dot(per_step, np.asarray(sizes, dtype=np.float64))), float(sum(sizes))])
    return total / count


def _check_finite(losses: np.ndarray, info: Dist, epoch: int, steps: tuple[int, int]) -> None:
    """Raise NonFiniteLoss on every process when any process's `losses` (of steps first..last, 1-based) has a
    non-finite value; one collective (`Dist.any`), so no process is left waiting for one that stopped."""
    if info.any(not np.isfinite(losses).all()):
        raise NonFiniteLoss(
            f"training loss is not finite in epoch {epoch + 1}, steps {steps[0]}-{steps[1]}; lower train.lr, set "
            "train.grad_clip, or try train.precision=fp32 to rule out reduced precision"
        )
