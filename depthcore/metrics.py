"""Depth metrics, evaluation protocols and a streaming accumulator. All depths are metres.

Depth errors, with ground truth y and prediction p over the valid pixels (finite y > 0, and the mask), d = ln p - ln y:
- delta_k = fraction with max(y / p, p / y) < 1.25 ** k (k = 1, 2, 3);
- rel = mean(|y - p| / y) (divided by the ground truth), sq_rel = mean((y - p)^2 / y);
- rms = sqrt(mean((y - p)^2)), rmse_log = sqrt(mean(d^2)), log10 = mean(|log10 y - log10 p|);
- silog = 100 sqrt(mean(d^2) - mean(d)^2) (the BTS / AdaBins definition, lambda = 1, scaled by 100).
The first six are the report's and the paper's; sq_rel, rmse_log and silog complete the field's set (BTS, AdaBins,
the Monocular-Depth-Estimation-Toolbox).

Whole-map metrics, always one value per image and then the mean over images, under every protocol (the paper
averages F1 and SSIM per image and pools only the depth errors):
- mssim: mean SSIM of prediction and ground truth, as `pytorch_msssim.ssim` computes it with its defaults (11x11
  Gaussian window of sigma 1.5, K = (0.01, 0.03), valid convolution, mean over the map; computed here for both data
  ranges from one set of local moments, and checked against pytorch_msssim in the tests), with data range
  SSIM_DATA_RANGE = 10 m, this project's definition: C1 = (0.01 * 10 m)^2, C2 = (0.03 * 10 m)^2;
- mssim_255: the same with pytorch_msssim's default data range 255, as the report evidently used (its random guess
  scores ~0.73 that way on rendered rooms against its published 0.745, and ~0.009 with 10 m);
- edge_f1: F1 of predicted against ground-truth edge pixels, where an edge pixel has a Sobel magnitude over the
  threshold: `kornia.filters.sobel` of depth in metres with kornia's defaults (3x3 kernel divided by its L1 norm 8,
  replicate border), so a step of D metres between two columns gives D / 2 on the pixels beside it: the report's
  threshold 0.2 marks steps of more than 0.4 m, the paper's 0.5 steps of more than 1 m. An image whose ground truth
  has no edge pixel has no F1 and is left out of the mean (`edge_f1_images` counts those that are in);
  `edge_f1_pooled` = 2 sum(TP) / (sum(#pred edges) + sum(#gt edges)) over all images. In general a threshold t
  (eval.edge_threshold) marks steps of more than 2t metres.

`depthcore.report` states these definitions in metrics/comparison.md with the settings a run was measured with (the
edge threshold, the SSIM data ranges) and each protocol's fields in words.

Two aggregations of the depth errors over a test set, both exact from per-image sums kept by `MetricAccumulator`:
per_image (each metric on each image, then the mean over images) and pooled (every valid pixel of every image in
one pool: rms = sqrt(total squared error / total valid pixels)).

The metric definitions and the accumulator that applies them per protocol live together so that each
metric is defined in exactly one place and reads beside the aggregation that uses it.

Known disagreement this module settles: DenseDepth's published `evaluate` pools all pixels but calls
`compute_errors(predictions, ground_truth)` with the arguments swapped, so its rel divides by the prediction (its
issue #98); here rel always divides by the ground truth. Crops are half-open `[r0:r1, c0:c1]` on the NYU frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from kornia.filters import sobel

from depthcore.checks import check_choice, check_same_shape
from depthcore.nyu import FRAME_SHAPE, MAX_DEPTH, MIN_DEPTH

DEPTH_KEYS = ("delta1", "delta2", "delta3", "rel", "sq_rel", "rms", "rmse_log", "log10", "silog")
MAP_KEYS = ("mssim", "mssim_255", "edge_f1")
METRIC_KEYS = (*DEPTH_KEYS, *MAP_KEYS)
#: Higher is better for these; lower for the other metrics.
HIGHER_IS_BETTER = ("delta1", "delta2", "delta3", "mssim", "mssim_255", "edge_f1", "edge_f1_pooled")
DELTA_BASE = 1.25
SSIM_DATA_RANGE = MAX_DEPTH  # m: this project's mSSIM
SSIM_DATA_RANGE_255 = 255.0  # pytorch_msssim's default, the report's mSSIM
SSIM_WINDOW, SSIM_SIGMA, SSIM_K = 11, 1.5, (0.01, 0.03)  # pytorch_msssim's defaults
GT_KINDS = ("depths", "rawDepths")
AGGREGATES = ("per_image", "pooled")
_SUM_KEYS = ("count", "delta1", "delta2", "delta3", "rel", "sq_rel", "sq", "log10", "dlog", "dlog2")


def _as_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Any array or tensor -> float64 CPU tensor of the same shape."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(device="cpu", dtype=torch.float64)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))


def _check_finite(x: torch.Tensor, name: str) -> None:
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(f"expected finite {name}, got {bad} non-finite of {x.numel()}")


def _valid_pixels(
    pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same-shape float64 pred, gt (and bool mask) -> 1-D (N,) pred and gt at the valid pixels.

    Valid: finite gt > 0 (zeros are missing readings, not errors), and the mask where given.
    """
    check_same_shape("pred", pred.shape, "gt", gt.shape)
    valid = torch.isfinite(gt) & (gt > 0)
    if mask is not None:
        check_same_shape("pred", pred.shape, "mask", mask.shape)
        valid &= mask
    count = int(valid.sum())
    if count == 0:
        raise ValueError(f"expected at least one valid pixel (mask & finite gt > 0), got 0 of {gt.numel()}")
    pred, gt = pred[valid], gt[valid]
    _check_finite(pred, "predictions at valid pixels")
    non_positive = int((pred <= 0).sum())
    if non_positive:
        raise ValueError(f"expected predictions > 0, got {non_positive} <= 0 of {count} valid pixels")
    return pred, gt


