"""Typed configuration built once from params.yaml.

One frozen dataclass per params section, a comment on every field. `load_config` checks the whole file against these
classes before any stage does work: an unknown key, a missing key, a value of the wrong type, a value outside its
field's rule (`dataclasses.field(metadata={"rule": ...})`, e.g. `_integer(1)`) or values that do not go together (a
class's `check_together`) raise one `ConfigError` naming the dotted key, what was expected and what was found.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from depthcore.errors import DepthcoreError
from depthcore.nyu import NYU_NUM_IMAGES, OFFICIAL_TRAIN_COUNT
from depthcore.paths import INIT_DIR


class ConfigError(DepthcoreError, ValueError):
    """params.yaml does not match the schema below."""


@dataclass(frozen=True)
class Rule:
    """What a field's value must satisfy beyond its type; `expected` words it for the error message."""

    expected: str  # e.g. "an integer >= 1"
    holds: Callable[[Any], bool]  # the converted value -> whether it is allowed


def _ruled(expected: str, holds: Callable[[Any], bool]) -> Any:
    """A dataclass field (no default) whose converted value `build` checks against `Rule(expected, holds)`."""
    return dataclasses.field(metadata={"rule": Rule(expected, holds)})


def _under_init_dir(path: Path) -> bool:
    """Whether `path` is a relative path inside INIT_DIR (no `..` to leave it)."""
    return not path.is_absolute() and path.parts[:1] == INIT_DIR.parts and ".." not in path.parts and path != INIT_DIR


def _integer(minimum: int, *, also: tuple[Any, ...] = ()) -> Any:
    """An integer field >= `minimum`, or one of the non-integer values `also` (e.g. "auto", None)."""
    words = "".join(f" or {'null' if value is None else value}" for value in also)
    return _ruled(f"an integer >= {minimum}{words}", lambda v: v in also or v >= minimum)


def _number(low: float, high: float = math.inf, ends: str = "[)") -> Any:
    """A number field between `low` and `high`; `ends` says which ends belong: "[]", "[)", "(]" or "()"."""
    if high == math.inf:
        expected = f"a number {'>=' if ends[0] == '[' else '>'} {low}"
    else:
        expected = f"a number in {ends[0]}{low}, {high}{ends[1]}"

    def holds(v: float) -> bool:
        return (v >= low if ends[0] == "[" else v > low) and (v <= high if ends[1] == "]" else v < high)

    return _ruled(expected, holds)


def _sha256(*, optional: bool) -> Any:
    """A string field of 64 hexadecimal digits (either case), or "" when `optional`."""
    expected = '64 hexadecimal digits or "" (not verified)' if optional else "64 hexadecimal digits"
    return _ruled(expected, lambda v: (optional and v == "") or re.fullmatch("[0-9a-fA-F]{64}", v) is not None)


_EPS = 1e-9  # guards floor() against products like 0.29 * 100 = 28.999999999999996
FRACTION = "()"  # a share strictly between 0 and 1
PROBABILITY = "[]"  # both ends included
_EPOCHS = "an integer >= 1 (0 only with model.init, to evaluate that model as it is)"
ProtocolName = Literal["report", "densedepth", "eigen"]  # the keys of depthcore.metrics.PROTOCOLS


@dataclass(frozen=True)
class SyntheticConfig:
    num_images: int = _integer(1)  # rooms rendered by the download stage when data.source is synthetic


@dataclass(frozen=True)
class NyuV2Config:
    url: str  # where the labeled NYU Depth v2 .mat is downloaded from
    size: int = _integer(1)  # its expected size in bytes
    sha256: str = _sha256(optional=False)  # its expected SHA-256
    path: str  # a copy already on disk, verified and used instead of downloading; "" downloads


@dataclass(frozen=True)
class DenseDepthDataConfig:
    path: str  # a local copy of DenseDepth's nyu_data.zip (the usual way to get it); "" downloads `url`
    url: str  # where to download nyu_data.zip from when `path` is "" (no official link is alive; mirrors exist)
    sha256: str = _sha256(optional=True)  # expected SHA-256 of the zip; "" = not verified (a warning says so)
    val_fraction: float = _number(0, 1, FRACTION)  # share of the training scenes held out, whole, for validation


