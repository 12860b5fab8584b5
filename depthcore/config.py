"""Typed configuration built once from params.yaml.

One frozen dataclass per params section, a comment on every field. `load_config` checks the whole file against these
classes: an unknown key, a missing key or a value of the wrong type raises one `ConfigError` naming the dotted key, what
was expected and what was found.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from depthcore.errors import DepthcoreError


class ConfigError(DepthcoreError, ValueError):
    """params.yaml does not match the schema below."""


@dataclass(frozen=True)
class SyntheticConfig:
    num_images: int  # rooms rendered by the download stage when data.source is synthetic


@dataclass(frozen=True)
class NyuV2Config:
    url: str  # where the labeled NYU Depth v2 .mat is downloaded from
    size: int  # its expected size in bytes
    sha256: str  # its expected SHA-256
    path: str  # a copy already on disk, verified and used instead of downloading; "" downloads


@dataclass(frozen=True)
class DenseDepthDataConfig:
    path: str  # a local copy of DenseDepth's nyu_data.zip (the usual way to get it); "" downloads `url`
    url: str  # where to download nyu_data.zip from when `path` is "" (no official link is alive; mirrors exist)
    sha256: str  # expected SHA-256 of the zip; "" = not verified (a warning says so)
    val_fraction: float  # share of the training scenes held out, whole, for validation


@dataclass(frozen=True)
class SplitConfig:
    method: Literal["random", "official"]  # seeded random fractions (the report) or NYU's official split
    train_fraction: float  # random: share of images for training
    val_fraction: float  # random: share for validation; the rest is the test split
    official_val_fraction: float  # official: share of the 795 training images held out for validation
    official_file: str  # official: path of NYU's splits.mat


@dataclass(frozen=True)
class DataConfig:
    seed: int  # rendering, the random split and the held-out validation scenes
    source: Literal["synthetic", "nyuv2", "densedepth"]  # what the download stage produces
    synthetic: SyntheticConfig  # the offline rendered dataset
    nyuv2: NyuV2Config  # the labeled NYU Depth v2 .mat (1,449 images)
    densedepth: DenseDepthDataConfig  # DenseDepth's nyu_data.zip (50,688 training pairs, the paper's data)
    split: SplitConfig  # how the .mat's images are divided into train / val / test
    shard_size: int  # images per .npz shard


@dataclass(frozen=True)
class AugmentConfig:
    flip_p: float  # probability of a horizontal flip of image and depth together
    channel_swap_p: float  # probability of a random permutation of the RGB channels


@dataclass(frozen=True)
class ModelConfig:
    downsample: bool  # MaxPool2d(4) on the input first (report Table 1)
    decoder: Literal["full", "half"]  # decoder widths: report Table 1, or half of them (the authors' Keras code)
    pretrained: bool  # ImageNet weights for the DenseNet-169 encoder
    freeze_encoder: bool  # with pretrained weights, train the decoder only


@dataclass(frozen=True)
class LossConfig:
    target: Literal["depthnorm", "metres"]  # what the network predicts: max_depth / depth, or depth
    min_depth: float  # metres; lower clamp of depth before the target transform
    max_depth: float  # metres; upper clamp of depth, and DepthNorm's numerator
    w_depth: float  # weight of the point-wise L1 term
    w_grad: float  # weight of the gradient L1 term
    w_ssim: float  # weight of the SSIM term


@dataclass(frozen=True)
class TrainConfig:
    epochs: int  # passes over the training split
    batch_size: int  # images per optimizer step and process (the global batch is this times the processes)
    optimizer: Literal["adamw", "adam"]  # AdamW (decoupled weight decay) or Adam (the paper's)
    amsgrad: bool  # the AMSGrad variant (the paper's Keras code uses it)
    lr: float  # peak learning rate
    weight_decay: float  # AdamW: decoupled weight decay; Adam: L2 penalty
    schedule: Literal["constant", "cosine"]  # learning rate per optimizer step after the warm-up
    warmup_fraction: float  # share of all optimizer steps with a linear warm-up from 0 to lr
    grad_clip: float  # clip the gradient norm to this (0 = no clipping)
    ema_decay: float  # keep, validate and save an exponential moving average of the weights (0 = off)
    nproc: int | Literal["auto"]  # torchrun processes on this machine; auto = every visible GPU, 1 without one
    sync_bn: bool  # SyncBatchNorm across processes (CUDA/nccl only)
    device: Literal["auto", "cpu", "cuda", "mps"]  # auto: cuda, then mps, then cpu
    precision: Literal["auto", "fp32", "bf16", "fp16"]  # autocast dtype; auto picks what the hardware runs fast
    channels_last: bool  # NHWC memory format for the model and its inputs
    compile: bool  # torch.compile the model
    num_workers: int | Literal["auto"]  # DataLoader worker processes per training process; auto: the spare cores
    checkpoint_every: int  # epochs between resume checkpoints (the last epoch always gets one)
    num_vis: int  # validation images in the per-epoch grid


@dataclass(frozen=True)
class EvalConfig:
    protocols: list[str]  # names from depthcore.metrics.PROTOCOLS
    edge_threshold: float  # edge F1 threshold on the Sobel magnitude of depth in metres (0.2: steps over 0.4 m)
    batch_size: int  # images per forward pass
    num_vis: int  # test images in the evaluation grid


@dataclass(frozen=True)
class Config:
    seed: int  # training: initialisation, shuffling and augmentation
    data: DataConfig
    augment: AugmentConfig
    model: ModelConfig
    loss: LossConfig
    train: TrainConfig
    eval: EvalConfig


def load_config(path: str | Path = "params.yaml") -> Config:
    """Read params.yaml and build the typed `Config`, raising `ConfigError` on any mismatch."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"expected a params file at {path}, found none; run from the repository root")
    with open(path) as f:
        raw = yaml.safe_load(f)
    return build(Config, raw)


