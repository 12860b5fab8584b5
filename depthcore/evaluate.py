"""Evaluation: stream the test split through predictors and the protocols of depthcore.metrics.

A predictor maps rgb (B, 3, H, W) in [0, 1] to depth (B, 1, H, W) in metres at the ground truth's resolution. The
trained model (its output upsampled bilinearly) and the model-free baselines go through the same loop and metric code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from depthcore.config import Config, as_dict
from depthcore.data import ShardDataset, make_loader
from depthcore.device import resolve_runtime
from depthcore.metrics import PROTOCOLS, MetricAccumulator
from depthcore.model import DenseDepth
from depthcore.train import Predictor, build_loss, predict_depth, prediction_grid, prepare

#: The random-guess baseline of the report: every pixel uniform in [0, RANDOM_GUESS_MAX] metres.
RANDOM_GUESS_MAX = 10.0


def check_protocols(names: list[str]) -> None:
    unknown = [name for name in names if name not in PROTOCOLS]
    if unknown or not names:
        raise ValueError(f"expected eval.protocols from {sorted(PROTOCOLS)}, got {names}")


def run_protocols(
    predict: Predictor,
    dataset: ShardDataset,
    protocols: list[str],
    batch_size: int,
    edge_threshold: float,
    max_depth: float,
    flip_average: bool = True,
    desc: str = "evaluate",
) -> dict[str, MetricAccumulator]:
    """Every test image through `predict` and each protocol; flip averaging where a protocol asks and `flip_average`."""
    check_protocols(protocols)
    accumulators = {name: MetricAccumulator(PROTOCOLS[name], edge_threshold, max_depth) for name in protocols}
    wants_flip = flip_average and any(PROTOCOLS[name].flip_average for name in protocols)
    loader = make_loader(dataset, batch_size, shuffle=False, seed=0)
    for batch in tqdm(loader, desc=desc, unit="batch", leave=False):
        rgb, depth, raw = batch["rgb"], batch["depth"], batch["raw_depth"]
        pred = predict(rgb).cpu()  # (B, 1, H, W) metres
        flipped = 0.5 * (pred + predict(rgb.flip(-1)).cpu().flip(-1)) if wants_flip else pred
        for name, acc in accumulators.items():
            use_flip = flip_average and PROTOCOLS[name].flip_average
            acc.update(flipped if use_flip else pred, depth, raw)
    return accumulators


def load_trained(model_path: Path, config: Config) -> DenseDepth:
    """The model saved by training, checked against the `model` params it is evaluated under."""
    state = torch.load(model_path, map_location="cpu", weights_only=True)
    saved = state["config"]["model"]
    if saved != as_dict(config.model):
        raise ValueError(
            f"{model_path} was trained with model params {saved}, but params.yaml says {as_dict(config.model)}; "
            "run `dvc repro` to retrain"
        )
    model = DenseDepth(config.model.downsample)  # weights come from the file, never from ImageNet
    model.load_state_dict(state["model"])
    return model.eval()


def evaluate_model(
    config: Config, shard_dir: Path, model_path: Path
) -> tuple[dict[str, MetricAccumulator], np.ndarray]:
    """The trained model on the test split under every protocol of `eval.protocols`, and a grid of its first images.

    Returns the accumulators by protocol and an RGB | ground truth | prediction | error grid, (N*H, 4*W, 3) uint8.
    """
    runtime = resolve_runtime(config.train.device, config.train.precision, config.train.channels_last)
    loss_fn = build_loss(config)
    net = prepare(load_trained(model_path, config), runtime)

    def predict(rgb: torch.Tensor) -> torch.Tensor:
        return predict_depth(net, rgb, runtime, loss_fn)

    test = ShardDataset(shard_dir, "test")
    e = config.eval
    accumulators = run_protocols(predict, test, e.protocols, e.batch_size, e.edge_threshold, config.loss.max_depth)
    return accumulators, prediction_grid(predict, test, e.num_vis, config.loss.max_depth, with_error=True)


def train_mean_depth(shard_dir: Path) -> float:
    """Mean of the filled depth over every pixel of the training split, in metres (the mean-depth baseline)."""
    total, count = 0.0, 0
    for batch in make_loader(ShardDataset(shard_dir, "train"), batch_size=8, shuffle=False, seed=0):
        total += batch["depth"].double().sum().item()
        count += batch["depth"].numel()
    return total / count


def evaluate_baselines(config: Config, shard_dir: Path) -> dict[str, dict[str, MetricAccumulator]]:
    """Model-free baselines on the test split, through the same protocols (no flip averaging: nothing to flip).

    random: every pixel uniform in (0, 10] m (the report's random guess), seeded by `seed`;
    mean_depth: every pixel the mean training depth.
    """
    e = config.eval
    test = ShardDataset(shard_dir, "test")
    mean = train_mean_depth(shard_dir)
    generator = torch.Generator().manual_seed(config.seed)

    def random_guess(rgb: torch.Tensor) -> torch.Tensor:
        b, _, h, w = rgb.shape
        return (1 - torch.rand(b, 1, h, w, generator=generator, dtype=torch.float64)) * RANDOM_GUESS_MAX  # (0, 10]

    def mean_depth(rgb: torch.Tensor) -> torch.Tensor:
        b, _, h, w = rgb.shape
        return torch.full((b, 1, h, w), mean, dtype=torch.float64)

    predictors = {"random": random_guess, "mean_depth": mean_depth}
    return {
        name: run_protocols(p, test, e.protocols, e.batch_size, e.edge_threshold, config.loss.max_depth, False, name)
        for name, p in predictors.items()
    }