@dataclass(frozen=True)
class SplitConfig:
    method: Literal["random", "official"]  # seeded random fractions (the report) or NYU's official split
    train_fraction: float = _number(0, 1, FRACTION)  # random: share of images for training
    val_fraction: float = _number(0, 1, FRACTION)  # random: share for validation; the rest is the test split
    official_val_fraction: float = _number(0, 1, FRACTION)  # official: share of the 795 training images for validation
    official_file: str  # official: path of NYU's splits.mat

    def check_together(self, prefix: str) -> None:
        if self.train_fraction + self.val_fraction >= 1:
            raise ConfigError(
                f"{prefix}val_fraction: expected train_fraction + val_fraction < 1 (the rest is the test split), "
                f"got {self.train_fraction} + {self.val_fraction}"
            )


@dataclass(frozen=True)
class DataConfig:
    seed: int = _integer(0)  # rendering, the random split and the held-out validation scenes
    source: Literal["synthetic", "nyuv2", "densedepth"]  # what the download stage produces
    synthetic: SyntheticConfig  # the offline rendered dataset
    nyuv2: NyuV2Config  # the labeled NYU Depth v2 .mat (1,449 images)
    densedepth: DenseDepthDataConfig  # DenseDepth's nyu_data.zip (50,688 training pairs, the paper's data)
    split: SplitConfig  # how the .mat's images are divided into train / val / test
    shard_size: int = _integer(1)  # images per .npz shard

    def check_together(self, prefix: str) -> None:
        """Every split of the .mat sources gets an image (densedepth's zip brings its own test images)."""
        if self.source == "densedepth":
            return
        images = self.synthetic.num_images if self.source == "synthetic" else NYU_NUM_IMAGES
        if self.split.method == "random":
            _check_random_counts(self, images, prefix)
        else:
            _check_official_counts(self, images, prefix)


def _check_random_counts(data: DataConfig, images: int, prefix: str) -> None:
    """`data.split`'s random fractions of `images` leave no split empty."""
    split = data.split
    counts = random_split_counts(images, split.train_fraction, split.val_fraction)
    if min(counts.values()) > 0:
        return
    if data.source == "synthetic":
        key = "synthetic.num_images"
    else:
        key = "split.train_fraction" if counts["train"] == 0 else "split.val_fraction"
    found = " / ".join(f"{count} {name}" for name, count in counts.items())
    raise ConfigError(
        f"{prefix}{key}: expected at least one image in every split, got {found} of {images} images "
        f"at train_fraction {split.train_fraction} and val_fraction {split.val_fraction}; use more images or "
        f"other fractions"
    )


def _check_official_counts(data: DataConfig, images: int, prefix: str) -> None:
    """The official split needs NYU's 1,449 images, and its validation share must leave train and val non-empty."""
    if images != NYU_NUM_IMAGES:
        raise ConfigError(
            f"{prefix}split.method: expected random for {images} {data.source} images (official splits NYU's "
            f"{NYU_NUM_IMAGES}), got official"
        )
    fraction = data.split.official_val_fraction
    held_out = official_val_count(fraction)
    if held_out in (0, OFFICIAL_TRAIN_COUNT):
        raise ConfigError(
            f"{prefix}split.official_val_fraction: expected a share holding out 1 to {OFFICIAL_TRAIN_COUNT - 1} of the "
            f"{OFFICIAL_TRAIN_COUNT} official training images, got {fraction} (holds out {held_out})"
        )


def random_split_counts(num_images: int, train_fraction: float, val_fraction: float) -> dict[str, int]:
    """Images per split of `data.split.method` random: floor(train_fraction * n) train, floor(val_fraction * n) val,
    the rest test (`depthcore.splits.make_splits` cuts its permutation at these counts)."""
    train = math.floor(train_fraction * num_images + _EPS)
    val = math.floor(val_fraction * num_images + _EPS)
    return {"train": train, "val": val, "test": num_images - train - val}


