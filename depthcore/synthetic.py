"""Write rendered rooms (`depthcore.scenes`, `depthcore.render`) in the layout of NYU Depth v2's labeled .mat file.

Image i of a file depends only on (seed, i) and HDF5 writes no timestamps: the same seed gives the same bytes, and
the first k images do not depend on `num_images`.
"""

from __future__ import annotations

import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np

from depthcore.checks import check_int
from depthcore.files import atomic_path
from depthcore.nyu import HEIGHT, WIDTH
from depthcore.progress import bar
from depthcore.render import render_scene
from depthcore.scenes import random_scene

MATLAB_HEADER_TEXT = "MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Sat Jan  1 00:00:00 2000 HDF5 schema 1.00 ."
USERBLOCK_SIZE = 512  # the MATLAB header lives in the HDF5 user block
_DEFLATE_LEVEL = 1  # fastest zlib level: depth compresses well even at 1


def write_synthetic_nyu(path: str | Path, num_images: int, seed: int, *, progress: bool = False) -> Path:
    """Render `num_images` rooms from `seed` into a MATLAB v7.3 file laid out like nyu_depth_v2_labeled.mat.

    Datasets as h5py sees them: `images` (N, 3, 640, 480) uint8, `depths` and `rawDepths` (N, 640, 480)
    float32 m, one deflate-compressed chunk per image; the 512-byte user block holds the MATLAB header.
    Written image by image (a worker thread compresses image i while image i + 1 renders) into a temporary
    file beside `path`, renamed into place when complete. Returns `path`.
    """
    check_int("num_images", num_images, 1)
    check_int("seed", seed, 0)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", userblock_size=USERBLOCK_SIZE) as f:
            datasets = (
                _create_dataset(f, "images", (num_images, 3, WIDTH, HEIGHT), np.uint8, "uint8"),
                _create_dataset(f, "depths", (num_images, WIDTH, HEIGHT), np.float32, "single"),
                _create_dataset(f, "rawDepths", (num_images, WIDTH, HEIGHT), np.float32, "single"),
            )
            with ThreadPoolExecutor(max_workers=1) as pool:
                pending = None
                for i in bar(range(num_images), desc="rendering rooms", unit="img", disable=not progress):
                    rgb, depth, raw = render_scene(random_scene(np.random.default_rng([seed, i])))
                    # MATLAB's column-major arrays as h5py sees them: (480, 640, 3) -> (3, 640, 480), (480, 640) -> .T
                    arrays = (rgb.transpose(2, 1, 0), depth.T, raw.T)
                    if pending is not None:
                        _write_chunks(datasets, i - 1, pending.result())
                    pending = pool.submit(_compress_chunks, arrays)
                _write_chunks(datasets, num_images - 1, pending.result())
        _write_matlab_header(tmp)
    return Path(path)


def _create_dataset(f: h5py.File, name: str, shape: tuple[int, ...], dtype: type, matlab_class: str) -> h5py.Dataset:
    """A dataset with one chunk per image, shuffle (multi-byte types) + deflate, no timestamps, its MATLAB class."""
    ds = f.create_dataset(
        name,
        shape=shape,
        dtype=dtype,
        chunks=(1, *shape[1:]),
        compression="gzip",
        compression_opts=_DEFLATE_LEVEL,
        shuffle=np.dtype(dtype).itemsize > 1,
        track_times=False,
    )
    ds.attrs.create("MATLAB_class", np.bytes_(matlab_class))
    return ds


def _compress_chunks(arrays: tuple[np.ndarray, ...]) -> list[bytes]:
    """Each array as its dataset's filters store it: HDF5 byte shuffle (multi-byte types), then zlib deflate."""
    chunks = []
    for a in arrays:
        # shuffle: byte k of every element together, k = 0 .. itemsize - 1
        shuffled = np.ascontiguousarray(a).view(np.uint8).reshape(-1, a.itemsize).T
        chunks.append(zlib.compress(np.ascontiguousarray(shuffled).data, _DEFLATE_LEVEL))
    return chunks


def _write_chunks(datasets: tuple[h5py.Dataset, ...], i: int, chunks: list[bytes]) -> None:
    """Store image i's already filtered chunks directly (all filters applied: mask 0)."""
    for ds, chunk in zip(datasets, chunks, strict=True):
        ds.id.write_direct_chunk((i,) + (0,) * (ds.ndim - 1), chunk, filter_mask=0)


def _write_matlab_header(path: Path) -> None:
    """Write MATLAB's 128-byte header into the HDF5 user block: text, subsystem offset, version 0x0200, 'IM'."""
    text = MATLAB_HEADER_TEXT.encode("ascii").ljust(116, b" ")
    header = text + bytes(8) + (0x0200).to_bytes(2, "little") + b"IM"
    with open(path, "r+b") as f:
        f.write(header)
