"""Pictures for people, rendered with matplotlib's Agg backend to (h, w, 3) uint8 arrays.

- `depth_grid`: image | ground truth | prediction (| error) per row, colour bars in metres, at most
  MAX_GRID_WIDTH pixels wide; `prediction_grid` draws it for a dataset's first items and a predictor (the training
  and evaluation grids).
- `loss_curves`: train and validation loss per epoch.
- `depth_colormap`: one depth map coloured at its own size, with a small colour bar in metres drawn in a corner
  (`depthcore predict`).
- `colorize`: the plain colour mapping the others build on.

Figures are built on `matplotlib.figure.Figure` with an Agg canvas, never through pyplot, so nothing here touches
pyplot's global state or the user's backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, MaxNLocator

from depthcore.checks import check_same_shape, check_shape

DEPTH_CMAP = "viridis"
ERROR_CMAP = "YlOrRd"  # light yellow at 0, so an error of 0 differs from black (no value) and the white page
DPI = 100  # figure inches -> pixels
#: Half the colour range (m) given to a map whose finite values are all equal, so it gets the middle colour.
FLAT_HALF_RANGE = 0.5

# depth_grid layout, in pixels
COLUMN_TITLES = ("image", "ground truth", "prediction")
ERROR_TITLE = "|error|"
MAX_GRID_WIDTH = 1600  # the whole grid, whatever N, H and W
MIN_PANEL_WIDTH = 200  # smaller images are enlarged to this, so titles and colour bars fit beside them
MAX_PANEL_HEIGHT = 480  # tall images are shrunk to this
COLORBAR_WIDTH = 80  # a colour bar with its tick labels and axis label
TITLE_HEIGHT = 30  # the column titles above the first row
GRID_MARGIN = 20  # padding around the figure and between rows

# loss_curves size, in pixels
LOSS_FIGSIZE = (800, 450)

# depth_colormap's colour bar, in pixels of the depth image
LEGEND_WIDTH_FRACTION = 0.35  # of the image width, clamped to the two bounds below
LEGEND_MIN_WIDTH, LEGEND_MAX_WIDTH = 160, 360
LEGEND_ASPECT = 0.32  # height / width
LEGEND_MARGIN = 4  # from the image's edges
LEGEND_TICKS = 3  # intervals between labelled ticks, at most (MaxNLocator's nbins)
LEGEND_FONT_FRACTION = 0.2  # font size in pixels, as a fraction of the legend's height
COLORIZE_BLOCK = 1 << 20  # pixels coloured at a time (`colorize`)

def value_range(*maps: np.ndarray) -> tuple[float, float]:
    """(min, max) over the finite values of all `maps` (metres); (0, 1) if none is finite; widened by
    FLAT_HALF_RANGE either side if they are all equal, so the range is never empty."""
    finite = np.concatenate([m[np.isfinite(m)].ravel() for m in maps])
    if finite.size == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    if low == high:
        return low - FLAT_HALF_RANGE, high + FLAT_HALF_RANGE
    return low, high


def colorize(depth: np.ndarray, vmin: float, vmax: float, cmap: str = DEPTH_CMAP) -> np.ndarray:
    """depth (H, W) -> (H, W, 3) uint8: vmin..vmax mapped onto `cmap` (clipped outside); non-finite pixels black.

    Coloured COLORIZE_BLOCK pixels at a time, so a 48 MP map needs 32 MiB of float64 colours, not 1.5 GB."""
    if not vmax > vmin:
        raise ValueError(f"expected vmax > vmin, got vmin={vmin!r}, vmax={vmax!r}")
    image = np.empty((*depth.shape, 3), np.uint8)
    rows = max(1, COLORIZE_BLOCK // max(depth.shape[-1], 1))
    for top in range(0, depth.shape[0], rows):
        image[top : top + rows] = _colorize_rows(depth[top : top + rows], vmin, vmax, cmap)
    return image


def _colorize_rows(depth: np.ndarray, vmin: float, vmax: float, cmap: str) -> np.ndarray:
    finite = np.isfinite(depth)
    scaled = np.clip((np.where(finite, depth, vmin) - vmin) / (vmax - vmin), 0.0, 1.0)
    rgb = colormaps[cmap](scaled)[..., :3]  # (H, W, 3) float in [0, 1]
    rgb[~finite] = 0.0
    return (rgb * 255).round().astype(np.uint8)


def render(fig: Figure) -> np.ndarray:
    """Draw `fig` with Agg -> (h, w, 3) uint8, h and w its size in pixels (figsize * dpi)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def depth_grid(rgb: np.ndarray, gt: np.ndarray, pred: np.ndarray, with_error: bool = False) -> np.ndarray:
    """rgb (N, H, W, 3) uint8, gt and pred (N, H, W) metres -> (h, w, 3) uint8, w <= MAX_GRID_WIDTH.

    One row per image; columns "image", "ground truth", "prediction" and with `with_error` "|error|" = |pred - gt|.
    Ground truth and prediction of a row share one colour scale, the `value_range` of that row's two maps, with one
    colour bar in metres; the error column has its own bar from 0 to the row's largest finite error. Non-finite
    pixels are black. Panels are scaled (same factor for every panel) so the grid fits MAX_GRID_WIDTH.
    """
    check_shape("rgb", rgb.shape, ("N", "H", "W", 3))
    check_same_shape("gt", gt.shape, "rgb's (N, H, W)", rgb.shape[:3])
    check_same_shape("gt", gt.shape, "pred", pred.shape)
    if rgb.dtype != np.uint8:
        raise ValueError(f"expected rgb of dtype uint8, got {rgb.dtype}")
    if len(rgb) == 0:
        raise ValueError("expected at least one image, got N = 0")
    n, h, w = gt.shape
    titles = COLUMN_TITLES + ((ERROR_TITLE,) if with_error else ())
    bars = 2 if with_error else 1
    panel_w = _panel_width(h, w, len(titles), bars)
    panel_h = panel_w * h / w
    fig_w = len(titles) * panel_w + bars * COLORBAR_WIDTH + GRID_MARGIN
    fig_h = n * (panel_h + GRID_MARGIN) + TITLE_HEIGHT
    fig = Figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI, layout="constrained")
    axes = fig.subplots(n, len(titles), squeeze=False)
    for col, title in enumerate(titles):
        axes[0, col].set_title(title)
    for i, row in enumerate(axes):
        vmin, vmax = value_range(gt[i], pred[i])
        panels = [rgb[i], colorize(gt[i], vmin, vmax), colorize(pred[i], vmin, vmax)]
        for ax, panel in zip(row, panels):
            _show(ax, panel)
        _colorbar(fig, row[1:3], vmin, vmax, DEPTH_CMAP, "depth (m)")
        if with_error:
            error = np.abs(pred[i] - gt[i])
            finite = error[np.isfinite(error)]
            emax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
            _show(row[3], colorize(error, 0.0, emax, ERROR_CMAP))
            _colorbar(fig, row[3:], 0.0, emax, ERROR_CMAP, "error (m)")
    return render(fig)