def official_val_count(official_val_fraction: float) -> int:
    """Official training images held out for validation by `data.split.method` official: the fraction of the 795,
    rounded half up."""
    return math.floor(official_val_fraction * OFFICIAL_TRAIN_COUNT + 0.5)


@dataclass(frozen=True)
class AugmentConfig:
    flip_p: float = _number(0, 1, PROBABILITY)  # probability of a horizontal flip of image and depth together
    channel_swap_p: float = _number(0, 1, PROBABILITY)  # probability of a random permutation of the RGB channels


@dataclass(frozen=True)
class ModelConfig:
    downsample: bool  # MaxPool2d(4) on the input first (report Table 1)
    decoder: Literal["full", "half"]  # decoder widths: report Table 1, or half of them (the authors' Keras code)
    upsampling: Literal["corners", "half_pixel"]  # decoder's bilinear resize: align_corners=True, or half-pixel (TF2)
    pretrained: bool  # ImageNet weights for the DenseNet-169 encoder
    freeze_encoder: bool  # with pretrained weights, train the decoder only
    init: str = _ruled(  # a model file to start from (depthcore .pt or the authors' Keras .h5) in init/; "" = none
        f'"" or a file under {INIT_DIR}/ (the folder DVC hashes for the train stage: copy or link the file there)',
        lambda v: v == "" or _under_init_dir(Path(v)),
    )


@dataclass(frozen=True)
class LossConfig:
    target: Literal["depthnorm", "metres"]  # what the network predicts: max_depth / depth, or depth
    min_depth: float = _number(0, ends="()")  # metres; lower clamp of depth before the target transform
    max_depth: float = _number(0, ends="()")  # metres; upper clamp of depth, and DepthNorm's numerator
    w_depth: float = _number(0)  # weight of the point-wise L1 term
    w_grad: float = _number(0)  # weight of the gradient L1 term
    w_ssim: float = _number(0)  # weight of the SSIM term

    def check_together(self, prefix: str) -> None:
        if self.max_depth <= self.min_depth:
            raise ConfigError(
                f"{prefix}max_depth: expected a number > min_depth ({self.min_depth}), got {self.max_depth}"
            )
        if self.w_depth == self.w_grad == self.w_ssim == 0:
            raise ConfigError(
                f"{prefix}w_depth, {prefix}w_grad, {prefix}w_ssim: expected at least one > 0, got all three 0"
            )


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = _ruled(_EPOCHS, lambda v: v >= 0)  # passes over the training split; 0 evaluates model.init as it is
    batch_size: int = _integer(1)  # images per optimizer step and process, when global_batch_size is null
    global_batch_size: int | None = _integer(1, also=(None,))  # images per optimizer step over all processes, or null
    optimizer: Literal["adamw", "adam"]  # AdamW (decoupled weight decay) or Adam (the paper's)
    amsgrad: bool  # the AMSGrad variant (the paper's Keras code uses it)
    lr: float = _number(0, ends="()")  # peak learning rate
    weight_decay: float = _number(0)  # AdamW: decoupled weight decay; Adam: L2 penalty
    schedule: Literal["constant", "cosine"]  # learning rate per optimizer step after the warm-up
    warmup_fraction: float = _number(0, 1)  # share of all optimizer steps with a linear warm-up from 0 to lr
    grad_clip: float = _number(0)  # clip the gradient norm to this (0 = no clipping)
    ema_decay: float = _number(0, 1)  # keep, validate and save an exponential moving average of the weights (0 = off)
    nproc: int | Literal["auto"] = _integer(1, also=("auto",))  # torchrun processes here; auto = every visible GPU
    sync_bn: bool  # SyncBatchNorm across processes (CUDA/nccl only)
    device: Literal["auto", "cpu", "cuda", "mps"]  # auto: cuda, then mps, then cpu
    precision: Literal["auto", "fp32", "bf16", "fp16"]  # autocast dtype; auto picks what the hardware runs fast
    channels_last: bool  # NHWC memory format for the model and its inputs
    compile: bool  # torch.compile the model
    num_workers: int | Literal["auto"] = _integer(0, also=("auto",))  # loader workers per process; auto: spare cores
    checkpoint_every: int = _integer(1)  # epochs between resume checkpoints (the last epoch always gets one)
    num_vis: int = _integer(1)  # validation images in the per-epoch grid

    def check_together(self, prefix: str) -> None:
        if isinstance(self.nproc, int):  # `auto` is known only where the train stage runs
            per_process_batch(self, self.nproc)


