"""`depthcore evaluate --rgbd DIR`: a model on a folder of real RGB-D pairs, as it comes and after per-image alignment.

    depthcore evaluate --rgbd DIR [--model models/model.pt] [--out rgbd_eval.json] [--min-depth 0.1]
                       [--max-depth 10] [--device auto] [--precision auto]

(`depthcore.cli` parses the command line; --model is a depthcore model file or the authors' Keras .h5, as for
`depthcore predict`.) No DVC stage or params.yaml is involved.

The folder, in the layout `depthcore predict` writes (not recursive, hidden files skipped):

    <name>.png, <name>.jpg or .jpeg  the colour image, read as `depthcore predict` reads it
    <name>_depth.png                 its depth: 16-bit greyscale PNG in millimetres, 0 = no measurement, same size
    intrinsics.json                  optional: the camera as a JSON object; recorded in the info file, not used

A ground-truth pixel is valid where min_depth < depth < max_depth (--min-depth, --max-depth; open at both ends, as
the valid range of the protocols in `depthcore.metrics`). Each image is predicted at its own size
(`depthcore.frame.predict_images`, as `depthcore predict` does) and compared four ways, all maps scale * p + shift,
with p the prediction and y the ground truth in metres, medians and fits over the image's valid pixels:

- model: p as it comes (scale 1, shift 0);
- median_scaled: p * median(y) / median(p), the protocol of Monodepth2 (Godard et al., "Digging into
  self-supervised monocular depth estimation", ICCV 2019) for predictions of unknown scale;
- ls_aligned: s p + t, (s, t) the least-squares fit of p to y: MiDaS's scale-and-shift alignment (Ranftl et al.,
  "Towards robust monocular depth estimation", TPAMI 2020), fitted here in depth, not in inverse depth as MiDaS does.
  MiDaS fits in inverse depth because its networks predict relative inverse depth, known up to a scale and a shift
  of inverse depth: the fit undoes the ambiguity where it lives. This model predicts metric depth; on a camera
  other than the Kinect it learnt from, its error is first a factor on depth (the focal length and the size of the
  scene change how far things look), plus a bias. A fit in depth removes exactly that, and minimises the squared
  depth error that rms measures; a fit in inverse depth would bend the depth map (p -> 1 / (s / p + t)) and weigh the
  nearest pixels the most;
- constant: median(y) everywhere (scale 0), the image's own ground-truth median: a baseline that knows the scene's
  typical depth but nothing of its layout. A model that does not beat it after median scaling has learnt no layout.

Every map is clamped to [min_depth, max_depth] before the metrics, as Monodepth2 and the Eigen protocol clamp
predictions. The metrics are those of `depthcore.metrics`, through its `MetricAccumulator` (`rgbd_protocol`): the
nine depth errors over the valid pixels, and mSSIM and edge F1 over the whole map against the ground truth with each
pixel that is not valid filled from its nearest valid pixel (`fill_holes`: whole-map metrics need a whole map, as
NYU's filled depths serve them on NYU). Both aggregations: per_image (each image's errors, then the mean over
images, as Monodepth2 and MiDaS report) and pooled (every valid pixel of every image in one pool).

Outputs, each written atomically (--out FILE.json):

    FILE.json            numbers only: {per_image | pooled: {model | median_scaled | ls_aligned | constant: metrics}},
                         the metrics in metrics/eval.json's order (delta1, rel, rms first, the counts last)
    FILE_per_image.csv   one row per image and method: scale and shift, the metrics, the valid pixels
    FILE_info.json       the folder, the model, the runtime, the settings, intrinsics.json, the pairs evaluated and
                         the pairs skipped with the reason

A pair that cannot be evaluated (its depth PNG missing or not 16-bit, sizes that differ, no valid pixel, smaller than
mSSIM's window, an unreadable file) is named and skipped, the others complete, a summary is printed, and the command
fails (status 2) naming the pairs skipped. A folder without pairs, or problems found before any work starts (a
missing folder or model, a bad intrinsics.json, an unwritable --out), stop it with one line, status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.ndimage import distance_transform_edt

from depthcore.checks import check_same_shape
from depthcore.codec import decode_image, mm_to_metres
from depthcore.device import Runtime
from depthcore.errors import DepthcoreError
from depthcore.files import atomic_path
from depthcore.frame import predict_images
from depthcore.inference import Predictor, load_predictor
from depthcore.metrics import (
    AGGREGATES,
    SSIM_DATA_RANGE,
    SSIM_DATA_RANGE_255,
    SSIM_WINDOW,
    MetricAccumulator,
    Protocol,
)
from depthcore.nyu import MAX_DEPTH, MIN_DEPTH
from depthcore.predict import COLOR_SUFFIX, DEPTH_SUFFIX, check_writable, read_rgb
from depthcore.progress import bar
from depthcore.report import metrics_record, write_json

SUMMARY = "evaluate a model on a folder of real RGB-D pairs (<name>.png, <name>_depth.png), raw and aligned"
RGB_SUFFIXES = (".jpg", ".jpeg", ".png")
NOT_RGB = (DEPTH_SUFFIX, COLOR_SUFFIX)  # names `depthcore predict` writes: depth maps, not colour images
INTRINSICS_FILE = "intrinsics.json"
DEFAULT_OUT = Path("rgbd_eval.json")
EDGE_THRESHOLD = 0.2  # edge F1 on depth steps over 0.4 m: the report's threshold, eval.edge_threshold's default
#: Each comparison: what its map is, scale * p + shift (module docstring).
METHODS = {
    "model": "the prediction as it comes",
    "median_scaled": "the prediction times median(gt) / median(pred) (Monodepth2)",
    "ls_aligned": "s * pred + t, (s, t) least squares in depth (MiDaS's alignment, which fits inverse depth)",
    "constant": "the image's ground-truth median everywhere",
}


@dataclass(frozen=True)
class Pair:
    """One image of the folder and its ground truth."""

    name: str  # the image's file name
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 metres, 0 = no measurement
    valid: np.ndarray  # (H, W) bool: inside the valid range


def find_images(folder: Path) -> list[Path]:
    """The colour images of an RGB-D folder, sorted by name; `DepthcoreError` for no folder or no image."""
    if not folder.is_dir():
        raise DepthcoreError(f"--rgbd {folder}: no such folder")
    images = sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in RGB_SUFFIXES
        and not p.name.lower().endswith(NOT_RGB)
    )
    if not images:
        raise DepthcoreError(f"no RGB-D pairs in {folder}: expected <name>.png or <name>.jpg beside "
                             f"<name>{DEPTH_SUFFIX} (16-bit, millimetres)")
    stems = [p.stem for p in images]
    twins = sorted({stem for stem in stems if stems.count(stem) > 1})
    if twins:
        raise DepthcoreError(f"{folder}: images {', '.join(twins)} come in two formats but share one depth PNG each: "
                             "keep one image per name")
    return images


def read_intrinsics(folder: Path) -> dict[str, Any] | None:
    """The JSON object in the folder's intrinsics.json, None without one; `DepthcoreError` if it is not one."""
    path = folder / INTRINSICS_FILE
    if not path.is_file():
        return None
    try:
        intrinsics = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DepthcoreError(f"{path}: cannot read it as JSON ({err}); fix it or remove it (it is optional)") from None
    if not isinstance(intrinsics, dict):
        raise DepthcoreError(f"{path}: expected a JSON object, got a {type(intrinsics).__name__}; fix it or remove it")
    return intrinsics