def prediction_grid(
    predict: Callable[[torch.Tensor], torch.Tensor], dataset: Any, num: int, with_error: bool = False
) -> np.ndarray:
    """The first `num` items of `dataset` (dicts of `rgb` (3, H, W) uint8, `depth` (1, H, W) metres) as a picture:
    image | ground truth | prediction (| error) per row, (h, w, 3) uint8 (`depth_grid`). `predict` maps rgb
    (N, 3, H, W) uint8 to depth (N, 1, H, W) metres (a `depthcore.inference.Predictor`)."""
    items = [dataset[i] for i in range(min(num, len(dataset)))]
    rgb = torch.stack([item["rgb"] for item in items])  # (N, 3, H, W) uint8
    pred = predict(rgb)[:, 0].numpy()  # (N, H, W) metres
    gt = torch.stack([item["depth"][0] for item in items]).numpy()  # (N, H, W) metres
    return depth_grid(rgb.permute(0, 2, 3, 1).numpy(), gt, pred, with_error)


def _panel_width(h: int, w: int, columns: int, bars: int) -> float:
    """Pixels per panel: the image's own width, enlarged to MIN_PANEL_WIDTH, shrunk to fit MAX_PANEL_HEIGHT and
    MAX_GRID_WIDTH (the latter wins, so the grid is never wider than MAX_GRID_WIDTH)."""
    fit_width = (MAX_GRID_WIDTH - bars * COLORBAR_WIDTH - GRID_MARGIN) / columns
    return min(max(w, MIN_PANEL_WIDTH), MAX_PANEL_HEIGHT * w / h, fit_width)


