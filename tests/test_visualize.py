"""depthcore.visualize: grid sizes and the width bound, shared colour scales, non-finite pixels, errors."""

from __future__ import annotations

import numpy as np
import pytest

from depthcore.visualize import (
    LEGEND_MIN_WIDTH,
    MAX_GRID_WIDTH,
    colorize,
    depth_colormap,
    depth_grid,
    loss_curves,
    value_range,
)

VIRIDIS_LOW, VIRIDIS_HIGH = (68, 1, 84), (253, 231, 37)  # viridis' end colours, #440154 and #fde725
BLACK = (0, 0, 0)


def _maps(n: int, h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    gt = rng.uniform(0.5, 8.0, (n, h, w)).astype(np.float32)
    pred = rng.uniform(0.5, 8.0, (n, h, w)).astype(np.float32)
    return rgb, gt, pred


def _count(image: np.ndarray, colour: tuple[int, int, int], tol: int = 0) -> int:
    """Pixels of `image` (h, w, 3) within `tol` of `colour` in every channel."""
    return int((np.abs(image.astype(int) - colour) <= tol).all(axis=-1).sum())


@pytest.mark.parametrize(("n", "h", "w"), [(1, 8, 8), (3, 48, 64), (1, 40, 2000), (2, 300, 40)])
@pytest.mark.parametrize("with_error", [False, True])
def test_grid_shape_and_width_bound(n, h, w, with_error):
    grid = depth_grid(*_maps(n, h, w), with_error=with_error)
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3
    assert 0 < grid.shape[1] <= MAX_GRID_WIDTH
    assert grid.shape[0] > 0


def test_grid_grows_a_row_per_image_and_a_column_for_the_error():
    one = depth_grid(*_maps(1, 48, 64))
    three = depth_grid(*_maps(3, 48, 64))
    with_error = depth_grid(*_maps(1, 48, 64), with_error=True)
    assert three.shape[1] == one.shape[1] and three.shape[0] > 2.5 * one.shape[0]
    assert with_error.shape[0] == one.shape[0] and with_error.shape[1] > one.shape[1]


def test_large_images_are_downscaled_to_the_width_bound():
    grid = depth_grid(*_maps(1, 480, 640), with_error=True)
    assert grid.shape[1] == MAX_GRID_WIDTH  # 4 x 640 px of panels would not fit: they are scaled down


def test_ground_truth_and_prediction_share_the_row_scale():
    """gt: top half 1 m, bottom half 4 m; pred: 4 m everywhere. On the row's shared 1..4 m scale, gt's top half
    is viridis' low end and the other three half-panels its high end: three times as many pixels. (On a scale of
    its own, constant pred would get the middle colour, and the counts would be equal.)"""
    h, w = 40, 40
    gt = np.full((1, h, w), 4.0, np.float32)
    gt[0, : h // 2] = 1.0
    pred = np.full((1, h, w), 4.0, np.float32)
    rgb = np.full((1, h, w, 3), 128, np.uint8)
    grid = depth_grid(rgb, gt, pred)
    low, high = _count(grid, VIRIDIS_LOW, tol=2), _count(grid, VIRIDIS_HIGH, tol=2)
    assert low > 1000
    assert high == pytest.approx(3 * low, rel=0.1)


def test_rows_have_scales_of_their_own():
    """Row 0 spans 1..2 m, row 1 spans 5..9 m: each row's nearer half is viridis' low end."""
    h, w = 40, 40
    gt = np.empty((2, h, w), np.float32)
    gt[0, : h // 2], gt[0, h // 2:] = 1.0, 2.0
    gt[1, : h // 2], gt[1, h // 2:] = 5.0, 9.0
    grid = depth_grid(np.zeros((2, h, w, 3), np.uint8), gt, gt.copy())
    low, high = _count(grid, VIRIDIS_LOW, tol=2), _count(grid, VIRIDIS_HIGH, tol=2)
    assert low > 1000 and high == pytest.approx(low, rel=0.1)  # on a common 1..9 m scale 2 m and 5 m are neither


def test_non_finite_ground_truth_is_black_in_the_grid():
    rgb, gt, pred = _maps(1, 40, 40)
    rgb[:] = 255
    before = _count(depth_grid(rgb, gt, pred), BLACK)
    gt[0, :20] = np.nan
    gt[0, 20:, :10] = np.inf
    after = _count(depth_grid(rgb, gt, pred), BLACK)
    # the gt panel is enlarged from 40 to 200 px square: 5/8 of it (and of the error panel, if shown) turn black
    assert after - before > 0.5 * 200 * 200


def test_colorize_known_values_and_non_finite():
    depth = np.array([[1.0, 3.0], [np.nan, -np.inf]], np.float32)
    rgb = colorize(depth, 1.0, 3.0)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == VIRIDIS_LOW and tuple(rgb[0, 1]) == VIRIDIS_HIGH
    assert tuple(rgb[1, 0]) == BLACK and tuple(rgb[1, 1]) == BLACK
    clipped = colorize(np.array([[0.0, 9.0]]), 1.0, 3.0)
    assert tuple(clipped[0, 0]) == VIRIDIS_LOW and tuple(clipped[0, 1]) == VIRIDIS_HIGH


def test_value_range():
    assert value_range(np.array([2.0, np.nan]), np.array([np.inf, 5.0, 3.0])) == (2.0, 5.0)
    assert value_range(np.array([4.0, 4.0])) == (3.5, 4.5)  # flat: widened by FLAT_HALF_RANGE = 0.5
    assert value_range(np.array([np.nan])) == (0.0, 1.0)


@pytest.mark.parametrize("shape", [(480, 640), (240, 320), (31, 17), (1, 1), (700, 200)])
def test_depth_colormap_keeps_the_size(shape):
    depth = np.random.default_rng(0).uniform(1, 5, shape).astype(np.float32)
    image = depth_colormap(depth)
    assert image.shape == (*shape, 3) and image.dtype == np.uint8


def test_depth_colormap_draws_a_legend_only_where_it_fits():
    depth = np.linspace(1.0, 5.0, 480 * 640, dtype=np.float32).reshape(480, 640)
    image = depth_colormap(depth)
    plain = colorize(depth, 1.0, 5.0)
    changed = (image != plain).any(axis=-1)
    rows, cols = np.nonzero(changed)
    assert rows.min() > 480 / 2 and cols.min() > 640 / 2  # in the bottom-right corner
    corner = image[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert _count(corner, (255, 255, 255)) > corner.shape[0] * corner.shape[1] / 2  # on an opaque white box
    small = depth[: LEGEND_MIN_WIDTH // 2, : LEGEND_MIN_WIDTH // 2]
    np.testing.assert_array_equal(depth_colormap(small, 1.0, 5.0), colorize(small, 1.0, 5.0))


def test_depth_colormap_non_finite_black_and_given_range():
    depth = np.full((480, 640), 2.0, np.float32)
    depth[:100, :100] = np.nan
    image = depth_colormap(depth, vmin=2.0, vmax=6.0)
    assert (image[:100, :100] == 0).all()
    assert tuple(image[200, 200]) == VIRIDIS_LOW  # 2 m is vmin


def test_loss_curves_image():
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.5 / e} for e in range(1, 6)]
    image = loss_curves(history)
    assert image.dtype == np.uint8 and image.shape[2] == 3
    assert 0 < image.shape[1] <= 1000 and image.shape[0] > 100
    assert _count(image, (31, 119, 180), tol=10) > 100  # matplotlib's first line colour (tab:blue): the train line
    assert _count(image, (255, 127, 14), tol=10) > 100  # its second (tab:orange): the validation line


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: depth_grid(np.zeros((1, 4, 4), np.uint8), np.zeros((1, 4, 4)), np.zeros((1, 4, 4))),
         r"expected rgb of shape \(N, H, W, 3\), got \(1, 4, 4\)"),
        (lambda: depth_grid(np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 4, 5)), np.zeros((1, 4, 5))),
         r"expected gt and rgb's \(N, H, W\) of the same shape, got \(1, 4, 5\) and \(1, 4, 4\)"),
        (lambda: depth_grid(np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 4, 4)), np.zeros((2, 4, 4))),
         r"expected gt and pred of the same shape, got \(1, 4, 4\) and \(2, 4, 4\)"),
        (lambda: depth_grid(np.zeros((1, 4, 4, 3)), np.zeros((1, 4, 4)), np.zeros((1, 4, 4))),
         "expected rgb of dtype uint8, got float64"),
        (lambda: depth_grid(np.zeros((0, 4, 4, 3), np.uint8), np.zeros((0, 4, 4)), np.zeros((0, 4, 4))),
         "expected at least one image, got N = 0"),
        (lambda: colorize(np.zeros((2, 2)), 3.0, 3.0), "expected vmax > vmin, got vmin=3.0, vmax=3.0"),
        (lambda: depth_colormap(np.zeros((2, 2, 1))), r"expected depth of shape \(H, W\), got \(2, 2, 1\)"),
        (lambda: loss_curves([]), "expected a history of at least one epoch, got none"),
        (lambda: loss_curves([{"epoch": 1, "train_loss": 1.0}]),
         r"expected each history record to have keys epoch, train_loss, val_loss, got \['epoch', 'train_loss'\]"),
    ],
)
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
