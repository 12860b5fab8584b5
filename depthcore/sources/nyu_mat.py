"""Read the labeled NYU Depth v2 file (nyu_depth_v2_labeled.mat, MATLAB v7.3 = HDF5) one image at a time; open
it for sharding (`open_mat`), which the `synthetic` and `nyuv2` sources share.

MATLAB stores arrays column-major, so h5py sees every axis reversed:

    images     (N, 3, 640, 480) uint8    -> image i is images[i].transpose(2, 1, 0): (480, 640, 3) RGB
    depths     (N, 640, 480)    float32  -> depths[i].T: (480, 640) metres, holes filled
    rawDepths  (N, 640, 480)    float32  -> rawDepths[i].T: (480, 640) metres, 0 where the sensor had no reading

`depthcore.sources.synthetic.write_synthetic_nyu` writes the same layout. The layout is checked on open; every
problem (not HDF5, a MATLAB v5 file, truncated, corrupt, a missing key, a wrong shape or dtype) raises
`NyuMatError` naming the file and what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np

from depthcore.checks import check_index
from depthcore.codec import metres_to_mm
from depthcore.config import Config
from depthcore.errors import DepthcoreError
from depthcore.files import Closing
from depthcore.nyu import HEIGHT, WIDTH
from depthcore.shards import Sample
from depthcore.splits import make_splits

# dataset name -> (dtype, shape of one image as h5py sees it)
LAYOUT: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "images": (np.dtype(np.uint8), (3, WIDTH, HEIGHT)),
    "depths": (np.dtype(np.float32), (WIDTH, HEIGHT)),
    "rawDepths": (np.dtype(np.float32), (WIDTH, HEIGHT)),
}
_CHUNK_CACHE_BYTES = 32 << 20  # per dataset: holds whole chunks even if a file packs several images in one
_REFETCH_HINT = "the file is truncated or corrupt: download it again (or render the synthetic one again)"


class NyuMatError(DepthcoreError, ValueError):
    """A file is not a readable labeled NYU Depth v2 .mat in the expected layout."""


class NyuMat(Closing):
    """The labeled NYU Depth v2 .mat at `path`, opened read-only; a context manager.

    `len(m)` images; `m[i]` -> (rgb (480, 640, 3) uint8, depth (480, 640) float32 m, holes filled);
    `m.raw_depth(i)` -> (480, 640) float32 m, 0 where the sensor had no reading. Reads only image i.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: h5py.File | None = _open_hdf5(self.path)
        try:
            self._datasets = _checked_datasets(self._file, self.path)
        except BaseException:
            self.close()
            raise
        self._len = self._datasets["images"].shape[0]

    def close(self) -> None:
        """Close the file; reading afterwards raises ValueError."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Image i: rgb (480, 640, 3) uint8 and filled depth (480, 640) float32 metres."""
        i = self._check_index(i)
        rgb = self._read("images", i).transpose(2, 1, 0)  # (3, 640, 480) -> (480, 640, 3)
        return np.ascontiguousarray(rgb), np.ascontiguousarray(self._read("depths", i).T)

    def raw_depth(self, i: int) -> np.ndarray:
        """Raw depth of image i: (480, 640) float32 metres, 0 where the sensor had no reading."""
        return np.ascontiguousarray(self._read("rawDepths", self._check_index(i)).T)

    def _check_index(self, i: int) -> int:
        return check_index("an image index", i, self._len, f"for {self.path}")

    def _read(self, name: str, i: int) -> np.ndarray:
        if self._file is None:
            raise ValueError(f"expected an open file, got {self.path} closed")
        try:
            return self._datasets[name][i]
        except (OSError, RuntimeError, KeyError) as err:
            raise NyuMatError(f"{self.path}: cannot read {name}[{i}] ({err}); {_REFETCH_HINT}") from err


