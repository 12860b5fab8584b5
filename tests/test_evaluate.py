"""depthcore.evaluate: baselines against independent numpy, flip averaging, and the trained-model path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depthcore.data import ShardDataset
from depthcore.evaluate import evaluate_baselines, load_trained, run_protocols, train_mean_depth
from depthcore.metrics import PROTOCOLS
from depthcore.nyu import NyuMat
from depthcore.shards import read_manifest
from tests.helpers import tiny_train_config


def _test_depths(tiny_mat, tiny_shards) -> np.ndarray:
    """(N, 480, 640) float64 filled depths of the test split, read from the .mat (not through the shards)."""
    indices = read_manifest(tiny_shards)["source_indices"]["test"]
    with NyuMat(tiny_mat) as m:
        return np.stack([m[i][1] for i in indices]).astype(np.float64)


def test_mean_depth_is_the_mean_of_the_training_images(tiny_mat, tiny_shards):
    indices = read_manifest(tiny_shards)["source_indices"]["train"]
    with NyuMat(tiny_mat) as m:
        expected = np.mean([m[i][1].astype(np.float64).mean() for i in indices])  # equal-size images
    assert train_mean_depth(tiny_shards) == pytest.approx(expected, abs=5e-4)  # shards keep depth to 0.5 mm


def test_random_guess_delta1_matches_its_analytic_value(tiny_mat, tiny_shards):
    """For a pixel of depth d and a guess p ~ U(0, 10]: P(d/1.25 < p < 1.25 d) = (min(1.25 d, 10) - d/1.25) / 10."""
    results = evaluate_baselines(tiny_train_config(), tiny_shards)
    d = _test_depths(tiny_mat, tiny_shards)
    analytic = ((np.minimum(1.25 * d, 10) - d / 1.25) / 10).mean()  # pooled over all pixels
    measured = results["random"]["report"].result("pooled")["delta1"]
    # about 600k pixels: the binomial standard error is below 1e-3
    assert measured == pytest.approx(analytic, abs=5e-3)


def test_constant_predictor_equals_hand_computed_rms(tiny_mat, tiny_shards):
    dataset = ShardDataset(tiny_shards, "test")
    accumulators = run_protocols(
        lambda rgb: torch.full((len(rgb), 1, 480, 640), 3.0), dataset, ["report"], 2, 0.2, 10.0
    )
    d = _test_depths(tiny_mat, tiny_shards)
    per_image_rms = np.sqrt(((d - 3.0) ** 2).mean(axis=(1, 2)))
    assert accumulators["report"].result()["rms"] == pytest.approx(per_image_rms.mean(), abs=1e-3)


def test_flip_averaging_applies_only_to_protocols_that_ask(tiny_shards):
    dataset = ShardDataset(tiny_shards, "test")

    def left_right_ramp(rgb):  # a prediction that is not symmetric: 1 m on the left to 9 m on the right
        ramp = torch.linspace(1.0, 9.0, 640).expand(len(rgb), 1, 480, 640)
        return ramp.clone()

    accs = run_protocols(left_right_ramp, dataset, ["report", "densedepth"], 2, 0.2, 10.0)
    flat = run_protocols(lambda rgb: torch.full((len(rgb), 1, 480, 640), 5.0), dataset, ["densedepth"], 2, 0.2, 10.0)
    assert PROTOCOLS["densedepth"].flip_average and not PROTOCOLS["report"].flip_average
    # the ramp and its mirror average to a flat 5 m, so densedepth sees exactly the constant predictor
    assert accs["densedepth"].result() == pytest.approx(flat["densedepth"].result())
    assert accs["report"].result()["rms"] != pytest.approx(flat["densedepth"].result()["rms"])


def test_unknown_protocol_is_refused(tiny_shards):
    with pytest.raises(ValueError, match="expected eval.protocols from"):
        run_protocols(lambda rgb: rgb[:, :1], ShardDataset(tiny_shards, "test"), ["kitti"], 2, 0.2, 10.0)


def test_model_trained_with_other_params_is_refused(tmp_path):
    from depthcore.config import as_dict
    from depthcore.model import DenseDepth

    config = tiny_train_config()
    saved = as_dict(tiny_train_config(**{"model.downsample": False}))
    torch.save({"model": DenseDepth().state_dict(), "config": saved, "epoch": 1}, tmp_path / "model.pt")
    with pytest.raises(ValueError, match="run `dvc repro` to retrain"):
        load_trained(tmp_path / "model.pt", config)
