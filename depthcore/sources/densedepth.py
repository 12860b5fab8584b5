"""Source `densedepth`: DenseDepth's training set, nyu_data.zip, read in place (never extracted).

The zip is taken from `data.densedepth.path` or downloaded from `data.densedepth.url` (the original link in
DenseDepth's README is dead; mirrors exist). Its own 654 test pairs are NYU's official test images and form the test
split; whole rooms of the training scenes are held out for validation (`densedepth_splits`). It has no raw depth.

Layout, as the authors' loader and later ones read it:

    data/nyu2_train.csv, data/nyu2_test.csv   no header; each line `rgb path,depth path`, both members of the zip
                                              (some copies keep the two CSVs at the zip's root)
    data/nyu2_train/<scene>/<n>.jpg, <n>.png  video frames: 640x480 JPEG RGB, 8-bit depth PNG, metres = v / 255 * 10
    data/nyu2_test/<nnnnn>_colors.png         the 654 test images: 640x480 RGB PNG,
    data/nyu2_test/<nnnnn>_depth.png          16-bit depth PNG in millimetres

Index space: [0, num_train) are the train CSV's rows in order, [num_train, len) the test CSV's. The scene of a train
image is the folder that directly holds its RGB. Opening reads the zip's directory and the two CSVs only (the real
file has 50,688 train pairs); each image's facts are checked as it is read (`DenseDepthZip.sample`). Every refusal is
a `DenseDepthZipError` naming the zip and the member or fact that does not hold.
"""

from __future__ import annotations

import os
import posixpath
import re
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from depthcore.checks import check_fraction, check_index, check_int
from depthcore.codec import ImageDecodeError, decode_image, depth_png_to_metres, open_image
from depthcore.config import Config
from depthcore.download import RemoteFile, fetch
from depthcore.errors import DepthcoreError
from depthcore.files import Closing
from depthcore.nyu import FRAME_SHAPE, HEIGHT, WIDTH
from depthcore.shards import Sample
from depthcore.sources.base import Opened, Source

TRAIN_CSV, TEST_CSV = "nyu2_train.csv", "nyu2_test.csv"
CSV_FOLDERS = ("data/", "")  # where the CSVs may be: under data/ (the published zip), else at the zip's root
#: Bits per depth PNG value and what a value means, train then test.
TRAIN_DEPTH = (8, "metres = value / 255 * 10")
TEST_DEPTH = (16, "millimetres")
_DEPTH_MODES = ("L", "RGB", "I", "I;16", "I;16B", "I;16L")  # Pillow modes of greyscale 8/16-bit and 3-channel PNGs
# what zipfile raises on damaged data: bad headers or CRC, bad deflate streams, short reads, unknown compression
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError)
_REFETCH_HINT = "the zip is damaged or not DenseDepth's nyu_data.zip: download it again"
FILE_NAME = "nyu_data.zip"
#: A scene name's recording letter: NYU's raw scene list has `kitchen_0028a`, `kitchen_0028b`, ... for recordings of
#: one room, which the zip names `kitchen_0028a_out`, `kitchen_0028b_out`.
_RECORDING = re.compile(r"(?<=\d{4})[a-z]+(?=(_out)?$)")


class DenseDepthZipError(DepthcoreError, ValueError):
    """A file is not a readable DenseDepth nyu_data.zip in the expected layout; the message names what fails."""