def read_depth(path: Path) -> np.ndarray:
    """A 16-bit depth PNG in millimetres -> (H, W) float32 metres (0 = no measurement); `DepthcoreError` (naming
    the file) if it is missing or not 16-bit greyscale."""
    if not path.is_file():
        raise DepthcoreError(f"{path}: missing; expected the image's 16-bit depth PNG in millimetres")
    values = decode_image(path.read_bytes(), str(path))
    if values.ndim != 2 or values.dtype != np.uint16:
        kind = f"{values.dtype.itemsize * 8}-bit {'colour' if values.ndim == 3 else 'greyscale'}"
        raise DepthcoreError(f"{path}: expected a 16-bit greyscale depth PNG in millimetres, got {kind}")
    return mm_to_metres(values)


def valid_pixels(depth: np.ndarray, valid_range: tuple[float, float]) -> np.ndarray:
    """depth (H, W) metres -> (H, W) bool: low < depth < high."""
    low, high = valid_range
    return (depth > low) & (depth < high)


def read_pair(image: Path, valid_range: tuple[float, float]) -> Pair:
    """The image and its <stem>_depth.png; `DepthcoreError` naming the pair if it cannot be evaluated."""
    rgb = read_rgb(image)
    depth = read_depth(image.with_name(image.stem + DEPTH_SUFFIX))
    if depth.shape != rgb.shape[:2]:
        raise DepthcoreError(f"{image}: expected its depth PNG at its size {rgb.shape[1]}x{rgb.shape[0]} (WxH), "
                             f"got {depth.shape[1]}x{depth.shape[0]}")
    if min(depth.shape) < SSIM_WINDOW:
        raise DepthcoreError(f"{image}: expected at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels (mSSIM's window), "
                             f"got {depth.shape[1]}x{depth.shape[0]}")
    valid = valid_pixels(depth, valid_range)
    if not valid.any():
        raise DepthcoreError(f"{image}: no valid depth: expected pixels in ({valid_range[0]:g}, {valid_range[1]:g}) m, "
                             f"got none of {depth.size} ({int((depth == 0).sum())} without a measurement)")
    return Pair(image.name, rgb, depth, valid)


