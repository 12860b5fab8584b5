"""`depthcore predict`: depth maps for any images with a trained model.

    depthcore predict IMAGE_OR_DIR... [--model models/model.pt] [--out predictions/] [--device auto]
                      [--precision auto] [--batch-size 4] [--ply] [--fx FX --fy FY --cx CX --cy CY]

(`depthcore.cli` parses the command line.) --model is a depthcore model file or the authors' Keras .h5, converted
in memory (`depthcore.inference.load_any_model`); the model file says how its inputs are scaled and what its outputs
mean.

Inputs: image files (anything Pillow reads, whatever the name), or directories: their files with an IMAGE_SUFFIXES
suffix, sorted by name, not recursive, hidden files skipped. Each image is read upright as RGB and shown to the
network letterboxed in its 480x640 training frame (`depthcore.frame`); its depth map comes back at the image's own
size. An image larger than its letterbox is shrunk as it is read (`read_picture`), so that a batch of 48 MP photos
holds no full-size picture; only the image being written has full-size maps. Of an animated or multi-page image
the first frame is used, and a line on stderr says so. An image of more than MAX_PIXELS pixels is refused.

Outputs in --out, named after the input's stem (two inputs with one stem are refused):

    <stem>_depth.png        16-bit greyscale PNG in millimetres (metres = value / 1000), the image's size
    <stem>_depth_color.png  the depth coloured, with a colour bar in metres (`depthcore.visualize.depth_colormap`)
    <stem>.ply              with --ply: a coloured point cloud in metres (`depthcore.pointcloud`), with the camera
                            --fx --fy --cx --cy (the image's pixels, 0-based as in OpenCV; the same for every image)
                            or else NYU's Kinect camera carried onto the image (`depthcore.frame.nyu_intrinsics`)

Every file is written atomically. An input that cannot be read (not an image, truncated, unreadable, too many
pixels) is reported by name and skipped, the others still complete, and the command prints its summary and then
fails (status 2) naming it. Problems found before any work starts (no images, two inputs with one stem, an
unwritable --out, a missing or foreign model file) stop it with one line, status 2.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps

from depthcore.codec import ImageDecodeError, encode_png, metres_to_mm, open_image, pixel_limit
from depthcore.device import Runtime
from depthcore.errors import DepthcoreError
from depthcore.files import atomic_path
from depthcore.frame import RESAMPLE, fit_box, nyu_intrinsics, predict_images
from depthcore.inference import Predictor, load_predictor, upsample
from depthcore.pointcloud import Intrinsics, back_project, ply_bytes
from depthcore.progress import bar
from depthcore.visualize import depth_colormap

SUMMARY = "predict depth for images or folders of images with a trained model"
#: Files of a directory that count as images (an image file named on the command line is read whatever its name).
IMAGE_SUFFIXES = (".bmp", ".gif", ".jfif", ".jpe", ".jpeg", ".jpg", ".pbm", ".pgm", ".png", ".pnm", ".ppm", ".tga",
                  ".tif", ".tiff", ".webp")
DEFAULT_OUT = Path("predictions")
DEFAULT_BATCH_SIZE = 4
#: Pillow modes of 16-bit (and 32-bit integer) greyscale images.
WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
WIDE_GREY_MAX = 65535
WIDE_TO_8BIT = WIDE_GREY_MAX / 255  # 257: 0..65535 maps linearly onto 0..255
DEPTH_SUFFIX, COLOR_SUFFIX, PLY_SUFFIX = "_depth.png", "_depth_color.png", ".ply"
INTRINSICS = ("fx", "fy", "cx", "cy")
#: The most pixels an input may have (2^28, 268 MP): more than the largest camera sensors sold take (200 MP in
#: phones, e.g. the Samsung Galaxy S23 Ultra's 16320x12240), so no photo is refused, only a file whose header claims a
#: larger image (a "pixel bomb": a few bytes that would decode to gigabytes) or a stitched panorama, before any pixel
#: is decoded. Pillow's own default limit (refusing above 179 MP) would refuse those 200 MP photos.
MAX_PIXELS = 1 << 28
#: Before the last bilinear step an image keeps at least this many times its letterbox's size: JPEGs are decoded at
#: 1/2, 1/4 or 1/8 scale (Pillow's `draft`) and others reduced by whole factors (`Image.reduce`) only as far as that
#: allows, so only images at least twice this many times larger than their letterbox are touched. For 3, Pillow's
#: documentation of `Image.resize` (`reducing_gap`) calls the result indistinguishable from a fair resampling.
REDUCING_GAP = 3.0
#: EXIF orientations that turn the image a quarter turn (upright width and height are the stored height and width).
QUARTER_TURNS = (5, 6, 7, 8)


def find_images(inputs: Sequence[Path]) -> list[Path]:
    """The image files to predict: files as given, directories expanded to their IMAGE_SUFFIXES files (sorted, not
    recursive, no hidden files). A missing path or a directory without images raises `DepthcoreError`."""
    images: list[Path] = []
    for path in inputs:
        if path.is_dir():
            files = sorted(
                p for p in path.iterdir()
                if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not files:
                raise DepthcoreError(f"no images in {path}: expected files ending in {' '.join(IMAGE_SUFFIXES)}")
            images += files
        elif path.is_file():
            images.append(path)
        else:
            raise DepthcoreError(f"{path}: no such file or directory")
    return images


def output_names(stem: str, ply: bool) -> list[str]:
    """The names of one image's outputs in --out."""
    return [stem + DEPTH_SUFFIX, stem + COLOR_SUFFIX] + ([stem + PLY_SUFFIX] if ply else [])