def _open_hdf5(path: Path) -> h5py.File:
    """Open `path` read-only as HDF5, telling apart a missing file, a MATLAB v5 file, non-HDF5 and damage."""
    if not path.is_file():
        raise NyuMatError(f"expected the labeled NYU Depth v2 .mat file, got no file at {path}")
    with open(path, "rb") as f:
        head = f.read(128)
    if not h5py.is_hdf5(path):
        size = path.stat().st_size
        if head.startswith(b"MATLAB 5.0 MAT-file"):
            raise NyuMatError(
                f"{path} is a MATLAB v5 MAT-file, not MATLAB v7.3 (HDF5): it is not the labeled "
                "nyu_depth_v2_labeled.mat (v5 files such as NYU's splits.mat are read with scipy.io.loadmat)"
            )
        if head.startswith(b"MATLAB 7.3 MAT-file"):
            raise NyuMatError(f"{path} has a MATLAB 7.3 header but no HDF5 data ({size} bytes); {_REFETCH_HINT}")
        raise NyuMatError(
            f"{path} is not an HDF5 file ({size} bytes): expected nyu_depth_v2_labeled.mat (MATLAB v7.3); "
            f"{_REFETCH_HINT}"
        )
    try:
        return h5py.File(path, "r", rdcc_nbytes=_CHUNK_CACHE_BYTES)
    except OSError as err:
        raise NyuMatError(f"{path}: cannot open as HDF5 ({err}); {_REFETCH_HINT}") from err


def _checked_datasets(f: h5py.File, path: Path) -> dict[str, h5py.Dataset]:
    """The `LAYOUT` datasets of `f`, after checking they exist with the right dtypes, shapes and counts."""
    try:
        keys = sorted(f.keys())
    except (OSError, RuntimeError, KeyError) as err:
        raise NyuMatError(f"{path}: cannot list its datasets ({err}); {_REFETCH_HINT}") from err
    missing = [name for name in LAYOUT if name not in keys]
    if missing:
        raise NyuMatError(
            f"{path}: expected datasets {list(LAYOUT)} as in nyu_depth_v2_labeled.mat, got no {missing} (keys: {keys})"
        )
    found = {}
    for name in LAYOUT:
        try:
            found[name] = f[name]
        except (OSError, RuntimeError, KeyError) as err:
            raise NyuMatError(f"{path}: cannot open dataset {name!r} ({err}); {_REFETCH_HINT}") from err
        if not isinstance(found[name], h5py.Dataset):
            raise NyuMatError(f"{path}: expected {name!r} to be a dataset, got a {type(found[name]).__name__}")
    for name, (dtype, shape) in LAYOUT.items():
        ds = found[name]
        if ds.dtype != dtype:
            raise NyuMatError(f"{path}: expected dataset {name!r} of dtype {dtype}, got {ds.dtype}")
        if ds.shape[1:] != shape or ds.shape[0] < 1:
            raise NyuMatError(
                f"{path}: expected dataset {name!r} of shape (N >= 1, {', '.join(map(str, shape))}) as h5py "
                f"reads MATLAB's column-major arrays, got {ds.shape}"
            )
    counts = {name: ds.shape[0] for name, ds in found.items()}
    if len(set(counts.values())) > 1:
        raise NyuMatError(f"{path}: expected the same number of images in every dataset, got {counts}")
    return found


class DepthReader(Protocol):
    """A reader of decoded images in metres: `NyuMat` or any object with these three methods."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]: ...  # rgb (H, W, 3) uint8, depth (H, W) m

    def raw_depth(self, i: int) -> np.ndarray: ...  # (H, W) metres, 0 = no reading


class MatSamples:
    """A `DepthReader` (the NYU .mat) as shard samples (`depthcore.shards.SampleSource`): pixels as they are,
    depths in millimetres."""

    has_raw_depth = True

    def __init__(self, reader: DepthReader) -> None:
        self.reader = reader

    def __len__(self) -> int:
        return len(self.reader)

    def sample(self, i: int) -> Sample:
        rgb, depth = self.reader[i]
        raw = self.reader.raw_depth(i)
        what = f"source image {i}"
        return Sample(rgb, metres_to_mm(depth, what), metres_to_mm(raw, what + " (raw depth)"))


@contextmanager
def open_mat(config: Config, path: Path) -> Iterator[tuple[MatSamples, dict[str, np.ndarray], dict[str, Any]]]:
    """The .mat at `path` opened for sharding: its samples, its splits by `data.split`, and their provenance."""
    data, split = config.data, config.data.split
    with NyuMat(path) as reader:
        splits = make_splits(len(reader), split, data.seed)
        yield MatSamples(reader), splits, {"source": data.source, "split": split.method, "seed": data.seed}