def median_scale(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> float:
    """median(gt) / median(pred) over the valid pixels of (H, W) maps (Monodepth2's per-image scale)."""
    check_same_shape("pred", pred.shape, "gt", gt.shape)
    check_same_shape("pred", pred.shape, "valid", valid.shape)
    return float(np.median(gt[valid]) / np.median(pred[valid]))


def fit_scale_shift(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """(s, t) minimising the sum of (s pred + t - gt)^2 over the valid pixels of (H, W) maps: least squares in
    depth (the module docstring says why not in inverse depth)."""
    check_same_shape("pred", pred.shape, "gt", gt.shape)
    check_same_shape("pred", pred.shape, "valid", valid.shape)
    p = pred[valid].astype(np.float64)
    design = np.stack([p, np.ones_like(p)], axis=1)  # (N, 2): pred, 1
    (scale, shift), *_ = np.linalg.lstsq(design, gt[valid].astype(np.float64), rcond=None)
    return float(scale), float(shift)


def alignments(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> dict[str, tuple[float, float]]:
    """(scale, shift) of each METHODS map, scale * pred + shift, for (H, W) maps and their valid pixels."""
    return {
        "model": (1.0, 0.0),
        "median_scaled": (median_scale(pred, gt, valid), 0.0),
        "ls_aligned": fit_scale_shift(pred, gt, valid),
        "constant": (0.0, float(np.median(gt[valid]))),
    }


def fill_holes(depth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """depth (H, W) with each pixel outside `valid` (H, W) taking the depth of its nearest valid pixel (Euclidean
    distance; at equal distances the one scipy's distance transform picks)."""
    check_same_shape("depth", depth.shape, "valid", valid.shape)
    nearest = distance_transform_edt(~valid, return_distances=False, return_indices=True)  # (2, H, W): row, column
    return depth[tuple(nearest)]


def rgbd_protocol(valid_range: tuple[float, float], aggregate: str) -> Protocol:
    """The protocol of an RGB-D folder: raw ground truth inside `valid_range`, every map clamped to it, whole
    images, depth errors aggregated as `aggregate` says."""
    return Protocol(
        name=f"rgbd_{aggregate}",
        description="an RGB-D folder: measured depth in the valid range, whole images",
        gt="rawDepths",
        crop=None,
        aggregate=aggregate,
        flip_average=False,
        valid_range=valid_range,
        clamp=valid_range,
        published_split="none",  # no published numbers to compare with
    )


class RgbdEvaluation:
    """The METHODS maps of every pair added, under both aggregations, and each pair's alignment."""

    def __init__(self, valid_range: tuple[float, float], edge_threshold: float = EDGE_THRESHOLD) -> None:
        self.accumulators = {
            aggregate: {method: MetricAccumulator(rgbd_protocol(valid_range, aggregate), edge_threshold)
                        for method in METHODS}
            for aggregate in AGGREGATES
        }
        self.names: list[str] = []
        self.alignments: list[dict[str, tuple[float, float]]] = []

    def add(self, pair: Pair, pred: np.ndarray) -> None:
        """pred: (H, W) metres, the prediction at the pair's size."""
        pred = pred.astype(np.float64)  # the aligned maps in float64, as the metrics compute
        alignment = alignments(pred, pair.depth, pair.valid)
        filled = fill_holes(pair.depth, pair.valid)
        for method, (scale, shift) in alignment.items():
            for by_method in self.accumulators.values():
                by_method[method].update(scale * pred + shift, filled, pair.depth)
        self.names.append(pair.name)
        self.alignments.append(alignment)

    def record(self) -> dict[str, dict[str, dict[str, float | int | None]]]:
        """Numbers only: aggregate -> method -> metrics in metrics/eval.json's order."""
        return {aggregate: metrics_record(by_method) for aggregate, by_method in self.accumulators.items()}

    def table(self) -> pd.DataFrame:
        """One row per image and method: image (file name), method, scale, shift, the metrics, num_pixels and
        gt_edge_pixels."""
        rows = {method: acc.rows() for method, acc in self.accumulators["per_image"].items()}
        table = []
        for i, name in enumerate(self.names):
            for method in METHODS:
                row = {key: value for key, value in rows[method][i].items() if key != "image"}
                scale, shift = self.alignments[i][method]
                table.append({"image": name, "method": method, "scale": scale, "shift": shift, **row})
        return pd.DataFrame(table)


def evaluate_folder(
    images: Sequence[Path], predictor: Predictor, valid_range: tuple[float, float]
) -> tuple[RgbdEvaluation, dict[str, str]]:
    """Every pair through the predictor and the METHODS, with a progress bar; a pair that cannot be evaluated is
    reported on stderr and skipped. Returns the evaluation and the skipped images' names with the reason."""
    evaluation = RgbdEvaluation(valid_range)
    skipped: dict[str, str] = {}
    with bar(total=len(images), desc="evaluate", unit="pair") as progress:
        for image in images:
            try:
                pair = read_pair(image, valid_range)
            except DepthcoreError as err:
                skipped[image.name] = str(err)
                progress.write(f"skipped {err}", file=sys.stderr)
            else:
                evaluation.add(pair, predict_images(predictor, [pair.rgb])[0])
            progress.update()
    return evaluation, skipped


def output_paths(out: Path) -> tuple[Path, Path, Path]:
    """--out FILE.json -> FILE.json, FILE_per_image.csv, FILE_info.json."""
    return out, out.with_name(f"{out.stem}_per_image.csv"), out.with_name(f"{out.stem}_info.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `depthcore evaluate` (--model, --device and --precision come from `depthcore.cli`)."""
    parser.add_argument("--rgbd", type=Path, required=True, metavar="DIR",
                        help=f"a folder of <name>.png or .jpg beside <name>{DEPTH_SUFFIX} (16-bit, millimetres, "
                             f"0 = no measurement), and optionally {INTRINSICS_FILE}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="FILE.json",
                        help=f"the metrics file to write; FILE_per_image.csv and FILE_info.json go beside it "
                             f"(default: {DEFAULT_OUT})")
    parser.add_argument("--min-depth", type=positive_float, default=MIN_DEPTH, metavar="M",
                        help=f"ground truth counts above this many metres (default: {MIN_DEPTH:g})")
    parser.add_argument("--max-depth", type=positive_float, default=MAX_DEPTH, metavar="M",
                        help=f"ground truth counts below this many metres (default: {MAX_DEPTH:g})")


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def run(args: argparse.Namespace, runtime: Runtime) -> None:
    """`depthcore evaluate --rgbd` with parsed arguments (`depthcore.cli`): check what can be checked, evaluate,
    write the outputs of the pairs evaluated, and fail naming the pairs skipped."""
    start = time.perf_counter()
    if args.min_depth >= args.max_depth:
        raise DepthcoreError(f"expected --min-depth below --max-depth, got {args.min_depth:g} and {args.max_depth:g}")
    valid_range = (args.min_depth, args.max_depth)
    images = find_images(args.rgbd)
    intrinsics = read_intrinsics(args.rgbd)
    out, csv, info = output_paths(args.out)
    check_writable(out.parent)
    predictor = load_predictor(args.model, runtime)
    evaluation, skipped = evaluate_folder(images, predictor, valid_range)
    print(f"evaluated {len(evaluation.names)} of {len(images)} pairs in {time.perf_counter() - start:.1f} s on "
          f"{predictor.runtime}" + (", per image:" if evaluation.names else ""))
    if evaluation.names:
        record = evaluation.record()
        with atomic_path(csv) as tmp:
            evaluation.table().to_csv(tmp, index=False, float_format="%.6f")
        write_json(info, {
            "rgbd": str(args.rgbd), "model": str(args.model), "device": str(runtime.device),
            "precision": runtime.precision, "valid_range_m": list(valid_range), "edge_threshold": EDGE_THRESHOLD,
            "ssim_data_range": {"mssim": SSIM_DATA_RANGE, "mssim_255": SSIM_DATA_RANGE_255}, "methods": METHODS,
            "intrinsics": intrinsics, "evaluated": evaluation.names, "skipped": skipped,
        })  # fmt: skip
        write_json(out, record)
        print(summary(record["per_image"]))
        print(f"wrote {out}, {csv}, {info}")
    if skipped:
        raise DepthcoreError(f"{len(skipped)} of {len(images)} pairs skipped: {', '.join(skipped)}")


def summary(record: dict[str, dict[str, float | int | None]]) -> str:
    """The headline figures of each method, a line each, from one aggregation of a record."""
    width = max(map(len, record))
    return "\n".join(f"  {method:<{width}}  delta1 {m['delta1']:.3f}  rel {m['rel']:.3f}  rms {m['rms']:.3f} m"
                     for method, m in record.items())
