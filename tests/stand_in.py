"""A stand-in depth network whose output is known by hand, for the tests of depthcore.frame and depthcore.predict."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from depthcore.device import resolve_runtime
from depthcore.inference import Predictor
from depthcore.model import ModelSpec
from tests.helpers import make_config

CPU_FP32 = resolve_runtime("cpu", "fp32", False)
#: RedDepth's output read as metres directly, clamped to [0.1, 10].
METRES = ModelSpec.from_config(make_config(**{"loss.target": "metres", "loss.min_depth": 0.1, "loss.max_depth": 10.0}))


class RedDepth(torch.nn.Module):
    """(B, 3, H, W) in [0, 1] -> (B, 1, H/8, W/8): 1 + 4 * red, averaged over 8x8 blocks (metres 1..5)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(1 + 4 * x[:, :1], 8)


def red_predictor() -> Predictor:
    """RedDepth as a Predictor on the CPU in fp32."""
    return Predictor(RedDepth(), CPU_FP32, METRES)


def red_depth(rgb: np.ndarray) -> np.ndarray:
    """What RedDepth predicts on a smooth image, by hand: 1 + 4 * red / 255 metres, (H, W)."""
    return 1 + 4 * rgb[..., 0].astype(np.float64) / 255


def ramp(h: int, w: int, axis: int) -> np.ndarray:
    """(h, w, 3) uint8 whose red rises 0..255 along `axis` (0: down, 1: right); green, blue constant."""
    n = (h, w)[axis]
    red = np.rint(np.linspace(0, 255, n)).astype(np.uint8)
    rgb = np.full((h, w, 3), 100, np.uint8)
    rgb[..., 0] = red[:, None] if axis == 0 else red[None, :]
    return rgb
