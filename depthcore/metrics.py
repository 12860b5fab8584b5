"""Depth metrics (delta1-3, rel, rms, log10, mSSIM, edge F1), evaluation protocols and a streaming accumulator.

All depths are metres. With ground truth y and prediction p over the valid pixels (finite y > 0, and the mask):
delta_k = fraction with max(y / p, p / y) < 1.25 ** k; rel = mean(|y - p| / y) (divided by the ground truth);
rms = sqrt(mean((y - p) ** 2)); log10 = mean(|log10 y - log10 p|).

Two aggregations over a test set, both exact from per-image sums kept by ``MetricAccumulator``:
- per_image: each metric computed on each image, then the mean over images (rms = mean of per-image rms);
- pooled: every valid pixel of every image in one pool (rms = sqrt(total squared error / total valid pixels)).

Known disagreements this module settles: DenseDepth's published ``evaluate`` pools all pixels but calls
``compute_errors(predictions, ground_truth)`` with the arguments swapped, so its rel divides by the prediction;
here rel always divides by the ground truth. Crops are half-open ``[r0:r1, c0:c1]`` on the 480x640 frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from kornia.filters import sobel
from pytorch_msssim import ssim

DEPTH_KEYS = ("delta1", "delta2", "delta3", "rel", "rms", "log10")
METRIC_KEYS = (*DEPTH_KEYS, "mssim", "edge_f1")
DELTA_BASE = 1.25
FRAME_SHAPE = (480, 640)  # the NYU frame every protocol crop is defined on
GT_KINDS = ("depths", "rawDepths")
AGGREGATES = ("per_image", "pooled")


def _as_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Any array or tensor -> float64 CPU tensor of the same shape."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(device="cpu", dtype=torch.float64)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))


def _check_same_shape(pred: torch.Tensor, gt: torch.Tensor, gt_name: str = "gt") -> None:
    if pred.shape != gt.shape:
        shapes = f"{tuple(pred.shape)} and {tuple(gt.shape)}"
        raise ValueError(f"expected pred and {gt_name} of the same shape, got {shapes}")


def _check_finite(pred: torch.Tensor, where: str) -> None:
    bad = int((~torch.isfinite(pred)).sum())
    if bad:
        raise ValueError(f"expected finite predictions, got {bad} non-finite of {pred.numel()} {where}")


def _valid_pixels(
    pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same-shape float64 pred, gt (and bool mask) -> 1-D (N,) pred and gt at the valid pixels.

    Valid: finite gt > 0 (zeros are missing readings, not errors), and the mask where given.
    """
    _check_same_shape(pred, gt)
    valid = torch.isfinite(gt) & (gt > 0)
    if mask is not None:
        _check_same_shape(pred, mask, "mask")
        valid &= mask
    count = int(valid.sum())
    if count == 0:
        raise ValueError(f"expected at least one valid pixel (mask & finite gt > 0), got 0 of {gt.numel()}")
    pred, gt = pred[valid], gt[valid]
    _check_finite(pred, "valid pixels")
    non_positive = int((pred <= 0).sum())
    if non_positive:
        raise ValueError(f"expected predictions > 0, got {non_positive} <= 0 of {count} valid pixels")
    return pred, gt


def _error_sums(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, float]:
    """(N,) valid pred, gt -> the sums every depth metric is a ratio of: count, delta hits, |rel|, squares, |log10|."""
    ratio = torch.maximum(gt / pred, pred / gt)
    sums = {"count": float(pred.numel())}
    for k in (1, 2, 3):
        sums[f"delta{k}"] = float((ratio < DELTA_BASE**k).sum())
    sums["rel"] = float(((gt - pred).abs() / gt).sum())
    sums["sq"] = float(((gt - pred) ** 2).sum())
    sums["log10"] = float((torch.log10(gt) - torch.log10(pred)).abs().sum())
    return sums


def _errors_from_sums(sums: dict[str, float]) -> dict[str, float]:
    """Sums from ``_error_sums`` (one image's or added over images) -> the six pooled depth metrics."""
    count = sums["count"]
    errors = {key: sums[key] / count for key in ("delta1", "delta2", "delta3", "rel", "log10")}
    errors["rms"] = math.sqrt(sums["sq"] / count)
    return {key: errors[key] for key in DEPTH_KEYS}


