"""The training state and its resume checkpoint: what a run killed at any point needs to end as if it never stopped.

`TrainState` holds the model, the average of its weights (`train.ema_decay` > 0), the optimizer, the grad scaler,
the learning-rate schedule and the per-epoch history (its length is the number of epochs done); `state_dict` and
`load_state_dict` are the one pair that the checkpoint writes and a resumed run reads. A checkpoint also carries a
fingerprint of everything that determines the trained weights (`depthcore.train.fingerprint`): one made with other
params, data or code is ignored.

`save_atomic` is torch.save that leaves either the complete new file or the old one, and no temporary file for good
after a kill: the checkpoint and the model file are written with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from depthcore.config import Config
from depthcore.device import Runtime
from depthcore.files import atomic_path
from depthcore.progress import write


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


def make_optimizer(model: torch.nn.Module, config: Config) -> torch.optim.Optimizer:
    """Adam or AdamW (`train.optimizer`) over the parameters that train (a frozen encoder's are left out).

    Fused: one kernel updates every parameter, instead of a Python loop of small ops per tensor (what it saves:
    benchmarks/train_step.py).
    """
    t = config.train
    trainable = [p for p in model.parameters() if p.requires_grad]
    kind = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return kind(trainable, lr=t.lr, weight_decay=t.weight_decay, amsgrad=t.amsgrad, fused=True)


@dataclass
class TrainState:
    """Everything that changes as a run trains, with one `state_dict` / `load_state_dict` pair."""

    model: torch.nn.Module  # the raw weights that the optimizer steps
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    scheduler: torch.optim.lr_scheduler.LambdaLR  # per optimizer step (`lr_factor`)
    ema: AveragedModel | None  # the weights' exponential moving average, BatchNorm statistics too; None = off
    history: list[dict[str, float]] = field(default_factory=list)  # one record per epoch done

    @classmethod
    def create(cls, model: torch.nn.Module, config: Config, runtime: Runtime, total_steps: int) -> TrainState:
        """A fresh state for `model` (already on the runtime's device) and `total_steps` optimizer steps."""
        t = config.train
        optimizer = make_optimizer(model, config)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, total_steps, t.schedule, t.warmup_fraction)
        )
        ema = None
        if t.ema_decay > 0:
            ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(t.ema_decay), use_buffers=True)
        return cls(model, optimizer, runtime.grad_scaler(), scheduler, ema)

    @property
    def kept(self) -> torch.nn.Module:
        """The weights that are validated, shown and saved: the average when there is one."""
        return self.model if self.ema is None else self.ema.module

    def advance(self) -> None:
        """After an optimizer step: the learning-rate schedule and the weights' average move on."""
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            **({} if self.ema is None else {"ema": self.ema.state_dict()}),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.history = state["history"]


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save that leaves either the complete new file or the old one; equal objects give equal bytes.

    It writes into the temporary folder `.<name>.tmp` beside `path` (`depthcore.files.atomic_path`): a write killed
    midway leaves only that, and the next save to `path` clears it. Given a path, torch.save names the archive inside
    the file after it; through an open file object the name is always "archive", so the bytes do not depend on file
    names (and DVC sees the same hash for the same weights).
    """
    with atomic_path(path) as tmp, tmp.open("wb") as file:
        torch.save(obj, file)


def save_checkpoint(path: Path, state: TrainState, fingerprint: str) -> None:
    """Write `state` with its `fingerprint` to `path`, atomically."""
    save_atomic({**state.state_dict(), "fingerprint": fingerprint}, path)


def load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint at `path` if it exists and was made with the same fingerprint, else None."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("fingerprint") != fingerprint:
        write(f"ignoring {path}: it was made with other params, data or code; training from scratch")
        return None
    return state
