"""Source `synthetic` (the default): rooms rendered offline (`depthcore.sources.scenes`, `depthcore.sources.render`)
in the layouts of the real data sets, deterministic by `data.seed`.

- `write_synthetic_nyu`: NYU Depth v2's labeled .mat file (`depthcore.sources.nyu_mat`), what the download stage
  renders (`data.synthetic.num_images` rooms), split by `data.split` like the real file. Image i depends only on
  (seed, i) and HDF5 writes no timestamps: the same seed gives the same bytes, and the first k images do not depend
  on `num_images`.
- `write_synthetic_densedepth_zip`: DenseDepth's nyu_data.zip (`depthcore.sources.densedepth`), for tests and
  benchmarks: scenes of several video-like frames, and test images. Each image depends only on (seed, scene, frame)
  or (seed, test index); zip members carry fixed timestamps: the same arguments give the same bytes.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from depthcore.checks import check_int
from depthcore.codec import DEPTH_8BIT_SCALE, encode_png, metres_to_mm
from depthcore.config import Config
from depthcore.files import atomic_path
from depthcore.nyu import HEIGHT, WIDTH
from depthcore.progress import bar
from depthcore.sources.base import Source
from depthcore.sources.nyu_mat import open_mat
from depthcore.sources.nyuv2 import FILE_NAME
from depthcore.sources.render import render_scene
from depthcore.sources.scenes import next_frame, random_scene

MATLAB_HEADER_TEXT = "MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Sat Jan  1 00:00:00 2000 HDF5 schema 1.00 ."
USERBLOCK_SIZE = 512  # the MATLAB header lives in the HDF5 user block
_DEFLATE_LEVEL = 1  # fastest zlib level: depth compresses well even at 1
#: Scene names of the synthetic DenseDepth zip are `<kind>_<nnnn>_out`, as in the real one.
SCENE_KINDS = ("living_room", "bedroom", "kitchen", "bathroom", "dining_room", "office", "study_room", "classroom")
JPEG_QUALITY = 90  # the train RGB frames' JPEG quality
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest zip timestamp, for every member: no wall-clock time in the zip
_TRAIN_KEY, _TEST_KEY = 0, 1  # spawn keys of the zip's train frames and test images: they never share a draw


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


def write_synthetic_densedepth_zip(
    path: str | Path, num_scenes: int, frames_per_scene: int, num_test: int, seed: int, *, progress: bool = False
) -> Path:
    """Render rooms from `seed` into a zip laid out like DenseDepth's nyu_data.zip (`depthcore.sources.densedepth`).

    Train: `num_scenes` scenes `<kind>_<nnnn>_out` (`scene_name`), each `frames_per_scene` frames of one room
    (`random_scene`) seen by a camera that moves a little between frames (`next_frame`), as
    data/nyu2_train/<scene>/<n>.jpg (640x480 RGB JPEG, quality `JPEG_QUALITY`) and <n>.png (8-bit greyscale,
    round(depth / 10 * 255)), n from 1. Test: `num_test` images, each a room of its own, as
    data/nyu2_test/<nnnnn>_colors.png (RGB) and <nnnnn>_depth.png (16-bit greyscale, millimetres), nnnnn from 00000.
    data/nyu2_train.csv and data/nyu2_test.csv list the `rgb,depth` pairs in that order, without a header.
    Written into a temporary file beside `path`, renamed into place when complete. Returns `path`.
    """
    check_int("num_scenes", num_scenes, 1)
    check_int("frames_per_scene", frames_per_scene, 1)
    check_int("num_test", num_test, 1)
    check_int("seed", seed, 0)
    total = num_scenes * frames_per_scene + num_test
    train_rows, test_rows = [], []
    with (
        atomic_path(path) as tmp,
        zipfile.ZipFile(tmp, "w") as zf,
        bar(total=total, desc="rendering rooms", unit="img", disable=not progress) as progress_bar,
    ):
        for s in range(num_scenes):
            scene = random_scene(_image_rng(seed, _TRAIN_KEY, s, 0))
            for n in range(frames_per_scene):
                if n:
                    scene = next_frame(scene, _image_rng(seed, _TRAIN_KEY, s, n))
                rgb, depth, _ = render_scene(scene)  # (480, 640, 3) uint8, (480, 640) float32 m
                stem = f"data/nyu2_train/{scene_name(s)}/{n + 1}"
                _add_member(zf, stem + ".jpg", _jpeg(rgb))
                _add_member(zf, stem + ".png", encode_png(_depth_8bit(depth)))
                train_rows.append(f"{stem}.jpg,{stem}.png")
                progress_bar.update()
        for t in range(num_test):
            rgb, depth, _ = render_scene(random_scene(_image_rng(seed, _TEST_KEY, t)))
            stem = f"data/nyu2_test/{t:05d}"
            _add_member(zf, stem + "_colors.png", encode_png(rgb))
            _add_member(zf, stem + "_depth.png", encode_png(metres_to_mm(depth, stem)))
            test_rows.append(f"{stem}_colors.png,{stem}_depth.png")
            progress_bar.update()
        _add_member(zf, "data/nyu2_train.csv", "".join(row + "\n" for row in train_rows).encode())
        _add_member(zf, "data/nyu2_test.csv", "".join(row + "\n" for row in test_rows).encode())
    return Path(path)


def scene_name(s: int) -> str:
    """The name of the zip's scene s (from 0): `<kind>_<nnnn>_out`, kinds in turn, numbered from 0001 per kind."""
    kind, number = SCENE_KINDS[s % len(SCENE_KINDS)], s // len(SCENE_KINDS) + 1
    return f"{kind}_{number:04d}_out"


def _image_rng(seed: int, *key: int) -> np.random.Generator:
    """The generator of one zip image: `seed` with spawn key `key`, so no draw coincides with the .mat's [seed, i]."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _jpeg(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> JPEG bytes at `JPEG_QUALITY`."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _depth_8bit(depth: np.ndarray) -> np.ndarray:
    """(H, W) metres -> (H, W) uint8 as DenseDepth's train depth: round(depth / 10 * 255), clipped to [0, 255]."""
    top = np.iinfo(np.uint8).max
    return np.clip(np.rint(depth.astype(np.float64) * DEPTH_8BIT_SCALE), 0, top).astype(np.uint8)


def _add_member(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    """Store `data` (already compressed images, small CSVs) as `name` with a fixed timestamp and attributes."""
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.create_system = 3  # unix, whatever the host
    info.external_attr = 0o644 << 16
    zf.writestr(info, data, compress_type=zipfile.ZIP_STORED)


def render_mat(config: Config, dest: Path) -> Path:
    """Render `data.synthetic.num_images` rooms from `data.seed` into the .mat at `dest`."""
    return write_synthetic_nyu(dest, config.data.synthetic.num_images, config.data.seed, progress=True)


SOURCE = Source(
    name="synthetic",
    file_name=FILE_NAME,
    raw_depth=True,
    fetch=render_mat,
    open=open_mat,
    nyu_test_split=lambda origin: None,  # rendered rooms, not NYU's images
)