def depth_errors(
    pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray | None = None
) -> dict[str, float]:
    """delta1, delta2, delta3, rel, rms, log10 pooled over the valid pixels of same-shape maps (any shape), metres.

    Valid pixels: finite gt > 0, and ``mask`` (bool, same shape) where given. Raises ValueError on shape mismatch,
    no valid pixel, and non-finite or non-positive predictions at valid pixels.
    """
    mask_t = None if mask is None else _as_tensor(mask).bool()
    return _errors_from_sums(_error_sums(*_valid_pixels(_as_tensor(pred), _as_tensor(gt), mask_t)))


def _check_maps(pred: torch.Tensor, gt: torch.Tensor) -> None:
    _check_same_shape(pred, gt)
    if pred.ndim != 2:
        raise ValueError(f"expected (H, W) depth maps, got shape {tuple(pred.shape)}")
    _check_finite(pred, "pixels")
    _check_finite(gt, "ground-truth pixels")


def ssim_metric(pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray, max_depth: float = 10.0) -> float:
    """Mean SSIM of one pair of (H, W) depth maps in metres.

    ``pytorch_msssim.ssim`` with its defaults (11x11 Gaussian window, sigma 1.5, K = (0.01, 0.03), valid
    convolution, mean over the map) and data range ``max_depth``, so C1 = (0.01 max_depth)^2, C2 = (0.03 max_depth)^2.
    """
    pred_t, gt_t = _as_tensor(pred), _as_tensor(gt)
    _check_maps(pred_t, gt_t)
    return float(ssim(pred_t[None, None], gt_t[None, None], data_range=max_depth, size_average=True))


def _edge_counts(pred: torch.Tensor, gt: torch.Tensor, threshold: float, max_depth: float) -> tuple[int, int, int]:
    """(H, W) pred, gt -> (true-positive, predicted, ground-truth) edge-pixel counts; see ``edge_f1``."""
    maps = torch.stack([pred, gt])[:, None] / max_depth  # (2, 1, H, W), depth as a fraction of max_depth
    pred_edges, gt_edges = sobel(maps)[:, 0] > threshold  # (H, W) bool each
    return int((pred_edges & gt_edges).sum()), int(pred_edges.sum()), int(gt_edges.sum())


def _f1(true_positive: int, predicted: int, actual: int) -> float:
    """F1 = 2 TP / (predicted + actual) = 2 P R / (P + R); 1 when neither map has an edge, 0 when only one has."""
    return 1.0 if predicted + actual == 0 else 2 * true_positive / (predicted + actual)


