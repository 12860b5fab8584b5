"""Write the Middlebury 2014 "motorcycle" scene that scikit-image's wheel ships as an RGB-D folder for
`depthcore evaluate --rgbd` (a real scene, offline; scikit-image is a dev dependency: pip install -e '.[dev]'):

    python tools/motorcycle.py OUT_DIR

    OUT_DIR/motorcycle.png        the left image, 741x500 RGB
    OUT_DIR/motorcycle_depth.png  its depth, 16-bit greyscale in millimetres, 0 where the disparity is unknown
    OUT_DIR/intrinsics.json       the left camera and the stereo calibration

The scene is D. Scharstein et al., "High-resolution stereo datasets with subpixel-accurate ground truth", GCPR 2014
(https://vision.middlebury.edu/stereo/data/scenes2014/), as `skimage.data.stereo_motorcycle` gives it: the default
exposure downsampled 4x, with its ground-truth disparity (pixels; inf where unknown in scikit-image 0.26's file, NaN
in its docstring: any value that is not finite is unknown). Depth follows Middlebury 2014's formula

    Z = baseline * f / (d + doffs)

with the calibration scikit-image's `stereo_motorcycle` docstring gives for this size: f = 994.978 px, doffs = 31.086 px
(its "principal point dx": the x-difference of the two cameras' principal points), baseline = 193.001 mm. Depth runs
from 2.11 to 5.02 m; 7.3 % of the pixels (occlusions, mostly) have no disparity.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from depthcore.codec import DEPTH_SCALE, encode_png, metres_to_mm
from depthcore.errors import DepthcoreError, run_main
from depthcore.files import atomic_path, write_text

NAME = "motorcycle"
FOCAL_PX = 994.978  # f, both axes
CX_PX, CY_PX = 311.193, 254.877  # the left camera's principal point, as the docstring gives it
DOFFS_PX = 31.086  # x-difference of the principal points of the right and left cameras
BASELINE_MM = 193.001
SOURCE = ("Middlebury 2014 stereo, scene Motorcycle (Scharstein et al., GCPR 2014), downsampled 4x, as "
          "scikit-image's data.stereo_motorcycle ships it; depth = baseline * f / (disparity + doffs)")


def disparity_to_depth(disparity: np.ndarray) -> np.ndarray:
    """disparity (H, W) pixels, not finite where unknown -> depth (H, W) float64 metres, 0 where unknown."""
    known = np.isfinite(disparity)
    depth_mm = BASELINE_MM * FOCAL_PX / (disparity[known].astype(np.float64) + DOFFS_PX)
    depth = np.zeros(disparity.shape)
    depth[known] = depth_mm / DEPTH_SCALE
    return depth


def intrinsics(height: int, width: int) -> dict[str, object]:
    """The camera of the left image and the stereo calibration, in the image's pixels."""
    return {"fx": FOCAL_PX, "fy": FOCAL_PX, "cx": CX_PX, "cy": CY_PX, "width": width, "height": height,
            "baseline_mm": BASELINE_MM, "doffs_px": DOFFS_PX, "source": SOURCE}


def write_scene(out: Path, rgb: np.ndarray, disparity: np.ndarray) -> None:
    """rgb (H, W, 3) uint8 and disparity (H, W) pixels -> the RGB-D folder `out`, each file atomically."""
    out.mkdir(parents=True, exist_ok=True)
    depth_mm = metres_to_mm(disparity_to_depth(disparity), NAME)  # (H, W) uint16
    files = {f"{NAME}.png": encode_png(rgb), f"{NAME}_depth.png": encode_png(depth_mm)}
    for name, data in files.items():
        with atomic_path(out / name) as tmp:
            tmp.write_bytes(data)
    write_text(out / "intrinsics.json", json.dumps(intrinsics(*disparity.shape), indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("out", type=Path, metavar="OUT_DIR", help="the folder to write (created if needed)")
    args = parser.parse_args(argv)
    try:
        import skimage.data
    except ImportError:
        raise DepthcoreError("scikit-image is not installed: pip install -e '.[dev]' (or scikit-image)") from None
    rgb, _, disparity = skimage.data.stereo_motorcycle()
    write_scene(args.out, rgb, disparity)
    known = np.isfinite(disparity)
    print(f"wrote {args.out}/{NAME}.png, {NAME}_depth.png ({int(known.sum())} of {known.size} pixels with depth) and "
          "intrinsics.json")


if __name__ == "__main__":
    run_main(main)
