"""The DenseDepth training loss: depth L1, gradient L1 and SSIM terms, and the target-space conversion.

The paper (Alhashim & Wonka) trains on DepthNorm targets, ``max_depth / depth``; the report trains on metres.
``to_target`` / ``to_metres`` are the one conversion pair between metres and the training target, used by both
training (to build targets) and evaluation (to read network outputs back as metres).

Each loss term is a function of two ``(B, 1, H, W)`` maps in target space; ``DepthLoss`` only stores the weights,
resizes and converts the ground truth, and calls them (the kornia ``ssim_loss`` / ``SSIMLoss`` pattern).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim
from torch import nn

from depthcore.checks import check_choice
from depthcore.nyu import MAX_DEPTH, MIN_DEPTH

TARGETS = ("depthnorm", "metres")
SSIM_WINDOW_SIZE, SSIM_WINDOW_SIGMA = 11, 1.5  # pytorch_msssim's defaults, the Gaussian of the SSIM paper (Wang et al.)


def _check_depth_range(min_depth: float, max_depth: float) -> None:
    if not 0 < min_depth < max_depth:
        raise ValueError(f"expected 0 < min_depth < max_depth, got min_depth={min_depth}, max_depth={max_depth}")


def target_range(target: str, min_depth: float = MIN_DEPTH, max_depth: float = MAX_DEPTH) -> tuple[float, float]:
    """The valid (low, high) range of a target space.

    depthnorm: (1, max_depth / min_depth), i.e. (1, 100) for 0.1-10 m; metres: (min_depth, max_depth).
    It is also the SSIM data range's upper end: ``data_range = target_range(...)[1]``.
    """
    check_choice("target", target, TARGETS)
    _check_depth_range(min_depth, max_depth)
    if target == "depthnorm":
        return 1.0, max_depth / min_depth
    return min_depth, max_depth


def to_target(
    depth_m: torch.Tensor, target: str, min_depth: float = MIN_DEPTH, max_depth: float = MAX_DEPTH
) -> torch.Tensor:
    """Metres -> training target, any shape.

    The depth is first clamped to [min_depth, max_depth]; depthnorm then gives ``max_depth / depth`` (the paper's
    1000 cm / depth in cm, clamped to [10, 1000] cm, is the same number for 0.1-10 m), in [1, max_depth / min_depth];
    metres gives the clamped depth itself.
    """
    check_choice("target", target, TARGETS)
    _check_depth_range(min_depth, max_depth)
    depth = depth_m.clamp(min_depth, max_depth)
    return max_depth / depth if target == "depthnorm" else depth


def to_metres(
    pred_target: torch.Tensor, target: str, min_depth: float = MIN_DEPTH, max_depth: float = MAX_DEPTH
) -> torch.Tensor:
    """Training target (e.g. a raw network output) -> metres in [min_depth, max_depth], any shape.

    The target is clamped to its valid range (``target_range``) first, so raw outputs near zero or negative
    never divide by ~0: ``to_metres(to_target(d)) == d.clamp(min_depth, max_depth)``.
    """
    low, high = target_range(target, min_depth, max_depth)
    value = pred_target.clamp(low, high)
    return max_depth / value if target == "depthnorm" else value


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.ndim != 4 or pred.shape[1] != 1:
        raise ValueError(f"expected pred of shape (B, 1, H, W), got {tuple(pred.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"expected target of pred's shape {tuple(pred.shape)}, got {tuple(target.shape)}")


def depth_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of (B, 1, H, W) maps -> scalar."""
    _check_pair(pred, target)
    return (pred - target).abs().mean()


