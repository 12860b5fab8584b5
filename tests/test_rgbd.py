"""depthcore evaluate --rgbd: the alignments by hand, the metrics against depthcore.metrics, the constant baseline by
hand, every bad pair named and skipped, and tools/motorcycle.py's real scene.

The command runs a stand-in network whose depth is known (`tests.stand_in.RedDepth`) instead of a model file.
"""

from __future__ import annotations

import importlib.util
import json
import math
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import depthcore.rgbd as rgbd
from depthcore.frame import predict_images
from depthcore.metrics import depth_errors, edge_f1, ssim_metric
from depthcore.rgbd import METHODS, Pair, RgbdEvaluation, fill_holes, fit_scale_shift, median_scale
from tests.helpers import ROOT, depthcore_status
from tests.stand_in import ramp, red_predictor

_run = partial(depthcore_status, "evaluate")  # `depthcore evaluate ARGS` in this process -> exit status

VALID_RANGE = (0.1, 10.0)  # the command's default --min-depth, --max-depth
H, W = 48, 64  # 4:3, so the letterbox is the whole frame
HOLES = (slice(20, 22), slice(30, 35))  # 10 pixels without a measurement, inside the 3 m band


def _load_tool():
    """tools/motorcycle.py as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("motorcycle", ROOT / "tools" / "motorcycle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bands_mm() -> np.ndarray:
    """(H, W) uint16 mm: rows 0-11 at 2 m, 12-35 at 3 m, 36-47 at 5 m; HOLES 0 (no measurement)."""
    depth = np.full((H, W), 3000, np.uint16)
    depth[:12], depth[36:] = 2000, 5000
    depth[HOLES] = 0
    return depth


def _write_pair(folder: Path, name: str, rgb: np.ndarray, depth: np.ndarray | None, suffix: str = ".png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(folder / f"{name}{suffix}")
    if depth is not None:
        Image.fromarray(depth).save(folder / f"{name}_depth.png")




@pytest.fixture
def stand_in(monkeypatch) -> None:
    """The command loads RedDepth instead of a model file."""
    monkeypatch.setattr(rgbd, "load_predictor", lambda path, runtime: red_predictor())


# ---- alignments ------------------------------------------------------------------------------------------------------


def test_median_scale_recovers_a_scaled_truth():
    rng = np.random.default_rng(0)
    truth = rng.uniform(1, 5, (20, 30))
    valid = rng.random((20, 30)) > 0.3
    pred = truth / 2.5
    pred[~valid] = 100.0  # what the invalid pixels predict must not count
    gt = np.where(valid, truth, 0.0)
    scale = median_scale(pred, gt, valid)
    assert scale == pytest.approx(2.5, rel=1e-12)
    np.testing.assert_allclose(scale * pred[valid], truth[valid], rtol=1e-12)


def test_median_scale_is_a_ratio_of_medians():
    """median(2, 4, 6) / median(1, 2, 100) = 4 / 2 (a ratio of means would be 4 / 34.3)."""
    valid = np.array([[True, True, True, False]])
    assert median_scale(np.array([[1.0, 2, 100, 7]]), np.array([[2.0, 4, 6, 0]]), valid) == 2.0


def test_fit_scale_shift_recovers_an_affine_truth():
    rng = np.random.default_rng(1)
    pred = rng.uniform(1, 5, (20, 30))
    valid = rng.random((20, 30)) > 0.3
    gt = np.where(valid, 1.7 * pred + 0.4, 0.0)
    pred[~valid] = 0.01
    scale, shift = fit_scale_shift(pred, gt, valid)
    assert scale == pytest.approx(1.7, abs=1e-10) and shift == pytest.approx(0.4, abs=1e-10)


def test_fit_scale_shift_is_least_squares_in_depth():
    """On noisy maps the fit is ordinary least squares of depth on depth: s = cov(p, y) / var(p), t = mean(y) - s
    mean(p), over the valid pixels."""
    rng = np.random.default_rng(2)
    pred = rng.uniform(1, 5, (20, 30))
    gt = 0.8 * pred + 0.3 + rng.normal(0, 0.2, pred.shape)
    valid = rng.random((20, 30)) > 0.3
    p, y = pred[valid], gt[valid]
    s = np.mean((p - p.mean()) * (y - y.mean())) / np.mean((p - p.mean()) ** 2)
    assert fit_scale_shift(pred, gt, valid) == pytest.approx((s, y.mean() - s * p.mean()), abs=1e-10)


def test_fill_holes_takes_the_nearest_valid_pixel():
    depth = np.array([[2.0, 0, 0, 0, 0, 7], [2, 0, 0, 0, 0, 7]])
    expected = np.array([[2.0, 2, 2, 7, 7, 7], [2, 2, 2, 7, 7, 7]])
    np.testing.assert_array_equal(fill_holes(depth, depth > 0), expected)


# ---- metrics ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("valid_range", [VALID_RANGE, (0.5, 3.5)])  # 3.5 m: the 5 m band out, the model clamped
def test_every_method_scores_as_depthcore_metrics_does_on_the_same_maps(valid_range):
    rgb = ramp(H, W, axis=0)  # RedDepth: 1 m at the top to 5 m at the bottom, as the bands grow
    depth = _bands_mm().astype(np.float32) / 1000
    valid = (depth > valid_range[0]) & (depth < valid_range[1])
    pred = predict_images(red_predictor(), [rgb])[0]
    evaluation = RgbdEvaluation(valid_range)
    evaluation.add(Pair("bands.png", rgb, depth, valid), pred)
    filled = np.where(valid, depth, 3.0)  # the holes and the 5 m band (if out) are nearest to the 3 m band
    table = evaluation.table().set_index("method")
    for method in METHODS:
        row = table.loc[method]
        aligned = np.clip(row["scale"] * pred + row["shift"], *valid_range)
        expected = {**depth_errors(aligned, depth, valid), "mssim": ssim_metric(aligned, filled),
                    "mssim_255": ssim_metric(aligned, filled, data_range=255.0), "edge_f1": edge_f1(aligned, filled)}
        for key, value in expected.items():
            assert row[key] == pytest.approx(value, rel=1e-9, abs=1e-12), (method, key)
        assert row["num_pixels"] == valid.sum()


def test_constant_baseline_by_hand(tmp_path, stand_in, capsys):
    """Ground truth 2 m on 768 pixels, 3 m on 1526 and 5 m on 768: the median is 3 m (the mean 3.25 m), so the
    constant misses by 1 m (rel 1/2, ratio 1.5) on the top band, by 2 m (rel 2/5, ratio 5/3) on the bottom one."""
    _write_pair(tmp_path / "rgbd", "bands", ramp(H, W, axis=1), _bands_mm())
    assert _run("--rgbd", tmp_path / "rgbd", "--out", tmp_path / "out.json") == 0
    n2, n3, n4 = 12 * W, 24 * W - 10, 12 * W
    n = n2 + n3 + n4
    by_hand = {"delta1": n3 / n, "delta2": (n2 + n3) / n, "delta3": 1.0, "rel": (n2 * 0.5 + n4 * 0.4) / n,
               "rms": math.sqrt((n2 * 1 + n4 * 4) / n),
               "edge_f1": 0.0}  # a constant map has no edge; the bands' steps are edges of the ground truth
    record = json.loads((tmp_path / "out.json").read_text())
    for aggregate in ("per_image", "pooled"):
        constant = record[aggregate]["constant"]
        assert list(constant)[:3] == ["delta1", "rel", "rms"]
        for key, value in by_hand.items():
            assert constant[key] == pytest.approx(value, abs=1e-6), (aggregate, key)
    table = pd.read_csv(tmp_path / "out_per_image.csv").set_index("method")
    assert list(table.index) == list(METHODS)
    assert (table.loc["constant", "scale"], table.loc["constant", "shift"]) == (0.0, 3.0)
    assert (table.loc["model", "scale"], table.loc["model", "shift"]) == (1.0, 0.0)
    assert "evaluated 1 of 1 pairs" in capsys.readouterr().out


def test_pooled_and_per_image_differ_as_their_definitions_say(tmp_path, stand_in):
    """Two images (one a JPEG) of different valid-pixel counts: per_image averages their rms, pooled pools the
    squared errors."""
    small = _bands_mm()
    small[:, 8:] = 0  # 8 columns measured
    _write_pair(tmp_path / "rgbd", "a", ramp(H, W, axis=1), _bands_mm())
    _write_pair(tmp_path / "rgbd", "b", ramp(H, W, axis=0), small, suffix=".jpg")
    assert _run("--rgbd", tmp_path / "rgbd", "--out", tmp_path / "out.json") == 0
    record = json.loads((tmp_path / "out.json").read_text())
    rows = pd.read_csv(tmp_path / "out_per_image.csv").query("method == 'model'")
    rms, count = rows["rms"].to_numpy(), rows["num_pixels"].to_numpy()
    assert record["per_image"]["model"]["rms"] == pytest.approx(rms.mean(), abs=2e-6)
    assert record["pooled"]["model"]["rms"] == pytest.approx(np.sqrt((rms**2 * count).sum() / count.sum()), abs=2e-6)
    assert record["pooled"]["model"]["num_images"] == 2
    assert list(rows["image"]) == ["a.png", "b.jpg"]


# ---- bad input -------------------------------------------------------------------------------------------------------


def test_bad_pairs_are_named_and_skipped(tmp_path, stand_in, capsys):
    folder = tmp_path / "rgbd"
    rgb = ramp(H, W, axis=1)
    _write_pair(folder, "good", rgb, _bands_mm())
    _write_pair(folder, "nodepth", rgb, None)
    _write_pair(folder, "eightbit", rgb, np.full((H, W), 30, np.uint8))
    _write_pair(folder, "mismatch", rgb, _bands_mm()[:, :40])
    _write_pair(folder, "empty", rgb, np.zeros((H, W), np.uint16))
    _write_pair(folder, "far", rgb, np.full((H, W), 20000, np.uint16))  # 20 m: outside (0.1, 10) m
    assert _run("--rgbd", folder, "--out", tmp_path / "out.json") == 2
    out, err = capsys.readouterr()
    assert "evaluated 1 of 6 pairs" in out
    assert err.strip().splitlines()[-1] == ("error: 5 of 6 pairs skipped: eightbit.png, empty.png, far.png, "
                                            "mismatch.png, nodepth.png")
    reasons = {"nodepth": "missing", "eightbit": "got 8-bit greyscale", "mismatch": "size 64x48 (WxH), got 40x48",
               "empty": "got none of 3072 (3072 without a measurement)", "far": "got none of 3072 (0 without"}
    for name, reason in reasons.items():
        assert f"skipped {folder / name}" in err and reason in err, name
    info = json.loads((tmp_path / "out_info.json").read_text())
    assert info["evaluated"] == ["good.png"]
    assert sorted(info["skipped"]) == ["eightbit.png", "empty.png", "far.png", "mismatch.png", "nodepth.png"]
    assert json.loads((tmp_path / "out.json").read_text())["per_image"]["model"]["num_images"] == 1


def test_a_folder_without_pairs_is_one_line(tmp_path, stand_in, capsys):
    (tmp_path / "rgbd").mkdir()
    Image.fromarray(_bands_mm()).save(tmp_path / "rgbd" / "lonely_depth.png")  # a depth PNG is not a colour image
    assert _run("--rgbd", tmp_path / "rgbd", "--out", tmp_path / "out.json") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: no RGB-D pairs in {tmp_path / 'rgbd'}") and err.count("\n") == 1
    assert not (tmp_path / "out.json").exists()


def test_nothing_evaluated_writes_nothing(tmp_path, stand_in, capsys):
    _write_pair(tmp_path / "rgbd", "nodepth", ramp(H, W, axis=1), None)
    assert _run("--rgbd", tmp_path / "rgbd", "--out", tmp_path / "out.json") == 2
    assert "1 of 1 pairs skipped: nodepth.png" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rgbd"]


@pytest.mark.parametrize(("args", "message"), [
    (("--min-depth", "5", "--max-depth", "2"), "expected --min-depth below --max-depth, got 5 and 2"),
    (("--model", "missing.pt"), "no model file at missing.pt"),
])  # fmt: skip
def test_problems_before_any_work_are_one_line(tmp_path, capsys, args, message):
    _write_pair(tmp_path / "rgbd", "good", ramp(H, W, axis=1), _bands_mm())
    assert _run("--rgbd", tmp_path / "rgbd", "--out", tmp_path / "out.json", *args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_intrinsics_are_recorded(tmp_path, stand_in):
    _write_pair(tmp_path / "rgbd", "good", ramp(H, W, axis=1), _bands_mm())
    (tmp_path / "rgbd" / "intrinsics.json").write_text('{"fx": 50.0, "fy": 50.0, "cx": 31.5, "cy": 23.5}')
    assert _run("--rgbd", tmp_path / "rgbd", "--out", tmp_path / "out.json") == 0
    info = json.loads((tmp_path / "out_info.json").read_text())
    assert info["intrinsics"] == {"fx": 50.0, "fy": 50.0, "cx": 31.5, "cy": 23.5}
    assert info["valid_range_m"] == list(VALID_RANGE)


# ---- the real scene --------------------------------------------------------------------------------------------------


def test_disparity_to_depth_by_hand():
    """193.001 mm x 994.978 px = 192031.748978; / (0 + 31.086) = 6177.435 mm; / (64 + 31.086) = 2019.559 mm."""
    depth = _load_tool().disparity_to_depth(np.array([[0.0, 64.0, np.inf, np.nan]], np.float32))
    np.testing.assert_allclose(depth, [[6.177435, 2.019559, 0.0, 0.0]], atol=1e-6)


def test_motorcycle_folder_is_the_scene_in_depthcore_layout(tmp_path, stand_in):
    import skimage.data  # a dev dependency, as tools/motorcycle.py says

    _load_tool().main([str(tmp_path / "moto")])
    assert sorted(p.name for p in (tmp_path / "moto").iterdir()) == [
        "intrinsics.json", "motorcycle.png", "motorcycle_depth.png"]
    data = Path(skimage.data.__file__).parent
    disparity = np.load(data / "motorcycle_disp.npz", allow_pickle=False)["arr_0"]  # (500, 741), inf: unknown
    depth = np.asarray(Image.open(tmp_path / "moto" / "motorcycle_depth.png"))
    assert depth.dtype == np.uint16 and depth.shape == (500, 741)
    known = np.isfinite(disparity)
    np.testing.assert_array_equal(depth == 0, ~known)
    rows, cols = np.nonzero(known)
    for i in np.random.default_rng(0).choice(len(rows), 5, replace=False):
        d = float(disparity[rows[i], cols[i]])
        assert depth[rows[i], cols[i]] == round(193.001 * 994.978 / (d + 31.086)), (rows[i], cols[i], d)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "moto" / "motorcycle.png")),
                                  np.asarray(Image.open(data / "motorcycle_left.png")))
    camera = json.loads((tmp_path / "moto" / "intrinsics.json").read_text())
    assert (camera["fx"], camera["cx"], camera["cy"], camera["width"], camera["height"]) == (
        994.978, 311.193, 254.877, 741, 500)
    assert _run("--rgbd", tmp_path / "moto", "--out", tmp_path / "moto.json") == 0
    rows = pd.read_csv(tmp_path / "moto_per_image.csv")
    assert (rows["num_pixels"] == known.sum()).all()  # every measured depth lies in 2.1-5.0 m, inside (0.1, 10)