def per_process_batch(train: TrainConfig, world_size: int) -> int:
    """Images per optimizer step in each of `world_size` processes: `train.batch_size`, or with
    `train.global_batch_size` set, that split evenly over the processes."""
    total = train.global_batch_size
    if total is None:
        return train.batch_size
    if total % world_size:
        raise ConfigError(f"train.global_batch_size: expected a multiple of the {world_size} processes, got {total}")
    return total // world_size


@dataclass(frozen=True)
class EvalConfig:
    protocols: list[ProtocolName] = _ruled(  # evaluation protocols, names from depthcore.metrics.PROTOCOLS
        "a non-empty list of protocols without repeats", lambda v: len(v) > 0 and len(set(v)) == len(v)
    )
    edge_threshold: float = _number(0, ends="()")  # edge F1 threshold on the Sobel magnitude of depth in metres
    batch_size: int = _integer(1)  # images per forward pass
    num_vis: int = _integer(1)  # test images in the evaluation grid


@dataclass(frozen=True)
class Config:
    seed: int = _integer(0)  # training: initialisation, shuffling and augmentation
    data: DataConfig
    augment: AugmentConfig
    model: ModelConfig
    loss: LossConfig
    train: TrainConfig
    eval: EvalConfig

    def check_together(self, prefix: str) -> None:
        if self.train.epochs == 0 and not self.model.init:
            raise ConfigError(f"{prefix}train.epochs: expected {_EPOCHS}, got 0")


def load_config(path: str | Path = "params.yaml") -> Config:
    """Read params.yaml and build the typed `Config`, raising `ConfigError` on any mismatch."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"expected a params file at {path}, found none; run from the repository root")
    with open(path) as f:
        raw = yaml.safe_load(f)
    return build(Config, raw)


def build(cls: type, raw: Any, prefix: str = "") -> Any:
    """Build dataclass `cls` from the mapping `raw`; `prefix` is the dotted path used in error messages.

    Each value is converted to its field's type and checked against the field's rule; then the class's
    `check_together(prefix)`, if it has one, checks the fields against each other.
    """
    where = prefix.rstrip(".") or "params.yaml"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {_describe(raw)}")
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown config key; expected one of {', '.join(names)}")
    missing = [name for name in names if name not in raw]
    if missing:
        raise ConfigError(f"{prefix}{missing[0]}: missing config key ({hints[missing[0]]!s} expected)")
    values = {}
    for f in fields:
        value = _convert(hints[f.name], raw[f.name], prefix + f.name)
        rule = f.metadata.get("rule")
        if rule is not None and not rule.holds(value):
            raise ConfigError(f"{prefix}{f.name}: expected {rule.expected}, got {value!r}")
        values[f.name] = value
    built = cls(**values)
    if hasattr(built, "check_together"):
        built.check_together(prefix)
    return built


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
        return _convert_number(value, key)
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {_describe(value)}")
    if hint is types.NoneType:
        if value is None:
            return value
        raise ConfigError(f"{key}: expected null, got {_describe(value)}")
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


def _convert_number(value: Any, key: str) -> float:
    """`value` as a finite float. YAML 1.1 reads `1e-4` (no dot) as a string, which `dvc exp run -S train.lr=1e-4`
    writes; it is accepted."""
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None:
        raise ConfigError(f"{key}: expected a number, got {_describe(value)}")
    if not math.isfinite(number):
        raise ConfigError(f"{key}: expected a finite number, got {_describe(value)}")
    return number


def _expected(hint: Any) -> str:
    """How an error message names what a type hint accepts."""
    if typing.get_origin(hint) is Literal:
        return " | ".join(map(str, typing.get_args(hint)))
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", types.NoneType: "null"}
    return names.get(hint, str(hint))


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def as_dict(config: Any) -> dict:
    """The resolved config as plain data, for checkpoints and metrics provenance."""
    return dataclasses.asdict(config)
