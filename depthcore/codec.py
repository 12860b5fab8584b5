"""Images as bytes (PNG, JPEG, anything Pillow reads) and depth as integers: the encodings data files use.

Depth conventions:
- millimetres in uint16 (this project's shards, 16-bit depth PNGs such as DenseDepth's test set and the common
  RGB-D convention): metres = value / 1000, at most 0.5 mm from the source after rounding, up to 65.535 m;
- 8-bit depth PNGs (DenseDepth's training set): metres = value / 255 * `nyu.MAX_DEPTH`.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from depthcore.errors import DepthcoreError
from depthcore.nyu import MAX_DEPTH

DEPTH_SCALE = 1000.0  # stored units per metre (millimetres)
DEPTH_MAX_M = np.iinfo(np.uint16).max / DEPTH_SCALE  # 65.535 m
DEPTH_BOUND_M = 0.5 / DEPTH_SCALE  # largest |stored - source| from rounding to the nearest millimetre
DEPTH_8BIT_SCALE = 255 / MAX_DEPTH  # 8-bit depth PNG values per metre
_ROWS_PIXELS = 1 << 20  # pixels per block of rows when converting depth (bounds the float64 copy to 8 MiB)


class ImageDecodeError(DepthcoreError, ValueError):
    """Bytes that are not an image Pillow can read."""


def open_image(source: bytes | BinaryIO, what: str) -> Image.Image:
    """A lazily decoded Pillow image from the bytes or open binary file `source` (only the header is read); `what`
    names it in errors. An image over Pillow's pixel limit (`pixel_limit`) is refused here too."""
    file = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        return Image.open(file)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        size = file.seek(0, io.SEEK_END)
        raise ImageDecodeError(f"{what}: expected an image file (PNG, JPEG, ...), got {size} bytes "
                               f"Pillow cannot read ({err})") from None


@contextmanager
def pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Within the block, Pillow refuses (`Image.DecompressionBombError`) any image of more than `max_pixels` pixels,
    at every step that checks (opening, a GIF frame, a TIFF tile), and warns of none; None: no limit at all.

    Pillow's limit is a module global (it warns above `Image.MAX_IMAGE_PIXELS` and refuses above twice that), set
    here for the block and restored after it: for one thread at a time.
    """
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None if max_pixels is None else max_pixels // 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def decode_image(data: bytes, what: str) -> np.ndarray:
    """Decode an image file: (H, W, 3) uint8 for RGB, (H, W) uint8 / uint16 for greyscale, as stored."""
    image = open_image(data, what)
    try:
        array = np.asarray(image)
    except (OSError, ValueError) as err:  # truncated or corrupt pixel data
        raise ImageDecodeError(f"{what}: cannot decode its pixels ({err})") from None
    if image.mode in ("I", "I;16", "I;16B", "I;16L") and array.dtype != np.uint16:
        array = array.astype(np.uint16)  # 16-bit greyscale PNGs read as int32 on some Pillow versions
    return array


def encode_png(array: np.ndarray, compress_level: int = 1) -> bytes:
    """(H, W, 3) uint8, (H, W) uint8 or (H, W) uint16 -> PNG bytes (16-bit greyscale for uint16)."""
    ok = (array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8) or (
        array.ndim == 2 and array.dtype in (np.uint8, np.uint16)
    )
    if not ok:
        raise ValueError(f"expected (H, W, 3) uint8 or (H, W) uint8/uint16, got {array.shape} {array.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def metres_to_mm(depth: np.ndarray, what: str) -> np.ndarray:
    """(H, W) metres -> (H, W) uint16 millimetres, nearest; `what` names the image in errors."""
    finite = np.isfinite(depth)
    if not finite.all() or depth.min() < 0 or depth.max() > DEPTH_MAX_M:
        bad = depth[~finite] if not finite.all() else depth[(depth < 0) | (depth > DEPTH_MAX_M)]
        raise ValueError(f"{what}: expected depth in [0, {DEPTH_MAX_M}] m, got a value of {bad.flat[0]!r}")
    stored = np.empty(depth.shape, np.uint16)
    rows = max(1, _ROWS_PIXELS // max(depth.shape[1], 1))  # a block of rows at a time: no full-size float64 copy
    for top in range(0, depth.shape[0], rows):
        stored[top:top + rows] = np.rint(depth[top:top + rows].astype(np.float64) * DEPTH_SCALE)
    return stored


def mm_to_metres(stored: np.ndarray) -> np.ndarray:
    """(H, W) uint16 millimetres -> (H, W) float32 metres."""
    return stored.astype(np.float32) / np.float32(DEPTH_SCALE)


def depth_png_to_metres(values: np.ndarray, what: str) -> np.ndarray:
    """A decoded depth PNG -> (H, W) float32 metres: 16-bit is millimetres, 8-bit is value / 255 * MAX_DEPTH.

    A PNG with 3 equal channels (some copies of DenseDepth's data) counts as greyscale; unequal channels do not.
    """
    if values.ndim == 3:
        if values.shape[2] != 3 or not (np.array_equal(values[..., 0], values[..., 1])
                                        and np.array_equal(values[..., 0], values[..., 2])):
            raise ValueError(f"{what}: expected a greyscale depth PNG (or 3 equal channels), got shape "
                             f"{values.shape} with unequal channels")
        values = values[..., 0]
    if values.dtype == np.uint16:
        return mm_to_metres(values)
    if values.dtype == np.uint8:
        return values.astype(np.float32) / np.float32(DEPTH_8BIT_SCALE)
    raise ValueError(f"{what}: expected an 8- or 16-bit depth PNG, got {values.dtype}")
