"""Image grids for people: one row per image, columns RGB | ground truth | prediction | (error)."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps

DEPTH_CMAP = "viridis"
ERROR_CMAP = "magma"


def colorize(depth: np.ndarray, vmax: float, cmap: str = DEPTH_CMAP) -> np.ndarray:
    """depth (H, W) metres -> (H, W, 3) uint8, 0..vmax mapped onto `cmap`; non-finite pixels black."""
    scaled = np.clip(np.nan_to_num(depth, nan=0.0) / vmax, 0.0, 1.0)
    rgb = colormaps[cmap](scaled)[..., :3]  # (H, W, 3) float in [0, 1]
    rgb[~np.isfinite(depth)] = 0.0
    return (rgb * 255).round().astype(np.uint8)


def depth_grid(
    rgb: np.ndarray, gt: np.ndarray, pred: np.ndarray, max_depth: float, with_error: bool = False
) -> np.ndarray:
    """rgb (N, H, W, 3) uint8, gt and pred (N, H, W) metres -> (N*H, C*W, 3) uint8 grid.

    Columns: RGB, ground truth, prediction, and with `with_error` |pred - gt| on a scale of max_depth / 4.
    """
    if not (rgb.shape[:3] == gt.shape == pred.shape):
        raise ValueError(
            f"expected rgb (N, H, W, 3) and maps (N, H, W) of one size, got {rgb.shape}, {gt.shape}, {pred.shape}"
        )
    rows = []
    for i in range(len(rgb)):
        cols = [rgb[i], colorize(gt[i], max_depth), colorize(pred[i], max_depth)]
        if with_error:
            cols.append(colorize(np.abs(pred[i] - gt[i]), max_depth / 4, ERROR_CMAP))
        rows.append(np.concatenate(cols, axis=1))  # (H, C*W, 3)
    return np.concatenate(rows, axis=0)