def _error_sums(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, float]:
    """(N,) valid pred, gt -> the sums every depth metric is a function of (see `_errors_from_sums`)."""
    ratio = torch.maximum(gt / pred, pred / gt)
    dlog = torch.log(pred) - torch.log(gt)
    sums = {"count": float(pred.numel())}
    for k in (1, 2, 3):
        sums[f"delta{k}"] = float((ratio < DELTA_BASE**k).sum())
    sums["rel"] = float(((gt - pred).abs() / gt).sum())
    sums["sq_rel"] = float(((gt - pred) ** 2 / gt).sum())
    sums["sq"] = float(((gt - pred) ** 2).sum())
    sums["log10"] = float((torch.log10(gt) - torch.log10(pred)).abs().sum())
    sums["dlog"] = float(dlog.sum())
    sums["dlog2"] = float((dlog**2).sum())
    return sums


def _errors_from_sums(sums: dict[str, float]) -> dict[str, float]:
    """Sums from `_error_sums` (one image's, or added over images) -> the depth metrics of DEPTH_KEYS."""
    n = sums["count"]
    errors = {key: sums[key] / n for key in ("delta1", "delta2", "delta3", "rel", "sq_rel", "log10")}
    errors["rms"] = math.sqrt(sums["sq"] / n)
    errors["rmse_log"] = math.sqrt(sums["dlog2"] / n)
    variance = max(sums["dlog2"] / n - (sums["dlog"] / n) ** 2, 0.0)  # >= 0 but for rounding
    errors["silog"] = 100 * math.sqrt(variance)
    return {key: errors[key] for key in DEPTH_KEYS}


def depth_errors(
    pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray | None = None
) -> dict[str, float]:
    """The DEPTH_KEYS metrics pooled over the valid pixels of same-shape maps (any shape), metres.

    Valid pixels: finite gt > 0, and `mask` (bool, same shape) where given. Raises ValueError on shape mismatch,
    no valid pixel, and non-finite or non-positive predictions at valid pixels.
    """
    mask_t = None if mask is None else _as_tensor(mask).bool()
    return _errors_from_sums(_error_sums(*_valid_pixels(_as_tensor(pred), _as_tensor(gt), mask_t)))


