from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from depthcore.metrics import (
    PROTOCOLS,
    MetricAccumulator,
    Protocol,
    depth_errors,
    edge_f1,
    ssim_metric,
)

PRED_2X2 = [[1.0, 2.0], [3.0, 4.0]]
GT_2X2 = [[1.0, 1.0], [4.0, 4.0]]


def _step(shape: tuple[int, int], column: int, low: float, high: float) -> np.ndarray:
    """(H, W) map: low left of ``column``, high from it on."""
    depth = np.full(shape, low)
    depth[:, column:] = high
    return depth


def _one_nan() -> np.ndarray:
    """(4, 4) ones with one NaN."""
    values = np.ones((4, 4))
    values[1, 2] = np.nan
    return values


# --- depth_errors: hand-computed 2x2 examples ----------------------------------------------------------------------


def test_depth_errors_2x2_by_hand():
    # pixel:            (0,0)  (0,1)  (1,0)  (1,1)
    # pred / gt:        1/1    2/1    3/4    4/4
    # max ratio:        1      2      4/3    1       -> < 1.25: 2 of 4; < 1.5625: 3 of 4; < 1.953125: 3 of 4 (2 fails)
    # |gt - pred| / gt: 0      1      1/4    0       -> rel = 1.25 / 4
    # (gt - pred)^2:    0      1      1      0       -> rms = sqrt(2 / 4)
    # |log10 ratio|:    0      log10 2  log10 4/3  0 -> log10 = (log10 2 + log10 4/3) / 4
    # (gt - pred)^2/gt: 0      1      1/4    0       -> sq_rel = 1.25 / 4
    # d = ln p - ln g:  0      ln 2   ln 3/4 0       -> rmse_log = sqrt(mean d^2), mean d = ln(3/2) / 4
    errors = depth_errors(np.array(PRED_2X2), np.array(GT_2X2))
    mean_d2 = (math.log(2) ** 2 + math.log(0.75) ** 2) / 4
    expected = {
        "delta1": 0.5,
        "delta2": 0.75,
        "delta3": 0.75,
        "rel": 0.3125,
        "sq_rel": 0.3125,
        "rms": math.sqrt(0.5),
        "rmse_log": math.sqrt(mean_d2),
        "log10": (math.log10(2) + math.log10(4 / 3)) / 4,
        "silog": 100 * math.sqrt(mean_d2 - (math.log(1.5) / 4) ** 2),
    }
    assert errors == pytest.approx(expected, rel=1e-12)
    assert all(type(value) is float for value in errors.values())


def test_depth_errors_2x2_mask_and_gt_zero():
    # gt 0 at (0,0) is a missing reading; the mask drops (1,0). Left: (0,1) pred 2 gt 1 and (1,1) pred 4 gt 4.
    # delta1: ratio 2, 1 -> 1/2; delta3: 2 >= 1.953125 -> 1/2; rel (1 + 0) / 2; rms sqrt(1 / 2); log10 log10(2) / 2.
    gt = torch.tensor([[0.0, 1.0], [4.0, 4.0]])
    mask = torch.tensor([[True, True], [False, True]])
    errors = depth_errors(torch.tensor(PRED_2X2), gt, mask)
    expected = {"delta1": 0.5, "delta2": 0.5, "delta3": 0.5, "rel": 0.5, "rms": math.sqrt(0.5)}
    assert {key: errors[key] for key in expected} == pytest.approx(expected, rel=1e-12)
    assert errors["log10"] == pytest.approx(math.log10(2) / 2, rel=1e-12)


def test_depth_errors_second_2x2_scaled_prediction():
    # pred = 1.3 gt everywhere: ratio 1.3 -> delta1 0, delta2 1; rel 0.3; rms sqrt(mean((0.3 gt)^2)) with
    # gt = 1, 2, 3, 4: 0.3 sqrt(30 / 4); log10 = log10 1.3; sq_rel = mean(0.09 gt) = 0.09 * 2.5; d = ln 1.3 at every
    # pixel: rmse_log = ln 1.3 and silog = 0 (a global scale error is what the scale-invariant log error ignores).
    gt = np.array([[1.0, 2.0], [3.0, 4.0]])
    errors = depth_errors(1.3 * gt, gt)
    expected = {
        "delta1": 0.0, "delta2": 1.0, "delta3": 1.0, "rel": 0.3, "rms": 0.3 * math.sqrt(7.5), "sq_rel": 0.225,
        "rmse_log": math.log(1.3),
    }  # fmt: skip
    assert errors["silog"] == pytest.approx(0.0, abs=1e-5)
    assert {key: errors[key] for key in expected} == pytest.approx(expected, rel=1e-12)
    assert errors["log10"] == pytest.approx(math.log10(1.3), rel=1e-12)