def check_names(images: Sequence[Path], out: Path) -> None:
    """Refuse two images whose outputs would have one name (same stem, ignoring case for case-insensitive file
    systems), and outputs that would overwrite an input."""
    seen: dict[str, Path] = {}
    for image in images:
        other = seen.setdefault(image.stem.casefold(), image)
        if other != image:
            raise DepthcoreError(
                f"{other} and {image} have the same name {image.stem!r}, so their outputs would overwrite each "
                "other: rename one, or predict them in separate runs with different --out folders"
            )
    inputs = {image.resolve() for image in images}
    for image in images:
        for name in output_names(image.stem, ply=True):
            if (out / name).resolve() in inputs:
                raise DepthcoreError(f"the output {out / name} would overwrite an input: choose another --out")


def check_writable(out: Path) -> None:
    """Create --out if needed and check that a file can be written there; `DepthcoreError` otherwise."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise DepthcoreError(
            f"cannot write to --out {out} ({err.strerror or err}): pass a folder you can write to with --out"
        ) from None


@dataclass(frozen=True)
class Picture:
    """An input as the network sees it, with what its outputs need."""

    rgb: np.ndarray  # (h, w, 3) uint8, upright; shrunk to its letterbox in the network's frame when larger than it
    size: tuple[int, int]  # (H, W) of the upright image: the size of its outputs
    frames: int  # frames or pages in the file (animated GIF, multi-page TIFF); the first is the one read


def read_rgb(path: Path) -> np.ndarray:
    """The image at `path` as (H, W, 3) uint8 RGB, upright, at its full size; `ImageDecodeError` (a DepthcoreError)
    if it is none, cannot be read or has more than MAX_PIXELS pixels.

    EXIF orientation is applied (so H, W are those of the upright image); alpha is dropped (colours kept as stored,
    not blended onto a background); greyscale is repeated into 3 channels and palette images expanded. 16-bit
    greyscale is scaled linearly onto 8 bits, value / 257 rounded (0 -> 0, 65535 -> 255), the whole 16-bit range
    and not the image's own min..max, so that a dark image stays dark; 32-bit integer greyscale is clipped to
    0..65535 first. 16-bit colour PNGs reach us as 8 bits already: Pillow keeps each value's high byte (value // 256).
    Of an animated or multi-page image, the first frame.
    """
    with _opened(path) as image:
        return np.asarray(upright_rgb(image))


def read_picture(path: Path) -> Picture:
    """The image at `path` as `read_rgb` reads it, but no larger than its letterbox in the network's frame
    (`depthcore.frame.fit_box`), shrunk as `depthcore.frame.to_frame` would (bilinear); `ImageDecodeError` as there.

    A JPEG much larger than its letterbox is decoded at a fraction of its size (at least REDUCING_GAP times the
    letterbox), so a 48 MP photo never exists in memory at full size; other formats are decoded whole, then shrunk.
    An image less than 2 * REDUCING_GAP times larger than its letterbox is neither: it gives exactly the frame that
    `to_frame` makes of `read_rgb`.
    """
    with _opened(path) as image:
        size = _upright_size(image)
        box = fit_box(*size)
        shrink = box.height < size[0] or box.width < size[1]
        if shrink:  # the decoder's own scaling wants the size as stored: (width, height) before turning upright
            turned = size != (image.height, image.width)
            wanted = (box.height, box.width) if turned else (box.width, box.height)
            image.draft(None, tuple(round(side * REDUCING_GAP) for side in wanted))
        rgb = upright_rgb(image)
        if shrink:
            rgb = rgb.resize((box.width, box.height), RESAMPLE, reducing_gap=REDUCING_GAP)
        return Picture(np.asarray(rgb), size, getattr(image, "n_frames", 1))


@contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """The image file at `path`, its header read, refused over MAX_PIXELS before any pixel is decoded; in the block
    Pillow checks frames and tiles against the same limit, and decoding errors become `ImageDecodeError`."""
    try:
        file = path.open("rb")
    except OSError as err:
        raise ImageDecodeError(f"{path}: cannot read it ({err.strerror or err})") from None
    with file:
        with pixel_limit(None):  # the header only: the size is checked here, with a clearer message than Pillow's
            image = open_image(file, str(path))
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise ImageDecodeError(
                f"{path}: {width}x{height} pixels, more than the {MAX_PIXELS} that depthcore predict reads (more than "
                "any camera takes): shrink it, or cut it into parts"
            )
        with pixel_limit(MAX_PIXELS):
            try:
                yield image
            except (OSError, ValueError, Image.DecompressionBombError) as err:  # truncated or corrupt pixel data
                raise ImageDecodeError(f"{path}: cannot decode its pixels ({err})") from None


def _upright_size(image: Image.Image) -> tuple[int, int]:
    """(H, W) of the opened `image` once its EXIF orientation is applied, from its header."""
    turned = image.getexif().get(ExifTags.Base.Orientation) in QUARTER_TURNS
    return (image.width, image.height) if turned else (image.height, image.width)


def upright_rgb(image: Image.Image) -> Image.Image:
    """The opened `image` decoded, EXIF orientation applied, as an RGB image (`read_rgb` says how each mode is
    read)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in WIDE_GREY_MODES:
        wide = np.clip(np.asarray(image, dtype=np.float64), 0, WIDE_GREY_MAX)
        image = Image.fromarray(np.rint(wide / WIDE_TO_8BIT).astype(np.uint8))  # (H, W) 8-bit greyscale
    return image.convert("RGB")


