from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from depthcore.sources.nyu_mat import NyuMat, NyuMatError
from tests.helpers import ROOT

H, W = 480, 640
MATLAB_73_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  2 00:00:00 2012 HDF5 schema 1.00 ."


def stored_images(n: int) -> np.ndarray:
    """(n, 3, 640, 480) uint8 as h5py sees MATLAB's images: value at [i, ch, col, row]."""
    i, ch, col, row = np.indices((n, 3, W, H))
    return ((row + 3 * col + 60 * ch + 17 * i) % 256).astype(np.uint8)


def stored_depths(n: int) -> np.ndarray:
    """(n, 640, 480) float32 as h5py sees MATLAB's depths: value at [i, col, row]."""
    i, col, row = np.indices((n, W, H))
    return (0.5 + 0.01 * row + 0.001 * col + i).astype(np.float32)


def stored_raw(n: int) -> np.ndarray:
    """Like stored_depths, with no reading (0) in the right half of the image (col >= 320)."""
    col = np.arange(W)[None, :, None]
    return np.where(col < 320, stored_depths(n), 0).astype(np.float32)


def write_mat(path: Path, n: int = 2, compression: str | None = None, **datasets: np.ndarray | None) -> Path:
    """A small file in the layout of nyu_depth_v2_labeled.mat; `datasets` replace (or, if None, drop) keys."""
    content = {"images": stored_images(n), "depths": stored_depths(n), "rawDepths": stored_raw(n), **datasets}
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, data in content.items():
            if data is not None:
                chunks = (1, *data.shape[1:]) if compression else None
                f.create_dataset(name, data=data, chunks=chunks, compression=compression)
    with open(path, "r+b") as f:
        f.write(MATLAB_73_HEADER)
    return path


def test_pixels_have_the_right_orientation(tmp_path: Path) -> None:
    with NyuMat(write_mat(tmp_path / "nyu.mat")) as m:
        assert len(m) == 2
        rgb, depth = m[1]
        raw = m.raw_depth(1)
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    assert depth.shape == (H, W) and depth.dtype == np.float32
    assert raw.shape == (H, W) and raw.dtype == np.float32
    # image 1, row 10, column 3: (10 + 3 * 3 + 60 * ch + 17) % 256
    assert rgb[10, 3].tolist() == [36, 96, 156]
    assert rgb[0, 0].tolist() == [17, 77, 137]
    # row 479, column 639: 479 + 1917 + 17 = 2413 = 9 * 256 + 109
    assert rgb[479, 639].tolist() == [109, 169, 229]
    assert depth[10, 3] == pytest.approx(0.5 + 0.1 + 0.003 + 1, abs=1e-6)
    assert depth[479, 0] == pytest.approx(0.5 + 4.79 + 1, abs=1e-6)
    assert raw[10, 3] == depth[10, 3] and raw[10, 400] == 0 and raw[479, 319] == depth[479, 319]


def test_whole_image_matches_an_image_space_formula(tmp_path: Path) -> None:
    row, col = np.indices((H, W))
    with NyuMat(write_mat(tmp_path / "nyu.mat", n=1)) as m:
        rgb, depth = m[0]
        raw = m.raw_depth(0)
    for ch in range(3):
        np.testing.assert_array_equal(rgb[:, :, ch], (row + 3 * col + 60 * ch) % 256)
    np.testing.assert_array_equal(depth, (0.5 + 0.01 * row + 0.001 * col).astype(np.float32))
    np.testing.assert_array_equal(raw, np.where(col < 320, depth, 0))
    assert rgb.flags.c_contiguous and depth.flags.c_contiguous and raw.flags.c_contiguous


def test_reads_compressed_chunks_and_numpy_integer_indices(tmp_path: Path) -> None:
    with NyuMat(write_mat(tmp_path / "nyu.mat", compression="gzip")) as m:
        rgb, depth = m[np.int64(1)]
    assert rgb[10, 3].tolist() == [36, 96, 156] and depth[10, 3] == pytest.approx(1.603, abs=1e-6)


def test_bad_indices(tmp_path: Path) -> None:
    with NyuMat(write_mat(tmp_path / "nyu.mat")) as m:
        for bad in (2, -1):
            with pytest.raises(IndexError, match=r"\[0, 2\)"):
                m[bad]
            with pytest.raises(IndexError):
                m.raw_depth(bad)
        with pytest.raises(TypeError, match="int"):
            m[1.0]
    with pytest.raises(ValueError, match="closed"):
        m[0]


