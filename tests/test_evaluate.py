"""depthcore.evaluate: baselines against independent numpy, the oracle, flip averaging, protocols a source cannot
run, and the trained-model path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depthcore.data import ShardDataset
from depthcore.evaluate import (
    NO_RAW_DEPTH,
    evaluate_baselines,
    oracle,
    run_protocols,
    train_mean_depth,
    usable_protocols,
)
from depthcore.metrics import PROTOCOLS
from depthcore.shards import read_manifest
from depthcore.sources.nyu_mat import NyuMat
from tests.helpers import tiny_train_config

SETTINGS = tiny_train_config(**{"eval.edge_threshold": 0.2}).eval  # batches of 2, edges over 0.2


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


@pytest.fixture(scope="module")
def baselines(tiny_shards):
    return evaluate_baselines(tiny_train_config(), tiny_shards)


def test_random_guess_delta1_matches_its_analytic_value(tiny_mat, tiny_shards, baselines):
    """For a pixel of depth d and a guess p ~ U(0, 10]: P(d/1.25 < p < 1.25 d) = (min(1.25 d, 10) - d/1.25) / 10."""
    results, unusable = baselines
    d = _test_depths(tiny_mat, tiny_shards)
    analytic = ((np.minimum(1.25 * d, 10) - d / 1.25) / 10).mean()  # pooled over all pixels
    measured = results["random"]["report"].result("pooled")["delta1"]
    # about 600k pixels: the binomial standard error is below 1e-3
    assert measured == pytest.approx(analytic, abs=5e-3)
    assert unusable == {}


def test_model_free_baselines_find_no_edges_and_the_oracle_most(baselines):
    """Edge F1 is decided by the prediction: a constant map finds no edge (0), noise almost none."""
    results, _ = baselines
    for name in PROTOCOLS:
        assert results["mean_depth"][name].result()["edge_f1"] == 0.0
        assert results["random"][name].result()["edge_f1"] < 0.2
        oracle_result = results["oracle"][name].result()
        for key in ("delta1", "edge_f1", "mssim"):
            assert oracle_result[key] > results["mean_depth"][name].result()[key]
        assert oracle_result["rel"] < 0.02


def test_oracle_is_area_pooled_then_upsampled_on_pixel_centres():
    """Area pooling a plane gives its values at the block centres, and bilinear upsampling on pixel centres gives the
    plane back exactly, but for the clamped half block at each border; corner-aligned upsampling would not."""
    rows, cols = torch.meshgrid(torch.arange(480.0), torch.arange(640.0), indexing="ij")
    plane = (1 + 0.01 * rows + 0.005 * cols).double()[None, None]  # (1, 1, 480, 640), 1 m to 9.0 m
    for downsample, border in ((True, 4), (False, 1)):
        error = (oracle(plane, downsample) - plane)[..., border:-border, border:-border]
        assert error.abs().max() < 1e-5  # float32 rounding (upsample works in float32)
    small = torch.nn.functional.adaptive_avg_pool2d(plane, (60, 80))
    corners = torch.nn.functional.interpolate(small, size=(480, 640), mode="bilinear", align_corners=True)
    assert (corners - plane)[..., 4:-4, 4:-4].abs().max() > 0.01  # shifted by up to 3.5 pixels


def test_constant_predictor_equals_hand_computed_rms(tiny_mat, tiny_shards):
    dataset = ShardDataset(tiny_shards, "test")
    accumulators = run_protocols(
        lambda batch: torch.full((len(batch["rgb"]), 1, 480, 640), 3.0), dataset, ["report"], SETTINGS
    )
    d = _test_depths(tiny_mat, tiny_shards)
    per_image_rms = np.sqrt(((d - 3.0) ** 2).mean(axis=(1, 2)))
    assert accumulators["report"].result()["rms"] == pytest.approx(per_image_rms.mean(), abs=1e-3)


def test_flip_averaging_applies_only_to_protocols_that_ask(tiny_shards):
    dataset = ShardDataset(tiny_shards, "test")

    def left_right_ramp(batch):  # a prediction that is not symmetric: 1 m on the left to 9 m on the right
        return torch.linspace(1.0, 9.0, 640).expand(len(batch["rgb"]), 1, 480, 640).clone()

    def flat(batch):
        return torch.full((len(batch["rgb"]), 1, 480, 640), 5.0)

    accs = run_protocols(left_right_ramp, dataset, ["report", "densedepth"], SETTINGS)
    flat_accs = run_protocols(flat, dataset, ["densedepth"], SETTINGS)
    assert PROTOCOLS["densedepth"].flip_average and not PROTOCOLS["report"].flip_average
    # the ramp and its mirror average to a flat 5 m, so densedepth sees exactly the constant predictor
    assert accs["densedepth"].result() == pytest.approx(flat_accs["densedepth"].result())
    assert accs["report"].result()["rms"] != pytest.approx(flat_accs["densedepth"].result()["rms"])


def test_protocols_that_need_raw_depth_are_unusable_without_it():
    assert usable_protocols(["report", "eigen"], has_raw_depth=True) == (["report", "eigen"], {})
    assert usable_protocols(["report", "eigen"], has_raw_depth=False) == (["report"], {"eigen": NO_RAW_DEPTH})
    with pytest.raises(ValueError, match="expected eval.protocols from"):
        usable_protocols(["kitti"], True)