def _check_maps(pred: torch.Tensor, gt: torch.Tensor) -> None:
    check_same_shape("pred", pred.shape, "gt", gt.shape)
    if pred.ndim != 2:
        raise ValueError(f"expected (H, W) depth maps, got shape {tuple(pred.shape)}")
    _check_finite(pred, "predictions")
    _check_finite(gt, "ground truth")


def ssim_metric(
    pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray, data_range: float = SSIM_DATA_RANGE
) -> float:
    """Mean SSIM of one pair of (H, W) depth maps in metres with `data_range`: C1 = (0.01 data_range)^2 and
    C2 = (0.03 data_range)^2 (pytorch_msssim's definition; see the module docstring)."""
    pred_t, gt_t = _as_tensor(pred), _as_tensor(gt)
    _check_maps(pred_t, gt_t)
    return float(_ssim(pred_t[None], gt_t[None], (data_range,))[0, 0])


def _ssim(pred: torch.Tensor, gt: torch.Tensor, data_ranges: tuple[float, ...]) -> torch.Tensor:
    """(B, H, W) pred, gt -> (B, len(data_ranges)) mean SSIM of each pair, one column per data range, in float32
    (6x faster convolutions on the CPU than float64, ~1e-7 relative error).

    The local means, variances and covariance (Gaussian-weighted, valid convolution) do not depend on the data
    range, so they are computed once: (B, 5, H - 10, W - 10) after the separable blur.
    """
    if min(pred.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"expected maps of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {tuple(pred.shape)}")
    pred, gt = pred.float(), gt.float()
    coords = torch.arange(SSIM_WINDOW, dtype=torch.float64) - SSIM_WINDOW // 2
    window = torch.exp(-(coords**2) / (2 * SSIM_SIGMA**2))
    window = (window / window.sum()).to(pred.dtype)
    # (B, 5, H, W), stored channels-last: PyTorch's CPU depthwise convolution is about ten times faster on that layout
    # than on contiguous maps, with the same values (benchmarks/evaluate.py)
    maps = torch.stack([pred, gt, pred * pred, gt * gt, pred * gt], dim=1).contiguous(memory_format=torch.channels_last)
    maps = F.conv2d(maps, window.view(1, 1, -1, 1).expand(5, 1, -1, 1), groups=5)  # blur down the rows
    mu_p, mu_g, e_pp, e_gg, e_pg = F.conv2d(maps, window.view(1, 1, 1, -1).expand(5, 1, 1, -1), groups=5).unbind(1)
    var_p, var_g, cov = e_pp - mu_p**2, e_gg - mu_g**2, e_pg - mu_p * mu_g
    columns = []
    for data_range in data_ranges:
        c1, c2 = (SSIM_K[0] * data_range) ** 2, (SSIM_K[1] * data_range) ** 2
        ssim_map = (2 * mu_p * mu_g + c1) / (mu_p**2 + mu_g**2 + c1) * (2 * cov + c2) / (var_p + var_g + c2)
        columns.append(ssim_map.flatten(1).mean(1))  # (B,)
    return torch.stack(columns, dim=1)


def _edge_counts(pred: torch.Tensor, gt: torch.Tensor, threshold: float) -> torch.Tensor:
    """(B, H, W) pred, gt in metres -> (B, 3) int64 counts per image: true-positive, predicted and ground-truth edge
    pixels, with Sobel in float32; see `edge_f1`."""
    edges = sobel(torch.stack([pred, gt], dim=1).float()) > threshold  # (B, 2, H, W) bool: predicted, ground truth
    pred_edges, gt_edges = edges.unbind(1)
    return torch.stack([(pred_edges & gt_edges).flatten(1).sum(1), pred_edges.flatten(1).sum(1),
                        gt_edges.flatten(1).sum(1)], dim=1)  # fmt: skip