@pytest.mark.parametrize(
    ("datasets", "expected"),
    [
        ({"rawDepths": None}, r"rawDepths.*keys: \['depths', 'images'\]"),
        ({"depths": None, "rawDepths": None}, r"got no \['depths', 'rawDepths'\].*keys: \['images'\]"),
        ({"images": np.zeros((2, 480, 640, 3), np.uint8)}, r"'images'.*shape.*\(2, 480, 640, 3\)"),
        ({"depths": np.zeros((2, 480, 640), np.float32)}, r"'depths'.*\(N >= 1, 640, 480\).*\(2, 480, 640\)"),
        ({"depths": stored_depths(2).astype(np.float64)}, r"'depths' of dtype float32, got float64"),
        ({"images": stored_images(2).astype(np.uint16)}, r"'images' of dtype uint8, got uint16"),
        ({"rawDepths": stored_raw(1)}, r"same number of images.*'rawDepths': 1"),
        (
            {"images": stored_images(0), "depths": stored_depths(0), "rawDepths": stored_raw(0)},
            r"N >= 1.*\(0, 3, 640, 480\)",
        ),
    ],
)
def test_layout_errors_name_the_file_and_the_problem(tmp_path: Path, datasets: dict, expected: str) -> None:
    path = write_mat(tmp_path / "bad.mat", **datasets)
    with pytest.raises(NyuMatError, match=expected) as info:
        NyuMat(path)
    assert str(path) in str(info.value)


def test_a_group_instead_of_a_dataset(tmp_path: Path) -> None:
    path = write_mat(tmp_path / "bad.mat", rawDepths=None)
    with h5py.File(path, "r+") as f:
        f.create_group("rawDepths")
    with pytest.raises(NyuMatError, match="expected 'rawDepths' to be a dataset, got a Group") as info:
        NyuMat(path)
    assert str(path) in str(info.value)


def test_truncated_file(tmp_path: Path) -> None:
    path = write_mat(tmp_path / "nyu.mat")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(NyuMatError, match="truncated or corrupt") as info:
        NyuMat(path)
    assert str(path) in str(info.value)


def test_corrupt_chunk_is_reported_when_read(tmp_path: Path) -> None:
    path = write_mat(tmp_path / "nyu.mat", compression="gzip")
    with h5py.File(path, "r") as f:
        chunk = f["depths"].id.get_chunk_info(0)  # image 0's compressed depth
    with open(path, "r+b") as f:
        f.seek(chunk.byte_offset + chunk.size // 2)
        f.write(b"\xff" * 64)
    with NyuMat(path) as m:
        with pytest.raises(NyuMatError, match=r"depths\[0\].*truncated or corrupt") as info:
            m[0]
        assert str(path) in str(info.value)
        assert m[1][1][10, 3] == pytest.approx(1.603, abs=1e-6)  # the other images still read


def test_corrupt_superblock(tmp_path: Path) -> None:
    path = write_mat(tmp_path / "nyu.mat")
    with open(path, "r+b") as f:
        f.seek(512)  # the HDF5 superblock, after the MATLAB user block
        f.write(b"\x00" * 64)
    with pytest.raises(NyuMatError, match="MATLAB 7.3 header but no HDF5 data") as info:
        NyuMat(path)
    assert str(path) in str(info.value)


def test_corrupt_dataset_header(tmp_path: Path) -> None:
    path = write_mat(tmp_path / "nyu.mat")
    with h5py.File(path, "r") as f:
        address = h5py.h5o.get_info(f["images"].id).addr  # relative to the superblock, after the user block
    with open(path, "r+b") as f:
        f.seek(512 + address)
        f.write(b"\xa5" * 16)
    with pytest.raises(NyuMatError, match="cannot open dataset 'images'.*truncated or corrupt") as info:
        NyuMat(path)
    assert str(path) in str(info.value)


def test_matlab_v5_file(tmp_path: Path) -> None:
    path = tmp_path / "splits.mat"
    scipy.io.savemat(path, {"trainNdxs": np.arange(1, 4, dtype=np.uint16)[:, None]})
    assert path.read_bytes().startswith(b"MATLAB 5.0 MAT-file")
    with pytest.raises(NyuMatError, match=r"MATLAB v5 MAT-file, not MATLAB v7.3") as info:
        NyuMat(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"<html>404 Not Found</html>", r"not an HDF5 file \(26 bytes\)"),
        (b"", r"not an HDF5 file \(0 bytes\)"),
    ],
)
def test_not_hdf5(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "nyu.mat"
    path.write_bytes(content)
    with pytest.raises(NyuMatError, match=expected) as info:
        NyuMat(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NyuMatError, match="no file at .*nope.mat"):
        NyuMat(tmp_path / "nope.mat")


def test_a_corrupt_mat_stops_the_shard_stage_with_one_line(tmp_path: Path) -> None:
    """A damaged source file is the user's to fix: one line on stderr and exit status 2, no traceback."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    source = tmp_path / "data" / "source" / "nyu_depth_v2_labeled.mat"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"MATLAB 7.3 MAT-file" + bytes(1000))  # a header, then no HDF5
    done = subprocess.run([sys.executable, str(ROOT / "stages" / "shard.py")], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: {Path('data/source/nyu_depth_v2_labeled.mat')} has a MATLAB 7.3 header but no HDF5 data (1019 bytes); "
        "the file is truncated or corrupt: download it again (or render the synthetic one again)"
    ]
    assert not (tmp_path / "data" / "shards").exists()