def _diffs(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences of (B, 1, H, W): rows (B, 1, H-1, W) and columns (B, 1, H, W-1)."""
    return x[:, :, 1:, :] - x[:, :, :-1, :], x[:, :, :, 1:] - x[:, :, :, :-1]


def gradient_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between image gradients of (B, 1, H, W) maps -> scalar.

    Gradients are forward differences without padding; the loss is mean |d_y pred - d_y target| over the (H-1) x W
    vertical differences plus the same mean over the H x (W-1) horizontal ones. (The paper's Keras code pads the
    last row/column with zeros and averages over H x W, which scales each term by (H-1)/H or (W-1)/W.)
    """
    _check_pair(pred, target)
    pred_dy, pred_dx = _diffs(pred)
    target_dy, target_dx = _diffs(target)
    return (pred_dy - target_dy).abs().mean() + (pred_dx - target_dx).abs().mean()


def gaussian_window(size: int = SSIM_WINDOW_SIZE, sigma: float = SSIM_WINDOW_SIGMA) -> torch.Tensor:
    """The 1-D Gaussian, centred, summing to 1, that SSIM smooths one-channel maps with along each axis, as a
    (1, 1, 1, size) float32 convolution weight: the window ``pytorch_msssim.ssim`` builds itself for (B, 1, H, W)
    maps when given none, to the bit."""
    offsets = torch.arange(size, dtype=torch.float32) - size // 2
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    return (weights / weights.sum()).reshape(1, 1, 1, size)


def ssim_loss(
    pred: torch.Tensor, target: torch.Tensor, data_range: float, window: torch.Tensor | None = None
) -> torch.Tensor:
    """clip((1 - SSIM) / 2, 0, 1) of (B, 1, H, W) maps -> scalar.

    SSIM from ``pytorch_msssim.ssim`` with its defaults (11x11 Gaussian window, sigma 1.5, K = (0.01, 0.03)),
    averaged over the batch; ``data_range`` is the upper end of the target space's range (``target_range``: 100 for
    depthnorm, 10 for metres), so C1 = (0.01 data_range)^2 and C2 = (0.03 data_range)^2. ``window``: the
    ``gaussian_window()``, already on pred's device (``DepthLoss`` keeps one), or None to have pytorch_msssim build it
    on the CPU and copy it over on every call. Maps smaller than 11 pixels on a side skip the smoothing on that side
    (pytorch_msssim warns).
    """
    _check_pair(pred, target)
    if data_range <= 0:
        raise ValueError(f"expected data_range > 0, got {data_range}")
    return ((1 - ssim(pred, target, data_range=data_range, size_average=True, win=window)) / 2).clamp(0, 1)


class DepthLoss(nn.Module):
    """``w_depth * depth_l1 + w_grad * gradient_loss + w_ssim * ssim_loss`` in the chosen target space.

    ``forward(pred, gt_m)``: pred (B, 1, h, w) network output in target space; gt_m (B, 1, H, W) ground truth in
    metres at any resolution. The ground truth is resized to (h, w) by area averaging in metres
    (``adaptive_avg_pool2d``: each output pixel is the mean depth of the input pixels under it, exact 8x8 blocks
    for 480x640 -> 60x80, 2x2 for 480x640 -> 240x320, identity when already (h, w)), then converted with
    ``to_target``. Averaging metres, not targets, keeps a block's mean depth; averaging DepthNorm values would give
    its harmonic mean. Everything is computed in fp32 with autocast disabled, whatever dtype pred arrives in.
    Returns ``(total, parts)``: total a scalar fp32 tensor with grad; parts ``{"depth", "grad", "ssim"}`` detached
    scalar fp32 tensors, unweighted (call ``.item()`` when logging). SSIM's data range is the target space's upper
    end: max_depth / min_depth for depthnorm, max_depth for metres. The SSIM window is a buffer (``ssim_window``),
    made once and moved with the module, left out of its state dict.
    """

    def __init__(
        self,
        w_depth: float = 0.1,
        w_grad: float = 1.0,
        w_ssim: float = 1.0,
        target: str = "depthnorm",
        min_depth: float = MIN_DEPTH,
        max_depth: float = MAX_DEPTH,
    ) -> None:
        super().__init__()
        if min(w_depth, w_grad, w_ssim) < 0:
            raise ValueError(f"expected non-negative weights, got w_depth={w_depth}, w_grad={w_grad}, w_ssim={w_ssim}")
        self.data_range = target_range(target, min_depth, max_depth)[1]
        self.w_depth, self.w_grad, self.w_ssim = w_depth, w_grad, w_ssim
        self.target, self.min_depth, self.max_depth = target, min_depth, max_depth
        self.register_buffer("ssim_window", gaussian_window(), persistent=False)  # (1, 1, 1, 11)

    def forward(self, pred: torch.Tensor, gt_m: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if pred.ndim != 4 or pred.shape[1] != 1:
            raise ValueError(f"expected pred of shape (B, 1, h, w), got {tuple(pred.shape)}")
        if gt_m.ndim != 4 or gt_m.shape[:2] != pred.shape[:2]:
            raise ValueError(f"expected gt_m of shape ({pred.shape[0]}, 1, H, W), got {tuple(gt_m.shape)}")
        with torch.autocast(device_type=pred.device.type, enabled=False):
            pred = pred.float()
            gt_small = F.adaptive_avg_pool2d(gt_m.float(), pred.shape[-2:])  # (B, 1, h, w) metres
            target = to_target(gt_small, self.target, self.min_depth, self.max_depth)
            parts = {
                "depth": depth_l1(pred, target),
                "grad": gradient_loss(pred, target),
                "ssim": ssim_loss(pred, target, self.data_range, self.ssim_window),
            }
            total = self.w_depth * parts["depth"] + self.w_grad * parts["grad"] + self.w_ssim * parts["ssim"]
        return total, {name: value.detach() for name, value in parts.items()}