def edge_f1(
    pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray, threshold: float = 0.2, max_depth: float = 10.0
) -> float:
    """F1 of predicted edge pixels against ground-truth edge pixels, (H, W) depth maps in metres.

    What is thresholded: ``kornia.filters.sobel(depth / max_depth)`` with kornia's defaults, i.e. the magnitude
    sqrt(gx^2 + gy^2 + 1e-6) of the 3x3 Sobel responses with the kernel divided by its L1 norm (8), replicate border.
    That is the local slope in max_depth units per pixel; a step of D metres between two columns gives D / (2
    max_depth) on the two pixels beside it, so the default threshold 0.2 with max_depth 10 m marks steps over 4 m.
    Edge pixels: magnitude > threshold. F1 = 2 TP / (#pred edges + #gt edges); 1 when neither map has an edge.
    """
    pred_t, gt_t = _as_tensor(pred), _as_tensor(gt)
    _check_maps(pred_t, gt_t)
    return _f1(*_edge_counts(pred_t, gt_t, threshold, max_depth))


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol as data; what ``MetricAccumulator`` does to each image."""

    name: str  # key in PROTOCOLS
    description: str  # one line for tables and logs
    gt: str  # ground truth the depth metrics use: "depths" (filled) or "rawDepths" (0 = no reading)
    crop: tuple[int, int, int, int] | None  # half-open (r0, r1, c0, c1) on the 480x640 frame; None = full frame
    aggregate: str  # default aggregation over images: "per_image" or "pooled"
    flip_average: bool  # the caller averages the prediction with the un-flipped prediction of the flipped image
    valid_range: tuple[float, float] | None  # a gt pixel counts only if low < gt < high (on top of gt > 0)
    clamp: tuple[float, float] | None  # the prediction is clamped to [low, high] before every metric

    def __post_init__(self) -> None:
        if self.gt not in GT_KINDS:
            raise ValueError(f"expected gt in {GT_KINDS}, got {self.gt!r}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"expected aggregate in {AGGREGATES}, got {self.aggregate!r}")
        if self.crop is not None:
            r0, r1, c0, c1 = self.crop
            if not (0 <= r0 < r1 <= FRAME_SHAPE[0] and 0 <= c0 < c1 <= FRAME_SHAPE[1]):
                raise ValueError(f"expected a crop (r0, r1, c0, c1) inside {FRAME_SHAPE}, got {self.crop}")

    def apply_crop(self, x: torch.Tensor) -> torch.Tensor:
        """(..., 480, 640) -> (..., r1 - r0, c1 - c0); the input unchanged when crop is None."""
        if self.crop is None:
            return x
        if tuple(x.shape[-2:]) != FRAME_SHAPE:
            raise ValueError(f"expected maps of {FRAME_SHAPE} for protocol {self.name!r}'s crop, got {tuple(x.shape)}")
        r0, r1, c0, c1 = self.crop
        return x[..., r0:r1, c0:c1]


PROTOCOLS: dict[str, Protocol] = {
    "report": Protocol(
        name="report",
        description="report: filled depths, full frame, per-image mean",
        gt="depths",
        crop=None,
        aggregate="per_image",
        flip_average=False,
        valid_range=None,
        clamp=None,
    ),
    "densedepth": Protocol(
        name="densedepth",
        description="DenseDepth paper: filled depths, crop [20:460, 24:616], pooled, flip-averaged, pred in [0.1, 10]",
        gt="depths",
        crop=(20, 460, 24, 616),
        aggregate="pooled",
        flip_average=True,
        valid_range=None,
        clamp=(0.1, 10.0),  # the paper's predict() clips DepthNorm outputs to [10, 1000] cm
    ),
    "eigen": Protocol(
        name="eigen",
        description="Eigen (BTS/AdaBins/ZoeDepth): raw depths in (1e-3, 10), crop [45:471, 41:601], per-image mean",
        gt="rawDepths",
        crop=(45, 471, 41, 601),
        aggregate="per_image",
        flip_average=False,
        valid_range=(1e-3, 10.0),
        clamp=(1e-3, 10.0),
    ),
}


def _as_batch(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """(H, W), (B, H, W) or (B, 1, H, W) -> (B, H, W) float64 CPU tensor."""
    t = _as_tensor(x)
    if t.ndim == 4 and t.shape[1] == 1:
        t = t[:, 0]
    elif t.ndim == 2:
        t = t[None]
    if t.ndim != 3:
        raise ValueError(f"expected {name} of shape (H, W), (B, H, W) or (B, 1, H, W), got {tuple(x.shape)}")
    return t


class MetricAccumulator:
    """Streams a test set through one protocol, keeping only per-image scalars (never maps).

    ``update(pred_m, depth, raw_depth=None)`` per batch; ``result()`` aggregates as the protocol says,
    ``result("pooled")`` / ``result("per_image")`` either way; ``rows()`` gives one dict per image for a CSV.

    Per image: the prediction is clamped (protocol.clamp); the depth metrics compare it with the protocol's ground
    truth (``depth`` or ``raw_depth``) inside the crop, at valid pixels (gt > 0 and inside protocol.valid_range).
    mSSIM and edge F1 need whole maps, so they always compare it with the filled ``depth`` over the same crop,
    for every protocol (raw depth has holes that would read as edges and structure).

    Pooled depth metrics pool every valid pixel of every image; pooled edge F1 is 2 sum(TP) / (sum(#pred edges) +
    sum(#gt edges)); pooled mSSIM weights each image's mean SSIM by its cropped area (equal to the per-image mean
    when all images have one size).
    """

    def __init__(self, protocol: Protocol | str, edge_threshold: float = 0.2, max_depth: float = 10.0) -> None:
        if isinstance(protocol, str):
            if protocol not in PROTOCOLS:
                raise ValueError(f"expected a protocol in {sorted(PROTOCOLS)}, got {protocol!r}")
            protocol = PROTOCOLS[protocol]
        if max_depth <= 0:
            raise ValueError(f"expected max_depth > 0, got {max_depth}")
        self.protocol, self.edge_threshold, self.max_depth = protocol, edge_threshold, max_depth
        self._rows: list[dict[str, float]] = []
        self._totals: dict[str, float] = {}

    def update(
        self,
        pred_m: torch.Tensor | np.ndarray,
        depth: torch.Tensor | np.ndarray,
        raw_depth: torch.Tensor | np.ndarray | None = None,
    ) -> None:
        """Add a batch. pred_m: prediction in metres at ground-truth resolution, flip-averaged by the caller when
        protocol.flip_average; depth: filled ground truth; raw_depth: raw ground truth (0 = no reading), required
        when protocol.gt is "rawDepths". Each (H, W), (B, H, W) or (B, 1, H, W), all the same (B, H, W).
        """
        pred = _as_batch(pred_m, "pred_m")
        filled = _as_batch(depth, "depth")
        _check_same_shape(pred, filled, "depth")
        _check_finite(pred, "pixels")
        if self.protocol.gt == "rawDepths":
            if raw_depth is None:
                raise ValueError(f"expected raw_depth for protocol {self.protocol.name!r}, got None")
            gt = _as_batch(raw_depth, "raw_depth")
            _check_same_shape(pred, gt, "raw_depth")
        else:
            gt = filled
        for image in range(pred.shape[0]):
            self._add_image(pred[image], gt[image], filled[image])

    def _add_image(self, pred: torch.Tensor, gt: torch.Tensor, filled: torch.Tensor) -> None:
        """(H, W) prediction, protocol ground truth and filled ground truth -> one row and the running totals."""
        protocol = self.protocol
        if protocol.clamp is not None:
            pred = pred.clamp(*protocol.clamp)
        pred, gt, filled = protocol.apply_crop(pred), protocol.apply_crop(gt), protocol.apply_crop(filled)
        mask = None
        if protocol.valid_range is not None:
            low, high = protocol.valid_range
            mask = (gt > low) & (gt < high)
        sums = _error_sums(*_valid_pixels(pred, gt, mask))
        edges = _edge_counts(pred, filled, self.edge_threshold, self.max_depth)
        mssim = ssim_metric(pred, filled, self.max_depth)
        area = float(pred.numel())
        row = {"image": len(self._rows), **_errors_from_sums(sums), "mssim": mssim, "edge_f1": _f1(*edges)}
        self._rows.append({**row, "num_pixels": int(sums["count"])})
        image_totals = {**sums, "tp": edges[0], "pred_edges": edges[1], "gt_edges": edges[2]}
        image_totals.update(ssim_area=mssim * area, area=area)
        for key, value in image_totals.items():
            self._totals[key] = self._totals.get(key, 0.0) + value

    def result(self, aggregate: str | None = None) -> dict[str, float]:
        """All eight metrics aggregated over the images so far (default: the protocol's aggregation), plus
        num_images and num_pixels (valid pixels of the depth metrics)."""
        aggregate = aggregate or self.protocol.aggregate
        if aggregate not in AGGREGATES:
            raise ValueError(f"expected aggregate in {AGGREGATES}, got {aggregate!r}")
        if not self._rows:
            raise ValueError("expected at least one update() before result(), got 0 images")
        totals = self._totals
        if aggregate == "pooled":
            metrics = _errors_from_sums(totals)
            metrics["mssim"] = totals["ssim_area"] / totals["area"]
            metrics["edge_f1"] = _f1(totals["tp"], totals["pred_edges"], totals["gt_edges"])
        else:
            metrics = {key: math.fsum(row[key] for row in self._rows) / len(self._rows) for key in METRIC_KEYS}
        return {**metrics, "num_images": len(self._rows), "num_pixels": int(totals["count"])}

    def rows(self) -> list[dict[str, float]]:
        """One dict per image, in update order: image (0-based), the eight metrics, num_pixels."""
        return [dict(row) for row in self._rows]