def test_delta_threshold_is_strict():
    # pred 1.25 m on gt 1 m: max(1.25, 0.8) = 1.25 exactly in binary, not < 1.25 -> outside delta1, inside delta2.
    errors = depth_errors(np.array([1.25, 1.0]), np.array([1.0, 1.0]))
    assert (errors["delta1"], errors["delta2"]) == (0.5, 1.0)


def test_perfect_prediction():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.5, 9.5, size=(24, 24))
    gt[:, 12:] += 5.0  # a 5 m step: edges (5 / 2 = 2.5 > 0.2) exist
    perfect = {"delta1": 1.0, "delta2": 1.0, "delta3": 1.0, "rel": 0.0, "sq_rel": 0.0, "rms": 0.0, "rmse_log": 0.0}
    assert depth_errors(gt, gt) == {**perfect, "log10": 0.0, "silog": 0.0}
    assert ssim_metric(gt, gt) == pytest.approx(1.0, abs=1e-9)
    assert edge_f1(gt, gt) == 1.0


def test_torch_and_numpy_agree():
    assert depth_errors(torch.tensor(PRED_2X2), torch.tensor(GT_2X2)) == depth_errors(
        np.array(PRED_2X2), np.array(GT_2X2)
    )


def test_depth_errors_bad_input():
    ones = np.ones((2, 2))
    with pytest.raises(ValueError, match=r"expected pred and gt of the same shape, got \(2, 2\) and \(2, 3\)"):
        depth_errors(ones, np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"expected pred and mask of the same shape, got \(2, 2\) and \(4,\)"):
        depth_errors(ones, ones, np.ones(4, dtype=bool))
    with pytest.raises(ValueError, match=r"expected finite predictions at valid pixels, got 2 non-finite of 4"):
        depth_errors(np.array([[1.0, np.nan], [np.inf, 1.0]]), ones)
    with pytest.raises(ValueError, match=r"expected predictions > 0, got 2 <= 0 of 3 valid pixels"):
        depth_errors(np.array([[0.0, -1.0], [1.0, 1.0]]), np.array([[1.0, 1.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"expected at least one valid pixel .*got 0 of 4"):
        depth_errors(ones, np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"expected at least one valid pixel .*got 0 of 4"):
        depth_errors(ones, ones, np.zeros((2, 2), dtype=bool))


def test_random_guess_matches_analytic_values():
    # gt constant d = 2 m, pred ~ U(0, 10): P(d / 1.25^k < p < 1.25^k d) = (1.25^k - 1.25^-k) d / 10;
    # rel = E|p - d| / d = (d^2 + (10 - d)^2) / 20 / d; rms = sqrt(Var p + (E p - d)^2) = sqrt(100 / 12 + 9);
    # E|ln p - ln d| = (2 d + 10 ln(10 / d) - 10) / 10 (integrate ln(d / p) on (0, d) and ln(p / d) on (d, 10)).
    d, n = 2.0, 200
    pred = np.random.default_rng(3).uniform(0.0, 10.0, size=(n, n))
    errors = depth_errors(pred, np.full((n, n), d))
    for k in (1, 2, 3):
        analytic = (1.25**k - 1.25**-k) * d / 10
        assert errors[f"delta{k}"] == pytest.approx(analytic, abs=0.01)  # binomial sd < 0.0025 at 40000 pixels
    assert errors["rel"] == pytest.approx((d**2 + (10 - d) ** 2) / 20 / d, abs=0.02)
    assert errors["rms"] == pytest.approx(math.sqrt(100 / 12 + (5 - d) ** 2), abs=0.02)
    assert errors["log10"] == pytest.approx((2 * d + 10 * math.log(10 / d) - 10) / 10 / math.log(10), abs=0.01)
    # sq_rel = E(p - d)^2 / d; with u = ln(p / d): E u = ln 5 - 1 and E u^2 = ln^2 5 - 2 ln 5 + 2 (integrate on
    # (0, 10)), so Var u = 1 whatever d: silog = 100, rmse_log = sqrt(E u^2).
    assert errors["sq_rel"] == pytest.approx((100 / 12 + (5 - d) ** 2) / d, abs=0.05)
    log5 = math.log(10 / d)
    assert errors["rmse_log"] == pytest.approx(math.sqrt(log5**2 - 2 * log5 + 2), abs=0.02)
    assert errors["silog"] == pytest.approx(100.0, abs=2.0)


# --- mSSIM and edge F1 ---------------------------------------------------------------------------------------------


def test_ssim_of_constant_maps_by_hand():
    # sigma = 0 for constant maps: SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = (0.01 data_range)^2.
    a, b = np.full((16, 16), 2.0), np.full((16, 16), 4.0)
    for data_range in (10.0, 255.0):  # this project's mssim: 0.80010; the report's mssim_255: 0.84910
        c1 = (0.01 * data_range) ** 2
        # rel 1e-5: pytorch_msssim builds its Gaussian window in float32, so its weights sum to 1 only to ~1e-7,
        # which leaves a sigma of ~1e-6 where C2 = (0.03 data_range)^2 dominates.
        assert ssim_metric(a, b, data_range) == pytest.approx((16 + c1) / (20 + c1), rel=1e-5)
    assert ssim_metric(a, b) == ssim_metric(a, b, 10.0)  # the default is this project's 10 m


def test_edge_f1_shifted_step_by_hand():
    # An 8 m step gives a normalized Sobel magnitude of 8 / 2 = 4 on the two columns beside it, 0.001 elsewhere
    # (kornia's eps). gt step at column 6 -> edge columns 5, 6; pred step at 7 -> 6, 7. Per row TP 1 of 2 and 2:
    # F1 = 2 * 1 / (2 + 2) = 0.5.
    gt = _step((8, 12), 6, 1.0, 9.0)
    pred = _step((8, 12), 7, 1.0, 9.0)
    assert edge_f1(pred, gt) == pytest.approx(0.5)
    # A flat prediction finds no edge: precision undefined, recall 0 -> F1 0.
    assert edge_f1(np.full((8, 12), 5.0), gt) == 0.0


def test_edge_threshold_is_a_step_in_metres():
    # A step of D m gives D / 2: at the report's 0.2, a 0.5 m step (0.25) is an edge and a 0.3 m step (0.15) is not.
    flat = np.full((8, 12), 3.0)
    assert edge_f1(flat, _step((8, 12), 6, 2.0, 2.5)) == 0.0  # edges to find, none found
    assert edge_f1(_step((8, 12), 6, 2.0, 2.5), _step((8, 12), 6, 2.0, 2.5)) == 1.0
    assert edge_f1(flat, _step((8, 12), 6, 2.0, 2.3)) is None  # no ground-truth edge: no F1
    # the threshold is a parameter: a 3 m step (1.5) is an edge at 0.2 and at 1.0, not at 2.0
    gt = _step((8, 12), 6, 2.0, 5.0)
    assert edge_f1(flat, gt, threshold=1.0) == 0.0
    assert edge_f1(flat, gt, threshold=2.0) is None


def test_map_metrics_bad_input():
    with pytest.raises(ValueError, match=r"expected \(H, W\) depth maps, got shape \(1, 4, 4\)"):
        ssim_metric(np.ones((1, 4, 4)), np.ones((1, 4, 4)))
    with pytest.raises(ValueError, match=r"expected pred and gt of the same shape, got \(4, 4\) and \(4, 5\)"):
        edge_f1(np.ones((4, 4)), np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"expected finite predictions, got 1 non-finite of 16"):
        edge_f1(_one_nan(), np.ones((4, 4)))
    with pytest.raises(ValueError, match=r"expected finite ground truth, got 1 non-finite of 16"):
        edge_f1(np.ones((4, 4)), _one_nan())


# --- protocols -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, rows, cols",
    [("report", (0, 480), (0, 640)), ("densedepth", (20, 460), (24, 616)), ("eigen", (45, 471), (41, 601))],
)
def test_protocol_crop_selects_exactly_the_stated_pixels(name, rows, cols):
    # gt 5 m everywhere; pred right (5 m) inside the stated window and 2x wrong outside it. Exactly the window:
    # delta1 = 1 (no outside pixel) and (r1 - r0) * (c1 - c0) pixels (no inside pixel lost).
    depth = np.full((480, 640), 5.0)
    pred = np.full((480, 640), 10.0)
    pred[rows[0] : rows[1], cols[0] : cols[1]] = 5.0
    accumulator = MetricAccumulator(name)
    accumulator.update(pred, depth, depth)
    result = accumulator.result()
    assert result["num_pixels"] == (rows[1] - rows[0]) * (cols[1] - cols[0])
    assert result["delta1"] == 1.0 and result["rel"] == 0.0
    index = torch.arange(480 * 640).reshape(480, 640)
    selected = PROTOCOLS[name].apply_crop(index)
    assert selected[0, 0] == rows[0] * 640 + cols[0] and selected[-1, -1] == (rows[1] - 1) * 640 + cols[1] - 1


def test_protocol_fields():
    assert PROTOCOLS["report"].aggregate == "per_image" and not PROTOCOLS["report"].flip_average
    densedepth = PROTOCOLS["densedepth"]
    assert (densedepth.gt, densedepth.aggregate, densedepth.flip_average) == ("depths", "pooled", True)
    eigen = PROTOCOLS["eigen"]
    assert (eigen.gt, eigen.aggregate) == ("rawDepths", "per_image")
    assert eigen.valid_range == eigen.clamp == (1e-3, 10.0)
    assert [p.published_split for p in PROTOCOLS.values()] == ["random", "official", "official"]
    with pytest.raises(ValueError, match=r"expected a crop .* inside \(480, 640\), got \(0, 500, 0, 10\)"):
        Protocol("x", "x", "depths", (0, 500, 0, 10), "pooled", False, None, None, "official")
    with pytest.raises(ValueError, match=r"expected gt to be one of depths \| rawDepths, got 'raw'"):
        Protocol("x", "x", "raw", None, "pooled", False, None, None, "official")


def test_eigen_valid_range_and_clamp():
    # Inside the crop raw depth is 5 m with holes (0), a 10 m reading (not < 10: invalid) and a 9.99 m reading.
    # The prediction is 5 m, 50 m at the hole and the 10 m pixel (invalid, ignored), 50 m at 9.99 (clamped to 10:
    # ratio 10 / 9.99 < 1.25, rel 0.01 / 9.99 over the valid count).
    raw = np.full((480, 640), 5.0)
    pred = np.full((480, 640), 5.0)
    raw[100, 100], raw[101, 101], raw[102, 102] = 0.0, 10.0, 9.99
    pred[100, 100], pred[101, 101], pred[102, 102] = 50.0, 50.0, 50.0
    raw[0:45, :] = 0.0  # outside the crop: nothing there counts anyway
    accumulator = MetricAccumulator("eigen")
    accumulator.update(pred, np.full((480, 640), 5.0), raw)
    result = accumulator.result()
    count = 426 * 560 - 2
    assert result["num_pixels"] == count
    assert result["delta1"] == 1.0
    assert result["rel"] == pytest.approx((0.01 / 9.99) / count, rel=1e-6)
    with pytest.raises(ValueError, match=r"expected raw_depth for protocol 'eigen', got None"):
        accumulator.update(pred, raw)


# --- accumulator -----------------------------------------------------------------------------------------------------


def test_pooled_and_per_image_differ_as_computed_by_hand():
    # Image A: 144 valid pixels, gt 1, pred 2: delta 0, rel 1, squared error 1, |log10| log10 2.
    # Image B: 36 valid pixels (gt 2 in a 6x6 corner, 0 elsewhere), pred 2: all exact.
    # per image: mean of (A, B): delta1 (0 + 1) / 2, rel (1 + 0) / 2, rms (1 + 0) / 2, log10 (log10 2) / 2.
    # pooled over 180 pixels: delta1 36 / 180, rel 144 / 180, rms sqrt(144 / 180), log10 144 log10(2) / 180.
    gt_a, pred_a = np.ones((12, 12)), np.full((12, 12), 2.0)
    gt_b, pred_b = np.zeros((12, 12)), np.full((12, 12), 2.0)
    gt_b[:6, :6] = 2.0
    accumulator = MetricAccumulator("report")
    accumulator.update(np.stack([pred_a, pred_b])[:, None], np.stack([gt_a, gt_b])[:, None])
    per_image, pooled = accumulator.result(), accumulator.result("pooled")
    assert per_image == accumulator.result("per_image")
    expected_per_image = {"delta1": 0.5, "delta3": 0.5, "rel": 0.5, "rms": 0.5, "log10": math.log10(2) / 2}
    expected_pooled = {"delta1": 0.2, "delta3": 0.2, "rel": 0.8, "rms": math.sqrt(0.8), "log10": 0.8 * math.log10(2)}
    assert {key: per_image[key] for key in expected_per_image} == pytest.approx(expected_per_image, rel=1e-12)
    assert {key: pooled[key] for key in expected_pooled} == pytest.approx(expected_pooled, rel=1e-12)
    assert per_image["num_images"] == pooled["num_images"] == 2
    assert per_image["num_pixels"] == pooled["num_pixels"] == 180
    rows = accumulator.rows()
    assert [row["image"] for row in rows] == [0, 1] and [row["num_pixels"] for row in rows] == [144, 36]
    assert rows[0]["rel"] == 1.0 and rows[1]["rel"] == 0.0


def test_accumulator_edge_f1_and_mssim_per_image():
    # Image A (12x16): gt edges at columns 5, 6 and pred at 6, 7 (F1 0.5, TP 12, 24 + 24 edges). Image B: no edge
    # in gt, a prediction with a step (24 edge pixels): no F1, left out of the mean, but its false edges count in
    # the pooled F1. Image C: gt edges at 5, 6, flat prediction: F1 0, 24 gt edges.
    # per image (0.5 + 0) / 2 = 0.25 over 2 counted images; pooled 2 * 12 / (48 + 24 + 24) = 0.25.
    gt_a, pred_a = _step((12, 16), 6, 1.0, 9.0), _step((12, 16), 7, 1.0, 9.0)
    flat = np.full((12, 16), 3.0)
    accumulator = MetricAccumulator("report")
    accumulator.update(pred_a, gt_a)
    accumulator.update(torch.tensor(pred_a), torch.tensor(flat))
    accumulator.update(flat, gt_a)
    for aggregate in ("per_image", "pooled"):
        result = accumulator.result(aggregate)
        assert result["edge_f1"] == pytest.approx(0.25) and result["edge_f1_images"] == 2
        assert result["edge_f1_pooled"] == pytest.approx(2 * 12 / 96)
        rows = accumulator.rows()
        assert result["mssim"] == pytest.approx(sum(row["mssim"] for row in rows) / 3)  # per image in both
    assert [row["edge_f1"] for row in accumulator.rows()] == [pytest.approx(0.5), None, 0.0]
    assert [row["gt_edge_pixels"] for row in accumulator.rows()] == [24, 0, 24]


def test_edge_f1_is_none_when_no_image_has_edges():
    accumulator = MetricAccumulator("report")
    accumulator.update(np.full((12, 16), 3.0), np.full((12, 16), 2.0))
    result = accumulator.result()
    assert result["edge_f1"] is None and result["edge_f1_pooled"] is None and result["edge_f1_images"] == 0


def test_accumulator_bad_input():
    with pytest.raises(ValueError, match=r"expected protocol to be one of report \| densedepth \| eigen, got 'kitti'"):
        MetricAccumulator("kitti")
    accumulator = MetricAccumulator("report")
    with pytest.raises(ValueError, match=r"expected at least one update\(\) before result\(\), got 0 images"):
        accumulator.result()
    with pytest.raises(ValueError, match=r"expected pred_m and depth of the same shape, got \(2, 4, 4\) and \(1, 4"):
        accumulator.update(np.ones((2, 4, 4)), np.ones((4, 4)))
    with pytest.raises(ValueError, match=r"expected pred_m of shape \(H, W\), .* or \(B, 1, H, W\), got \(4,\)"):
        accumulator.update(np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match=r"expected finite predictions, got 1 non-finite of 16"):
        accumulator.update(_one_nan(), np.ones((4, 4)))
    with pytest.raises(ValueError, match=r"expected maps of \(480, 640\) for protocol 'densedepth'"):
        MetricAccumulator("densedepth").update(np.ones((4, 4)), np.ones((4, 4)))
    with pytest.raises(ValueError, match=r"expected aggregate to be one of per_image \| pooled, got 'median'"):
        accumulator.update(np.ones((12, 12)), np.ones((12, 12)))
        accumulator.result("median")


@pytest.mark.parametrize("data_range", [10.0, 255.0])
def test_ssim_equals_pytorch_msssim(data_range):
    """The metric's own batched SSIM is pytorch_msssim.ssim with its defaults, to float rounding."""
    from pytorch_msssim import ssim

    rng = np.random.default_rng(5)
    gt = rng.uniform(1, 8, (40, 56))
    pred = gt + rng.normal(0, 0.5, gt.shape)
    pred[10:30, 20:40] += 2.0  # structure as well as noise
    reference = float(ssim(torch.tensor(pred)[None, None], torch.tensor(gt)[None, None], data_range=data_range))
    assert ssim_metric(pred, gt, data_range) == pytest.approx(reference, abs=1e-6)
