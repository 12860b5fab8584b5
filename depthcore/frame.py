"""Any image in the 480x640 NYU frame the network was trained on, and back: the letterbox and the camera it implies.

The letterbox keeps the aspect ratio (stretching would distort every shape the network learned):

1. scale the image to fit inside 640x480: factor min(640 / W, 480 / H), the box rounded to whole pixels;
2. centre it and fill the rest of the frame by edge replication (each border pixel repeated outwards, so the
   network sees no artificial edge where the image ends);
3. predict on the frame, crop the box, and upsample the crop to the image's own size (`depthcore.inference.upsample`,
   pixel centres aligned).

An image of 4:3 aspect fills the frame (no padding); a 640x480 image passes through unchanged. `predict_images` does
all three for a batch of images of any sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from depthcore.checks import check_shape
from depthcore.inference import Predictor, upsample
from depthcore.nyu import CX, CY, FX, FY, HEIGHT, WIDTH
from depthcore.pointcloud import Intrinsics

RESAMPLE = Image.Resampling.BILINEAR  # Pillow's bilinear averages over the footprint when it shrinks (no aliasing)


@dataclass(frozen=True)
class Box:
    """Where an image of `size` (H, W) sits in the frame: rows top..top+height, columns left..left+width."""

    top: int
    left: int
    height: int
    width: int
    size: tuple[int, int]


def fit_box(height: int, width: int) -> Box:
    """The letterbox of an (height, width) image: scaled to fit the frame, centred (extra pixel at the bottom/right)."""
    scale = min(WIDTH / width, HEIGHT / height)
    h = min(HEIGHT, max(1, round(height * scale)))
    w = min(WIDTH, max(1, round(width * scale)))
    return Box((HEIGHT - h) // 2, (WIDTH - w) // 2, h, w, (height, width))


def to_frame(rgb: np.ndarray) -> tuple[np.ndarray, Box]:
    """rgb (H, W, 3) uint8 -> the letterboxed frame (480, 640, 3) uint8 and its box."""
    check_shape("rgb", rgb.shape, ("H", "W", 3))
    if rgb.dtype != np.uint8:
        raise ValueError(f"expected rgb of dtype uint8, got {rgb.dtype}")
    box = fit_box(*rgb.shape[:2])
    if (box.height, box.width) != box.size:
        rgb = np.asarray(Image.fromarray(rgb).resize((box.width, box.height), RESAMPLE))
    pad = ((box.top, HEIGHT - box.height - box.top), (box.left, WIDTH - box.width - box.left), (0, 0))
    return np.pad(rgb, pad, mode="edge"), box


def from_frame(depth: torch.Tensor, box: Box) -> np.ndarray:
    """A prediction on the frame, (1, 480, 640) or (480, 640) metres -> (H, W) float32 at the image's own size."""
    crop = depth.reshape(1, 1, HEIGHT, WIDTH)[..., box.top:box.top + box.height, box.left:box.left + box.width]
    return upsample(crop, box.size)[0, 0].numpy()  # (H, W)


def nyu_intrinsics(box: Box) -> Intrinsics:
    """NYU's Kinect intrinsics (nyu.FX, FY, CX, CY on 640x480) carried onto the image whose letterbox is `box`.

    The network predicts depth as seen by the camera of its training frame; the image fills the frame's box, so
    the camera consistent with its depth maps the box onto the image. NYU's cx, cy are 1-based (the top-left
    pixel's centre is (1, 1)); in coordinates where pixels are unit squares from the top-left corner (0, 0) the
    principal point is (CX - 0.5, CY - 0.5), which the box maps to the image by u_image = (u_frame - left) * W / w.
    Back in 0-based pixel centres (`Intrinsics`' convention), with (top, left, h, w) the box and (H, W) the image:

        fx = FX * W / w                      cx = (CX - 0.5 - left) * W / w - 0.5
        fy = FY * H / h                      cy = (CY - 0.5 - top) * H / h - 0.5

    For a 4:3 image (no padding) this is the calibration scaled by W / 640 and H / 480; for 640x480 itself
    fx = FX, fy = FY, cx = CX - 1, cy = CY - 1. Pixels stay square (up to the box's rounding to whole pixels).
    """
    sx, sy = box.size[1] / box.width, box.size[0] / box.height  # image pixels per frame pixel
    return Intrinsics(FX * sx, FY * sy, (CX - 0.5 - box.left) * sx - 0.5, (CY - 0.5 - box.top) * sy - 0.5)


def predict_images(predictor: Predictor, images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """images (H_i, W_i, 3) uint8 of any sizes -> depth (H_i, W_i) float32 metres each, in one forward pass.

    Letterboxed frames all have one size, so any images batch together.
    """
    frames, boxes = zip(*(to_frame(rgb) for rgb in images))
    batch = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)  # (B, 3, 480, 640) uint8
    depth = predictor(batch)  # (B, 1, 480, 640) metres
    return [from_frame(d, box) for d, box in zip(depth, boxes)]