def _show(ax: Any, image: np.ndarray) -> None:
    """An (H, W, 3) uint8 picture in `ax` without axis ticks or frame."""
    ax.imshow(image, interpolation="antialiased")
    ax.set_axis_off()


def _colorbar(fig: Figure, axes: Sequence[Any], vmin: float, vmax: float, cmap: str, label: str) -> None:
    """A vertical colour bar for vmin..vmax on `cmap` to the right of `axes`."""
    bar = fig.colorbar(ScalarMappable(Normalize(vmin, vmax), cmap), ax=list(axes), fraction=0.05, pad=0.02)
    bar.set_label(label)


def loss_curves(history: Sequence[dict[str, Any]]) -> np.ndarray:
    """history: one dict per epoch with `epoch`, `train_loss`, `val_loss` -> (h, w, 3) uint8 line chart of both
    losses per epoch, LOSS_FIGSIZE pixels."""
    if len(history) == 0:
        raise ValueError("expected a history of at least one epoch, got none")
    keys = ("epoch", "train_loss", "val_loss")
    for record in history:
        if not all(key in record for key in keys):
            raise ValueError(f"expected each history record to have keys {', '.join(keys)}, got {sorted(record)}")
    epochs = [record["epoch"] for record in history]
    fig = Figure(figsize=(LOSS_FIGSIZE[0] / DPI, LOSS_FIGSIZE[1] / DPI), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    ax.plot(epochs, [record["train_loss"] for record in history], marker="o", label="train")
    ax.plot(epochs, [record["val_loss"] for record in history], marker="o", label="validation")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="loss", title="loss per epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    return render(fig)


def depth_colormap(depth: np.ndarray, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """depth (H, W) metres -> (H, W, 3) uint8 on DEPTH_CMAP, with a colour bar in metres in the bottom-right corner.

    vmin / vmax default to the `value_range` of the map; non-finite pixels are black. The colour bar sits on an
    opaque white box LEGEND_WIDTH_FRACTION of the image wide (within LEGEND_MIN_WIDTH..LEGEND_MAX_WIDTH pixels);
    an image too small to hold it gets none.
    """
    check_shape("depth", depth.shape, ("H", "W"))
    low, high = value_range(depth)
    vmin = low if vmin is None else vmin
    vmax = high if vmax is None else vmax
    image = colorize(depth, vmin, vmax)
    h, w = depth.shape
    legend_w = round(min(max(w * LEGEND_WIDTH_FRACTION, LEGEND_MIN_WIDTH), LEGEND_MAX_WIDTH))
    legend_h = round(legend_w * LEGEND_ASPECT)
    if legend_w + 2 * LEGEND_MARGIN > w or legend_h + 2 * LEGEND_MARGIN > h:
        return image
    top, left = h - LEGEND_MARGIN - legend_h, w - LEGEND_MARGIN - legend_w
    image[top:top + legend_h, left:left + legend_w] = _legend(legend_w, legend_h, vmin, vmax)
    return image


def _legend(width: int, height: int, vmin: float, vmax: float) -> np.ndarray:
    """A horizontal colour bar vmin..vmax with a few ticks and "depth (m)" on white -> (height, width, 3) uint8."""
    font = LEGEND_FONT_FRACTION * height * 72 / DPI  # points
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    # figure fractions: the label on top, the bar in the middle, tick labels below
    cax = fig.add_axes((0.1, 0.42, 0.8, 0.22))  # room at both ends for half a tick label
    bar = fig.colorbar(ScalarMappable(Normalize(vmin, vmax), DEPTH_CMAP), cax=cax, orientation="horizontal")
    bar.locator = MaxNLocator(LEGEND_TICKS)
    bar.formatter = FormatStrFormatter("%g")  # 2, 2.5, 10: no padded decimals
    bar.update_ticks()
    cax.tick_params(labelsize=font, length=font / 3, pad=1)
    cax.set_title("depth (m)", fontsize=font, pad=2)
    return render(fig)
