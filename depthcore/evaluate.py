"""Evaluation: stream the test split through predictors and the protocols of depthcore.metrics.

A predictor maps a batch (the loader's dict: `rgb` (B, 3, H, W) uint8, `depth` (B, 1, H, W) metres, ...) to depth
(B, 1, H, W) in metres at the ground truth's resolution. The trained model and the baselines go through the same
loop and metric code:
- random: every pixel uniform in (0, MAX_DEPTH] m, seeded (the report's random guess);
- mean_depth: every pixel the mean depth of the training split;
- oracle: the ground truth itself, area-pooled to the model's output resolution (1/8 or 1/2 per `model.downsample`)
  and upsampled back exactly as predictions are (`depthcore.inference.upsample`): the best any network with that
  output resolution can do, so the gap between it and the model is learning, and between it and perfect is
  resolution.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from depthcore.config import Config, EvalConfig
from depthcore.data import ShardDataset, make_loader
from depthcore.device import resolve_runtime
from depthcore.inference import load_predictor, upsample
from depthcore.metrics import PROTOCOLS, MetricAccumulator
from depthcore.model import output_stride
from depthcore.nyu import MAX_DEPTH
from depthcore.progress import bar
from depthcore.visualize import prediction_grid

#: The random-guess baseline of the report: every pixel uniform in (0, RANDOM_GUESS_MAX] metres.
RANDOM_GUESS_MAX = MAX_DEPTH
#: The params `evaluate_baselines` reads (dvc.yaml's params of the baselines stage; tests/test_dvc_deps.py checks).
BASELINE_PARAMS = ("data.seed", "eval", "model.downsample")
NO_RAW_DEPTH = "the data source has no raw depth, which this protocol's ground truth is"

#: batch dict -> depth (B, 1, H, W) metres at the ground truth's resolution.
BatchPredictor = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def usable_protocols(names: list[str], has_raw_depth: bool) -> tuple[list[str], dict[str, str]]:
    """The protocols of `names` this data can be evaluated under, and why each other one cannot."""
    unknown = [name for name in names if name not in PROTOCOLS]
    if unknown or not names:
        raise ValueError(f"expected eval.protocols from {sorted(PROTOCOLS)}, got {names}")
    unusable = {name: NO_RAW_DEPTH for name in names if PROTOCOLS[name].gt == "rawDepths" and not has_raw_depth}
    return [name for name in names if name not in unusable], unusable


def flip_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch mirrored left-right: every image-like tensor (B, C, H, W) flipped along W."""
    return {key: value.flip(-1) if value.ndim == 4 else value for key, value in batch.items()}


def run_protocols(
    predict: BatchPredictor,
    dataset: ShardDataset,
    protocols: list[str],
    settings: EvalConfig,
    flip_average: bool = True,
    desc: str = "evaluate",
) -> dict[str, MetricAccumulator]:
    """Every image of `dataset` through `predict` and each protocol (all usable on it), in batches of
    `settings.batch_size` with edge F1 at `settings.edge_threshold`; where a protocol asks and `flip_average` is on,
    it sees the mean of the prediction and the mirrored prediction of the mirrored batch."""
    accumulators = {name: MetricAccumulator(PROTOCOLS[name], settings.edge_threshold) for name in protocols}
    wants_flip = flip_average and any(PROTOCOLS[name].flip_average for name in protocols)
    loader = make_loader(dataset, settings.batch_size, shuffle=False, seed=0)
    for batch in bar(loader, desc=desc, unit="batch", leave=False):
        pred = predict(batch)  # (B, 1, H, W) metres
        flip_averaged = 0.5 * (pred + predict(flip_batch(batch)).flip(-1)) if wants_flip else pred
        for name, acc in accumulators.items():
            use_flip = flip_average and PROTOCOLS[name].flip_average
            acc.update(flip_averaged if use_flip else pred, batch["depth"], batch.get("raw_depth"))
    return accumulators


def evaluate_model(
    config: Config, shard_dir: Path, model_path: Path
) -> tuple[dict[str, MetricAccumulator], dict[str, str], np.ndarray]:
    """The trained model on the test split under each usable protocol of `eval.protocols`.

    Returns the accumulators by protocol, the protocols left out with the reason, and an image | ground truth |
    prediction | error grid of the first `eval.num_vis` test images.
    """
    t, e = config.train, config.eval
    predictor = load_predictor(model_path, resolve_runtime(t.device, t.precision, t.channels_last), expect=config)
    test = ShardDataset(shard_dir, "test")
    protocols, unusable = usable_protocols(e.protocols, test.has_raw_depth)
    accumulators = run_protocols(lambda batch: predictor(batch["rgb"]), test, protocols, e)
    return accumulators, unusable, prediction_grid(predictor, test, e.num_vis, with_error=True)


def train_mean_depth(shard_dir: Path) -> float:
    """Mean of the filled depth over every pixel of the training split, in metres (the mean-depth baseline)."""
    total, count = 0.0, 0
    for batch in make_loader(ShardDataset(shard_dir, "train", verify=False), batch_size=8, shuffle=False, seed=0):
        total += batch["depth"].double().sum().item()
        count += batch["depth"].numel()
    return total / count


def oracle(depth: torch.Tensor, downsample: bool) -> torch.Tensor:
    """depth (B, 1, H, W) metres -> the same area-pooled to the model's output resolution and upsampled back."""
    stride = output_stride(downsample)
    small = F.adaptive_avg_pool2d(depth.double(), (depth.shape[-2] // stride, depth.shape[-1] // stride))
    return upsample(small, depth.shape[-2:]).double()


def evaluate_baselines(
    config: Config, shard_dir: Path
) -> tuple[dict[str, dict[str, MetricAccumulator]], dict[str, str]]:
    """The baselines of this module's docstring on the test split, through each usable protocol (no flip
    averaging: nothing to flip). Returns accumulators by baseline and protocol, and the protocols left out."""
    e = config.eval
    test = ShardDataset(shard_dir, "test")
    protocols, unusable = usable_protocols(e.protocols, test.has_raw_depth)
    mean = train_mean_depth(shard_dir)
    generator = torch.Generator().manual_seed(config.data.seed)

    def random_guess(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        shape = batch["depth"].shape
        return (1 - torch.rand(shape, generator=generator, dtype=torch.float64)) * RANDOM_GUESS_MAX  # (0, 10]

    def mean_depth(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.full(batch["depth"].shape, mean, dtype=torch.float64)

    predictors = {
        "random": random_guess,
        "mean_depth": mean_depth,
        "oracle": lambda batch: oracle(batch["depth"], config.model.downsample),
    }
    results = {
        name: run_protocols(p, test, protocols, e, flip_average=False, desc=name)
        for name, p in predictors.items()
    }
    return results, unusable