def _full_size(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """depth (h, w) metres -> (H, W) float32 at `size`, bilinear on pixel centres (`depthcore.inference.upsample`)."""
    if depth.shape == tuple(size):
        return depth
    return upsample(torch.from_numpy(depth)[None, None], size)[0, 0].numpy()


def _cloud(path: Path, picture: Picture, camera: Intrinsics | None) -> tuple[np.ndarray, Intrinsics]:
    """The point cloud's colours, rgb (H, W, 3) uint8 (the image read again, at full size), and its camera: `camera`
    or else `nyu_intrinsics` for the image's size."""
    return read_rgb(path), camera or nyu_intrinsics(fit_box(*picture.size))


def write_outputs(out: Path, stem: str, depth: np.ndarray, cloud: tuple[np.ndarray, Intrinsics] | None) -> None:
    """Write one image's outputs into `out`, each atomically and freed before the next is made: from depth (H, W)
    metres, and with `cloud` (rgb (H, W, 3) uint8, camera) a point cloud."""
    depth_name, color_name = output_names(stem, ply=False)
    _write(out / depth_name, encode_png(metres_to_mm(depth, stem)))
    _write(out / color_name, encode_png(depth_colormap(depth)))
    if cloud is not None:
        rgb, camera = cloud
        _write(out / (stem + PLY_SUFFIX), ply_bytes(*back_project(depth, rgb, camera)))


def _write(path: Path, data: bytes) -> None:
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as err:
        raise DepthcoreError(f"cannot write {path} ({err.strerror or err})") from None


def predict_files(
    images: Sequence[Path], predictor: Predictor, out: Path, batch_size: int, ply: bool,
    camera: Intrinsics | None = None,
) -> list[Path]:
    """Predict and write the outputs of every image, `batch_size` per forward pass, with a progress bar.

    With `ply` and no `camera`, each image gets `nyu_intrinsics` for its own size. An image that cannot be read is
    reported on stderr and skipped; returns those images.
    """
    failed: list[Path] = []

    def skip(path: Path, err: DepthcoreError) -> None:
        failed.append(path)
        progress.write(f"skipped {err}", file=sys.stderr)
        progress.update()

    with bar(total=len(images), desc="predict", unit="image") as progress:
        for start in range(0, len(images), batch_size):
            batch: list[tuple[Path, Picture]] = []
            for path in images[start:start + batch_size]:
                try:
                    picture = read_picture(path)
                except ImageDecodeError as err:
                    skip(path, err)
                    continue
                if picture.frames > 1:
                    progress.write(f"{path}: the first of its {picture.frames} frames is used", file=sys.stderr)
                batch.append((path, picture))
            if not batch:
                continue
            for (path, picture), depth in zip(batch, predict_images(predictor, [p.rgb for _, p in batch])):
                try:  # one image's full-size maps at a time, gone when its outputs are written
                    write_outputs(out, path.stem, _full_size(depth, picture.size),
                                  _cloud(path, picture, camera) if ply else None)
                except ImageDecodeError as err:  # read again for its point cloud, it had changed
                    skip(path, err)
                    continue
                progress.update()
    return failed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `depthcore predict` (--model, --device and --precision come from `depthcore.cli`)."""
    parser.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE_OR_DIR",
                        help="image files, or folders whose image files are all predicted (not recursive)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"folder for the outputs, created if needed (default: {DEFAULT_OUT}/)")
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE,
                        help=f"images per forward pass (default: {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--ply", action="store_true", help="also write a coloured point cloud <stem>.ply per image")
    camera = parser.add_argument_group(
        "camera for --ply", "pinhole intrinsics in the input image's pixels, cx and cy 0-based (the top-left pixel's "
        "centre is 0, 0); all four or none, then NYU's Kinect camera scaled to each image")
    for name in INTRINSICS:
        camera.add_argument(f"--{name}", type=float)


def positive_int(text: str) -> int:
    """An argparse type: a positive integer."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _camera(args: argparse.Namespace) -> Intrinsics | None:
    """The --fx --fy --cx --cy camera, None when none is given."""
    given = {name: getattr(args, name) for name in INTRINSICS}
    if all(value is None for value in given.values()):
        return None
    if any(value is None for value in given.values()):
        raise DepthcoreError("--fx, --fy, --cx and --cy go together: give all four, or none for NYU's Kinect camera")
    if not args.ply:
        raise DepthcoreError("--fx, --fy, --cx and --cy set the point cloud's camera: add --ply")
    try:
        return Intrinsics(**given)
    except ValueError as err:
        raise DepthcoreError(f"camera for --ply: {err}") from None


def run(args: argparse.Namespace, runtime: Runtime) -> None:
    """`depthcore predict` with parsed arguments (`depthcore.cli`): check everything that can be checked, then
    predict."""
    start = time.perf_counter()
    camera = _camera(args)
    images = find_images(args.inputs)
    check_names(images, args.out)
    check_writable(args.out)
    predictor = load_predictor(args.model, runtime)
    failed = predict_files(images, predictor, args.out, args.batch_size, args.ply, camera)
    print(f"predicted {len(images) - len(failed)} of {len(images)} images in {time.perf_counter() - start:.1f} s "
          f"on {predictor.runtime}; outputs in {args.out}/")  # an ONNX model's runtime is its own
    if failed:
        raise DepthcoreError(f"{len(failed)} of {len(images)} inputs could not be read: {', '.join(map(str, failed))}")