def build(cls: type, raw: Any, prefix: str = "") -> Any:
    """Build dataclass `cls` from the mapping `raw`; `prefix` is the dotted path used in error messages."""
    where = prefix.rstrip(".") or "params.yaml"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {_describe(raw)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown config key; expected one of {', '.join(names)}")
    missing = [name for name in names if name not in raw]
    if missing:
        raise ConfigError(f"{prefix}{missing[0]}: missing config key ({hints[missing[0]]!s} expected)")
    return cls(**{name: _convert(hints[name], raw[name], prefix + name) for name in names})


def _convert(hint: Any, value: Any, key: str) -> Any:
    """Check `value` against the type `hint` and return it converted; `key` is its dotted name."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key + ".")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected a boolean (true or false), got {_describe(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {_describe(value)}")
    if hint is float:
        # YAML 1.1 reads `1e-4` (no dot) as a string, which `dvc exp run -S train.lr=1e-4` writes; accept it.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {_describe(value)}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {_describe(value)}")
    if origin is Literal:
        choices = typing.get_args(hint)
        if value in choices:
            return value
        raise ConfigError(f"{key}: expected one of {' | '.join(choices)}, got {_describe(value)}")
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _convert(option, value, key)
            except ConfigError:
                continue
        wanted = " or ".join(_expected(option) for option in typing.get_args(hint))
        raise ConfigError(f"{key}: expected {wanted}, got {_describe(value)}")
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {_describe(value)}")
        return [_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"no conversion for type {hint!r} of {key}")  # a schema bug, not a user error


def _expected(hint: Any) -> str:
    """How an error message names what a type hint accepts."""
    if typing.get_origin(hint) is Literal:
        return " | ".join(map(str, typing.get_args(hint)))
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def as_dict(config: Any) -> dict:
    """The resolved config as plain data, for checkpoints and metrics provenance."""
    return dataclasses.asdict(config)