class DenseDepthZip(Closing):
    """DenseDepth's nyu_data.zip at `path`, opened read-only; a context manager and a `shards.SampleSource`.

    `len(z)` = `num_train` + `num_test` images; `z.sample(i)` -> `Sample` of the stored file bytes; `z.scene(i)` the
    scene of train image i; `z.member_names(i)` its (rgb, depth) members. The open zip is reopened in a forked
    process (handles must not be shared across processes).
    """

    has_raw_depth = False  # DenseDepth's zip stores filled depth only

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: zipfile.ZipFile | None = _open_zip(self.path)
        self._pid = os.getpid()
        self._closed = False
        try:
            names = set(self._file.namelist())
            train = self._read_csv(_find_csv(self.path, names, TRAIN_CSV), names)
            test = self._read_csv(_find_csv(self.path, names, TEST_CSV), names)
            self._scenes = [self._train_scene(csv, number, rgb) for csv, number, rgb, _ in train]
        except BaseException:
            self.close()
            raise
        self._rows = [(rgb, depth) for _, _, rgb, depth in train + test]
        self.num_train, self.num_test = len(train), len(test)

    def close(self) -> None:
        """Close the zip; reading afterwards raises ValueError."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._closed = True

    def __len__(self) -> int:
        return len(self._rows)

    def scene(self, i: int) -> str:
        """The scene (folder name) of train image i, i in [0, num_train)."""
        return self._scenes[self._check_index(i, self.num_train, "a train image index")]

    def member_names(self, i: int) -> tuple[str, str]:
        """The (rgb, depth) member names of image i, as the CSV gives them."""
        return self._rows[self._check_index(i, len(self), "an image index")]

    def sample(self, i: int) -> Sample:
        """Image i as stored: rgb (N,) uint8 bytes of the JPEG (train) or PNG (test), depth (M,) uint8 bytes of the
        depth PNG, no raw depth.

        Checked first (a `DenseDepthZipError` naming the member otherwise): the RGB is a 640x480 RGB image (header
        only); the depth PNG decodes to 480x640, greyscale or 3 equal channels, 8-bit for train, 16-bit for test.
        """
        i = self._check_index(i, len(self), "an image index")
        rgb_name, depth_name = self._rows[i]
        bits, meaning = TRAIN_DEPTH if i < self.num_train else TEST_DEPTH
        rgb, depth = self._read(rgb_name), self._read(depth_name)
        _check_rgb(rgb, self._what(rgb_name))
        _check_depth(depth, self._what(depth_name), bits, meaning)
        return Sample(np.frombuffer(rgb, np.uint8).copy(), np.frombuffer(depth, np.uint8).copy(), None)

    def _what(self, member: str) -> str:
        return f"{self.path}: {member}"

    def _zip(self) -> zipfile.ZipFile:
        """The open zip of this process: reopened after a fork, refused after `close`."""
        if self._closed:
            raise ValueError(f"expected an open zip, got {self.path} closed")
        if self._file is None or self._pid != os.getpid():
            self._file, self._pid = _open_zip(self.path), os.getpid()
        return self._file

    def _read(self, member: str) -> bytes:
        try:
            return self._zip().read(member)
        except _READ_ERRORS as err:
            raise DenseDepthZipError(f"{self._what(member)}: cannot read it ({err}); {_REFETCH_HINT}") from None

    def _read_csv(self, csv: str, names: set[str]) -> list[tuple[str, int, str, str]]:
        """The rows of `csv` as (csv, line number, rgb member, depth member), blank lines skipped."""
        try:
            text = self._read(csv).decode("utf-8")
        except UnicodeDecodeError as err:
            raise DenseDepthZipError(f"{self._what(csv)}: expected UTF-8 text ({err}); {_REFETCH_HINT}") from None
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            paths = [part.strip() for part in line.split(",")]
            if len(paths) != 2 or not all(paths):
                raise DenseDepthZipError(
                    f"{self._what(csv)} line {number}: expected `rgb path,depth path`, got {line!r}; {_REFETCH_HINT}"
                )
            for member in paths:
                if member not in names:
                    raise DenseDepthZipError(
                        f"{self._what(csv)} line {number}: names {member}, which the zip does not hold; {_REFETCH_HINT}"
                    )
            rows.append((csv, number, paths[0], paths[1]))
        return rows

    def _train_scene(self, csv: str, number: int, rgb: str) -> str:
        """The folder that directly holds a train RGB member: its scene."""
        scene = posixpath.basename(posixpath.dirname(rgb))
        if not scene:
            raise DenseDepthZipError(
                f"{self._what(csv)} line {number}: expected the train RGB inside a scene folder "
                f"(data/nyu2_train/<scene>/<n>.jpg), got {rgb}; {_REFETCH_HINT}"
            )
        return scene

    def _check_index(self, i: int, stop: int, what: str) -> int:
        return check_index(what, i, stop, f"for {self.path}")


def room(scene: str) -> str:
    """The room a scene was recorded in: its name without the recording letter (`kitchen_0028a_out` ->
    `kitchen_0028_out`); a name without one is its own room."""
    return _RECORDING.sub("", scene)


def densedepth_splits(z: DenseDepthZip, val_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """{"train", "val", "test"}: sorted int64 indices into `z`, validation held out by whole rooms.

    test: every test image. val: the train images of the first max(1, round(val_fraction * R)) of the R sorted room
    names (`room`) permuted by `np.random.default_rng(seed)`; train: the other train images. Frames of one scene are
    near-duplicates, and so are two recordings of one room, so no room is in two splits.
    """
    check_fraction("val_fraction", val_fraction)
    check_int("seed", seed, 0)
    rooms = np.array([room(z.scene(i)) for i in range(z.num_train)], dtype=str)  # (num_train,)
    names = np.unique(rooms)  # (R,) sorted
    num_val = max(1, round(val_fraction * len(names)))
    if num_val >= len(names):
        raise DenseDepthZipError(
            f"{z.path}: expected val_fraction {val_fraction} to leave at least one of the {len(names)} training "
            f"rooms for training, got {num_val} for validation; lower val_fraction or use a zip with more scenes"
        )
    val_names = names[np.random.default_rng(seed).permutation(len(names))[:num_val]]
    is_val = np.isin(rooms, val_names)  # (num_train,)
    return {
        "train": np.flatnonzero(~is_val).astype(np.int64),
        "val": np.flatnonzero(is_val).astype(np.int64),
        "test": np.arange(z.num_train, len(z), dtype=np.int64),
    }


def fetch_zip(config: Config, dest: Path) -> Path:
    """The zip at `dest`: already there, linked from `data.densedepth.path`, or downloaded from its url."""
    d = config.data.densedepth
    return fetch(RemoteFile(d.url, d.sha256 or None, None, "data.densedepth"), dest, local_path=d.path or None)


@contextmanager
def open_zip(config: Config, path: Path) -> Iterator[Opened]:
    """The zip at `path` opened for sharding: its samples, its splits (rooms held out) and their provenance."""
    data = config.data
    with DenseDepthZip(path) as zipped:
        splits = densedepth_splits(zipped, data.densedepth.val_fraction, data.seed)
        provenance = {"source": "densedepth", "split": "scenes", "seed": data.seed, "zip": path.name,
                      "zip_train_pairs": zipped.num_train, "zip_test_pairs": zipped.num_test}
        yield zipped, splits, provenance


SOURCE = Source(
    name="densedepth",
    file_name=FILE_NAME,
    raw_depth=False,
    fetch=fetch_zip,
    open=open_zip,
    nyu_test_split=lambda origin: "official",  # the zip's 654 test pairs are NYU's official test images (mm depth)
)


def _open_zip(path: Path) -> zipfile.ZipFile:
    """`path` opened as a zip, or a `DenseDepthZipError` for a missing, truncated or foreign file."""
    if not path.is_file():
        raise DenseDepthZipError(
            f"expected DenseDepth's nyu_data.zip at {path}, found no file; download it there or fix the path"
        )
    try:
        return zipfile.ZipFile(path)
    except _READ_ERRORS as err:
        raise DenseDepthZipError(
            f"{path}: expected a zip file (DenseDepth's nyu_data.zip), got one zipfile cannot read ({err}): "
            f"it is truncated or not a zip; download it again"
        ) from None


def _find_csv(path: Path, names: set[str], csv: str) -> str:
    """The member name of `csv` under one of `CSV_FOLDERS`."""
    for folder in CSV_FOLDERS:
        if folder + csv in names:
            return folder + csv
    raise DenseDepthZipError(
        f"{path}: expected data/{csv} (or {csv} at the zip's root) as in DenseDepth's nyu_data.zip, found neither; "
        f"is it the right zip? Use DenseDepth's nyu_data.zip (download it again if it is incomplete)"
    )


def _image(data: bytes, what: str) -> Image.Image:
    """The lazily decoded image in `data`, with a `DenseDepthZipError` if Pillow cannot read it."""
    try:
        return open_image(data, what)
    except ImageDecodeError as err:
        raise DenseDepthZipError(f"{err}; {_REFETCH_HINT}") from None


def _check_rgb(data: bytes, what: str) -> None:
    """An RGB member: a 640x480 RGB image (its header only)."""
    image = _image(data, what)
    if image.size != (WIDTH, HEIGHT) or image.mode != "RGB":
        raise DenseDepthZipError(
            f"{what}: expected a {WIDTH}x{HEIGHT} RGB image, got {image.size[0]}x{image.size[1]} mode {image.mode}; "
            f"{_REFETCH_HINT}"
        )


def _check_depth(data: bytes, what: str, bits: int, meaning: str) -> None:
    """A depth member: decodes to (480, 640) or (480, 640, 3) equal channels, `bits` per value."""
    mode = _image(data, what).mode
    if mode not in _DEPTH_MODES:
        raise DenseDepthZipError(
            f"{what}: expected a greyscale depth PNG (or 3 equal channels), got Pillow mode {mode}; {_REFETCH_HINT}"
        )
    try:
        values = decode_image(data, what)  # (H, W) or (H, W, 3)
    except ImageDecodeError as err:
        raise DenseDepthZipError(f"{err}; {_REFETCH_HINT}") from None
    if values.shape[:2] != FRAME_SHAPE:
        raise DenseDepthZipError(
            f"{what}: expected a depth PNG of {WIDTH}x{HEIGHT}, got {values.shape[1]}x{values.shape[0]}; "
            f"{_REFETCH_HINT}"
        )
    found = 8 * values.dtype.itemsize
    if found != bits:
        raise DenseDepthZipError(
            f"{what}: expected depth values of {bits} bits ({meaning}), got {found}-bit values; {_REFETCH_HINT}"
        )
    try:
        depth_png_to_metres(values, what)  # refuses unequal channels
    except ValueError as err:
        raise DenseDepthZipError(f"{err}; {_REFETCH_HINT}") from None
