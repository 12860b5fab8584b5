"""depthcore.frame: the letterbox into the 480x640 frame and back, and NYU's camera carried onto any image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depthcore.frame import Box, fit_box, from_frame, nyu_intrinsics, predict_images, to_frame
from depthcore.nyu import CX, CY, FX, FY
from tests.stand_in import ramp, red_depth, red_predictor


@pytest.mark.parametrize(
    ("size", "box"),
    [
        ((480, 640), Box(0, 0, 480, 640, (480, 640))),
        ((240, 320), Box(0, 0, 480, 640, (240, 320))),  # 4:3 fills the frame
        ((640, 480), Box(0, 140, 480, 360, (640, 480))),  # portrait: x0.75, 360 wide, (640 - 360) / 2 = 140
        ((100, 400), Box(160, 0, 160, 640, (100, 400))),  # 4:1: x1.6, 160 high, (480 - 160) / 2 = 160
        ((3, 1000), Box(239, 0, 2, 640, (3, 1000))),  # x0.64: 1.92 rounds to 2 rows, (480 - 2) // 2 = 239
    ],
)
def test_fit_box(size, box):
    assert fit_box(*size) == box


def test_to_frame_pads_by_edge_replication():
    rgb = np.random.default_rng(0).integers(0, 256, (100, 400, 3), dtype=np.uint8)
    frame, box = to_frame(rgb)
    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame[:160], np.broadcast_to(frame[160], (160, 640, 3)))  # top pad = first row
    np.testing.assert_array_equal(frame[320:], np.broadcast_to(frame[319], (160, 640, 3)))  # bottom pad = last row
    same, _ = to_frame(frame)  # 640x480 passes through unchanged
    np.testing.assert_array_equal(same, frame)


def test_from_frame_crops_the_box_and_returns_the_image_size():
    box = fit_box(640, 480)  # columns 140..500 of the frame hold the image
    columns = torch.arange(640, dtype=torch.float32).expand(480, 640)  # depth = frame column
    depth = from_frame(columns[None], box)
    assert depth.shape == (640, 480)
    # image column u (pixel centre u + 0.5) sits at frame centre 140 + (u + 0.5) * 0.75, i.e. value that - 0.5
    u = np.arange(1, 479)
    np.testing.assert_allclose(depth[5, 1:-1], 140 + (u + 0.5) * 0.75 - 0.5, atol=1e-3)
    assert (depth[5, 0], depth[5, -1]) == (140, 499)  # the edges clamp to the box's columns, not the padding's


@pytest.mark.parametrize(("size", "axis"), [((120, 60), 1), ((40, 160), 0), ((48, 64), 1)])
def test_depth_lands_on_the_pixels_it_was_predicted_for(size, axis):
    """A red ramp across the padded direction: RedDepth gives 1 + 4 * red / 255 at every pixel, so any shift of
    the crop against the image breaks the match: one image pixel is at least 4 m / 63 = 0.063 m here, the
    tolerance a third of that (the 8-bit ramp's steps, smoothed by resampling, differ by up to 0.011 m)."""
    rgb = ramp(*size, axis)
    (depth,) = predict_images(red_predictor(), [rgb])
    assert depth.shape == size and depth.dtype == np.float32
    inner = (slice(2, -2), slice(None)) if axis == 0 else (slice(None), slice(2, -2))
    np.testing.assert_allclose(depth[inner], red_depth(rgb)[inner], atol=0.02)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((480, 640), (FX, FY, CX - 1, CY - 1)),  # NYU's own frame: only 1-based -> 0-based
        ((240, 320), (259.42895, 259.7348, 162.0412, 126.1181)),  # FX / 2, (CX - 0.5) / 2 - 0.5, ...
        # portrait 480 wide: box x0.75 at column 140; fx = FX * 480 / 360, cx = (CX - 0.5 - 140) * 480 / 360 - 0.5
        ((640, 480), (691.8105333, 692.6261333, 246.2765333, 337.1482667)),
    ],
)
def test_nyu_intrinsics_scaled_to_the_image(size, expected):
    camera = nyu_intrinsics(fit_box(*size))
    assert (camera.fx, camera.fy, camera.cx, camera.cy) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("rgb", "message"),
    [
        (np.zeros((4, 4, 3), np.float32), "expected rgb of dtype uint8, got float32"),
        (np.zeros((4, 4), np.uint8), r"expected rgb of shape \(H, W, 3\), got \(4, 4\)"),
    ],
)
def test_to_frame_errors(rgb, message):
    with pytest.raises(ValueError, match=message):
        to_frame(rgb)
