"""The NYU-layout .mat writer: deterministic bytes, MATLAB v7.3 layout, values in range, nothing left on failure."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from depthcore.sources import synthetic
from depthcore.sources.nyu_mat import NyuMat
from depthcore.sources.scenes import Scene
from depthcore.sources.synthetic import write_synthetic_nyu


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("synthetic")
    return {
        "a": write_synthetic_nyu(d / "a.mat", 2, seed=7),
        "b": write_synthetic_nyu(d / "b.mat", 2, seed=7),
        "one": write_synthetic_nyu(d / "one.mat", 1, seed=7),
        "other": write_synthetic_nyu(d / "other.mat", 2, seed=8),
    }


def test_same_seed_same_bytes(files: dict[str, Path]) -> None:
    assert files["a"].read_bytes() == files["b"].read_bytes()
    assert files["a"].read_bytes() != files["other"].read_bytes()
    # image i depends on (seed, i) only
    with NyuMat(files["a"]) as two, NyuMat(files["one"]) as one:
        np.testing.assert_array_equal(two[0][0], one[0][0])
        np.testing.assert_array_equal(two.raw_depth(0), one.raw_depth(0))
        assert not np.array_equal(two[0][1], two[1][1])


def test_matlab_73_layout(files: dict[str, Path]) -> None:
    head = files["a"].read_bytes()[:512]
    assert head.startswith(b"MATLAB 7.3 MAT-file, Platform: ")
    assert head[124:128] == b"\x00\x02IM"  # version 0x0200 and the endian indicator, little-endian
    assert head[128:] == bytes(384)
    with h5py.File(files["a"], "r") as f:
        assert f.userblock_size == 512
        assert sorted(f.keys()) == ["depths", "images", "rawDepths"]
        assert (f["images"].shape, f["images"].dtype) == ((2, 3, 640, 480), np.uint8)
        for name in ("depths", "rawDepths"):
            assert (f[name].shape, f[name].dtype) == ((2, 640, 480), np.float32)
            assert f[name].attrs["MATLAB_class"] == b"single"
        assert f["images"].attrs["MATLAB_class"] == b"uint8"


def test_values_in_range(files: dict[str, Path]) -> None:
    with NyuMat(files["a"]) as m:
        assert len(m) == 2
        for i in range(2):
            rgb, depth = m[i]
            raw = m.raw_depth(i)
            assert 0.5 <= depth.min() and depth.max() <= 10.0  # camera clear of everything; NYU's 10 m cap
            holes = raw == 0
            assert 0.001 < holes.mean() < 0.5
            np.testing.assert_array_equal(raw[~holes], depth[~holes])
            assert raw.max() <= 8.0
            assert rgb.std() > 10 and int(rgb.max()) - int(rgb.min()) > 100


def test_bad_arguments_and_nothing_left_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in (0, -1, 2.0, True, "3"):
        with pytest.raises(ValueError, match="expected num_images to be an integer >= 1"):
            write_synthetic_nyu(tmp_path / "x.mat", bad, seed=0)
    with pytest.raises(ValueError, match="expected seed to be an integer >= 0"):
        write_synthetic_nyu(tmp_path / "x.mat", 1, seed=-1)

    def fail(scene: Scene) -> None:
        raise RuntimeError("render failed")

    monkeypatch.setattr(synthetic, "render_scene", fail)
    with pytest.raises(RuntimeError, match="render failed"):
        write_synthetic_nyu(tmp_path / "x.mat", 2, seed=0)
    assert list(tmp_path.iterdir()) == []