def _f1(true_positive: int, predicted: int, actual: int) -> float | None:
    """F1 = 2 TP / (predicted + actual) = 2 P R / (P + R); None when the ground truth has no edge pixel."""
    return None if actual == 0 else 2 * true_positive / (predicted + actual)


def edge_f1(
    pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray, threshold: float = 0.2
) -> float | None:
    """F1 of predicted edge pixels against ground-truth edge pixels of (H, W) depth maps in metres.

    Edge pixels: magnitude of `kornia.filters.sobel(depth)` (kornia's defaults, depth in metres) over `threshold`;
    a step of D m gives D / 2, so 0.2 marks steps over 0.4 m. F1 = 2 TP / (#pred edges + #gt edges), and None when
    the ground truth has no edge pixel (there is nothing to find, so no F1). A constant prediction scores 0.
    """
    pred_t, gt_t = _as_tensor(pred), _as_tensor(gt)
    _check_maps(pred_t, gt_t)
    return _f1(*_edge_counts(pred_t[None], gt_t[None], threshold)[0].tolist())


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol as data; what `MetricAccumulator` does to each image."""

    name: str  # key in PROTOCOLS
    description: str  # whose protocol it is, one line; depthcore.report states the fields below in words
    gt: str  # ground truth the depth metrics use: "depths" (filled) or "rawDepths" (0 = no reading)
    crop: tuple[int, int, int, int] | None  # half-open (r0, r1, c0, c1) on the NYU frame; None = full frame
    aggregate: str  # aggregation of the depth errors over images: "per_image" or "pooled"
    flip_average: bool  # the caller averages the prediction with the un-flipped prediction of the flipped image
    valid_range: tuple[float, float] | None  # a gt pixel counts only if low < gt < high (on top of gt > 0)
    clamp: tuple[float, float] | None  # the prediction is clamped to [low, high] before every metric
    published_split: str  # the NYUv2 split (data.split.method) its published numbers were measured on

    def __post_init__(self) -> None:
        check_choice("gt", self.gt, GT_KINDS)
        check_choice("aggregate", self.aggregate, AGGREGATES)
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
        description="the re-implementation report (Wang, Chhabra, Safdar, U. Michigan)",
        gt="depths",
        crop=None,
        aggregate="per_image",
        flip_average=False,
        valid_range=None,
        clamp=None,
        published_split="random",
    ),
    "densedepth": Protocol(
        name="densedepth",
        description="the DenseDepth paper and its released evaluation (Alhashim & Wonka, arXiv 1812.11941)",
        gt="depths",
        crop=(20, 460, 24, 616),
        aggregate="pooled",
        flip_average=True,
        valid_range=None,
        clamp=(MIN_DEPTH, MAX_DEPTH),  # the paper's predict() clips DepthNorm outputs to [10, 1000] cm
        published_split="official",
    ),
    "eigen": Protocol(
        name="eigen",
        description="Eigen's crop on raw depth, as BTS, AdaBins and ZoeDepth evaluate NYUv2",
        gt="rawDepths",
        crop=(45, 471, 41, 601),
        aggregate="per_image",
        flip_average=False,
        valid_range=(1e-3, MAX_DEPTH),
        clamp=(1e-3, MAX_DEPTH),
        published_split="official",
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

    `update(pred_m, depth, raw_depth=None)` per batch; `result()` aggregates the depth errors as the protocol says,
    `result("pooled")` / `result("per_image")` either way; `rows()` gives one dict per image for a CSV.

    Per image: the prediction is clamped (protocol.clamp); the depth errors compare it with the protocol's ground
    truth (`depth` or `raw_depth`) inside the crop, at valid pixels (gt > 0 and inside protocol.valid_range).
    mSSIM and edge F1 need whole maps, so they always compare it with the filled `depth` over the same crop, for every
    protocol (raw depth has holes that would read as edges and structure), and are per-image means under every
    aggregation (see the module docstring).
    """

    def __init__(self, protocol: Protocol | str, edge_threshold: float = 0.2) -> None:
        if isinstance(protocol, str):
            protocol = PROTOCOLS[check_choice("protocol", protocol, PROTOCOLS)]
        self.protocol, self.edge_threshold = protocol, edge_threshold
        self._rows: list[dict[str, float | None]] = []
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
        check_same_shape("pred_m", pred.shape, "depth", filled.shape)
        _check_finite(pred, "predictions")
        if self.protocol.gt == "rawDepths":
            if raw_depth is None:
                raise ValueError(f"expected raw_depth for protocol {self.protocol.name!r}, got None")
            gt = _as_batch(raw_depth, "raw_depth")
            check_same_shape("pred_m", pred.shape, "raw_depth", gt.shape)
        else:
            gt = filled
        self._add_batch(pred, gt, filled)

    def _add_batch(self, pred: torch.Tensor, gt: torch.Tensor, filled: torch.Tensor) -> None:
        """(B, H, W) prediction, protocol ground truth and filled ground truth -> B rows and the running totals."""
        protocol = self.protocol
        if protocol.clamp is not None:
            pred = pred.clamp(*protocol.clamp)
        pred, gt, filled = protocol.apply_crop(pred), protocol.apply_crop(gt), protocol.apply_crop(filled)
        mask = None
        if protocol.valid_range is not None:
            low, high = protocol.valid_range
            mask = (gt > low) & (gt < high)  # (B, h, w)
        ssims = _ssim(pred, filled, (SSIM_DATA_RANGE, SSIM_DATA_RANGE_255)).tolist()  # (B, 2)
        edges = _edge_counts(pred, filled, self.edge_threshold).tolist()  # (B, 3)
        for i in range(len(pred)):
            sums = _error_sums(*_valid_pixels(pred[i], gt[i], None if mask is None else mask[i]))
            tp, predicted, actual = edges[i]
            self._rows.append({
                "image": len(self._rows),
                **_errors_from_sums(sums),
                "mssim": ssims[i][0],
                "mssim_255": ssims[i][1],
                "edge_f1": _f1(tp, predicted, actual),
                "num_pixels": int(sums["count"]),
                "gt_edge_pixels": actual,
            })  # fmt: skip
            for key, value in {**sums, "tp": tp, "pred_edges": predicted, "gt_edges": actual}.items():
                self._totals[key] = self._totals.get(key, 0.0) + value

    def result(self, aggregate: str | None = None) -> dict[str, float | int | None]:
        """Every metric over the images so far: the depth errors aggregated as `aggregate` says (default: the
        protocol's), mssim, mssim_255 and edge_f1 as per-image means; edge_f1_pooled; and the counts num_images,
        edge_f1_images (images with ground-truth edges; edge_f1 and edge_f1_pooled are None when 0) and num_pixels
        (valid pixels of the depth errors)."""
        aggregate = check_choice("aggregate", aggregate or self.protocol.aggregate, AGGREGATES)
        if not self._rows:
            raise ValueError("expected at least one update() before result(), got 0 images")
        if aggregate == "pooled":
            metrics: dict[str, float | int | None] = dict(_errors_from_sums(self._totals))
        else:
            metrics = {key: _mean([row[key] for row in self._rows]) for key in DEPTH_KEYS}
        counted = [row["edge_f1"] for row in self._rows if row["edge_f1"] is not None]
        metrics["mssim"] = _mean([row["mssim"] for row in self._rows])
        metrics["mssim_255"] = _mean([row["mssim_255"] for row in self._rows])
        metrics["edge_f1"] = _mean(counted) if counted else None
        totals = self._totals
        metrics["edge_f1_pooled"] = _f1(int(totals["tp"]), int(totals["pred_edges"]), int(totals["gt_edges"]))
        metrics.update(num_images=len(self._rows), edge_f1_images=len(counted), num_pixels=int(totals["count"]))
        return metrics

    def rows(self) -> list[dict[str, float | None]]:
        """One dict per image, in update order: image (0-based), METRIC_KEYS (edge_f1 None without ground-truth
        edges), num_pixels and gt_edge_pixels."""
        return [dict(row) for row in self._rows]


def _mean(values: list) -> float:
    return math.fsum(values) / len(values)
