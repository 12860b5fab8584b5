from __future__ import annotations

import hashlib
import json
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from depthcore.codec import encode_png, metres_to_mm
from depthcore.shards import (
    Sample,
    ShardError,
    open_shard,
    read_image,
    read_manifest,
    verify_shards,
    write_shards,
)
from depthcore.sources.nyu_mat import MatSamples

H, W = 6, 8
SPLITS = {"train": np.array([0, 2, 3, 5, 6]), "val": np.array([1]), "test": np.array([4])}
PROVENANCE = {"source": "fake", "split": "random", "seed": 3}


class FakeReader:
    """In-memory stand-in for NyuMat: random images, depth in (0.3, 9.8) m, raw depth with holes (0)."""

    def __init__(self, n: int = 7, h: int = H, w: int = W, fail_at: int | None = None):
        rng = np.random.default_rng(0)
        self.rgb = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
        self.depth = rng.uniform(0.3, 9.8, (n, h, w)).astype(np.float32)
        self.raw = np.where(rng.random((n, h, w)) < 0.3, 0, self.depth + 0.01).astype(np.float32)
        self.fail_at = fail_at

    def __len__(self) -> int:
        return len(self.rgb)

    def __getitem__(self, i):
        if i == self.fail_at:
            raise OSError("disk gone")
        return self.rgb[i].copy(), self.depth[i].copy()  # a file reader returns fresh arrays

    def raw_depth(self, i):
        return self.raw[i].copy()


def fake(**kwargs) -> MatSamples:
    """FakeReader as shard samples, as the shard stage wraps the .mat."""
    return MatSamples(FakeReader(**kwargs))


class EncodedSource:
    """A source that stores files, as DenseDepth's zip does: PNG colour, 8-bit (train) or 16-bit (test) depth PNGs."""

    has_raw_depth = False

    def __init__(self, n: int = 4) -> None:
        rng = np.random.default_rng(1)
        self.rgb = rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
        self.depth8 = rng.integers(1, 256, (n, H, W), dtype=np.uint8)
        self.depth16 = rng.integers(1, 10_000, (n, H, W), dtype=np.uint16)

    def __len__(self) -> int:
        return len(self.rgb)

    def sample(self, i: int) -> Sample:
        depth = self.depth8[i] if i % 2 == 0 else self.depth16[i]
        as_bytes = [np.frombuffer(encode_png(a), np.uint8) for a in (self.rgb[i], depth)]
        return Sample(as_bytes[0], as_bytes[1], None)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def shard_dir(tmp_path):
    out = tmp_path / "shards"
    write_shards(fake(), SPLITS, out, shard_size=2, provenance=PROVENANCE)
    return out


def test_round_trip_is_exact_to_the_stated_bound(shard_dir):
    reader = FakeReader()
    for name, indices in SPLITS.items():
        files = sorted((shard_dir / name).glob("*.npz"))
        images = []
        for path in files:
            with np.load(path, allow_pickle=False) as npz:
                count = len(npz.files) // 3
                images += [
                    (npz[f"rgb_{j:04d}"], npz[f"depth_{j:04d}"], npz[f"raw_depth_{j:04d}"]) for j in range(count)
                ]
        assert len(images) == len(indices)
        for (rgb, depth, raw), i in zip(images, indices, strict=True):
            assert rgb.dtype == np.uint8 and depth.dtype == np.uint16 and raw.dtype == np.uint16
            assert np.array_equal(rgb, reader.rgb[i])
            assert np.abs(depth / 1000.0 - reader.depth[i]).max() <= 0.0005 + 1e-6
            assert np.abs(raw / 1000.0 - reader.raw[i]).max() <= 0.0005 + 1e-6
            assert np.array_equal(raw == 0, reader.raw[i] == 0)  # holes stay holes, readings stay readings


def test_shards_are_chunked_in_split_order(shard_dir):
    names = sorted(p.relative_to(shard_dir).as_posix() for p in shard_dir.rglob("*.npz"))
    # train: 5 images in shards of 2 -> 2 + 2 + 1
    assert names == [
        "test/test-00000.npz",
        "train/train-00000.npz",
        "train/train-00001.npz",
        "train/train-00002.npz",
        "val/val-00000.npz",
    ]
    with zipfile.ZipFile(shard_dir / "train/train-00002.npz") as zf:
        assert zf.namelist() == ["rgb_0000.npy", "depth_0000.npy", "raw_depth_0000.npy"]


def test_manifest_contents(shard_dir):
    manifest = json.loads((shard_dir / "manifest.json").read_text())
    assert manifest == read_manifest(shard_dir)
    assert manifest["counts"] == {"train": 5, "val": 1, "test": 1}
    assert manifest["source_indices"] == {k: v.tolist() for k, v in SPLITS.items()}
    assert manifest["image_shape"] == [H, W]
    assert manifest["shard_size"] == 2
    assert manifest["provenance"] == PROVENANCE
    assert "millimetres" in manifest["arrays"]["depth"] and "0.0005 m" in manifest["arrays"]["depth"]
    assert manifest["has_raw_depth"] is True
    assert [e["count"] for e in manifest["shards"]["train"]] == [2, 2, 1]
    for entries in manifest["shards"].values():
        for entry in entries:
            path = shard_dir / entry["file"]
            assert entry["bytes"] == path.stat().st_size
            assert entry["sha256"] == sha256(path)


def test_identical_inputs_give_identical_bytes(tmp_path, monkeypatch):
    write_shards(fake(), SPLITS, tmp_path / "a", shard_size=2, provenance=PROVENANCE)
    # a clock years later must not change a byte: zip entries carry no wall-clock time
    later = time.time() + 3 * 365 * 86400
    monkeypatch.setattr(time, "time", lambda: later)
    monkeypatch.setattr(time, "localtime", lambda secs=None: time.gmtime(later))
    write_shards(fake(), SPLITS, tmp_path / "b", shard_size=2, provenance=PROVENANCE)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 6
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_verify_accepts_intact_shards(shard_dir):
    assert verify_shards(shard_dir)["counts"]["train"] == 5


def test_tampered_shard_is_refused(shard_dir):
    path = shard_dir / "train/train-00001.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different content
    path.write_bytes(bytes(data))
    with pytest.raises(
        ShardError, match="train-00001.npz: expected SHA-256 [0-9a-f]{64}, found [0-9a-f]{64}.*dvc repro"
    ):
        verify_shards(shard_dir)
    verify_shards(shard_dir, ["val", "test"])  # the other splits are still fine


def test_truncated_and_missing_shards_are_refused(shard_dir):
    path = shard_dir / "val/val-00000.npz"
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ShardError, match=f"val-00000.npz: expected {size} bytes, found {size - 10}"):
        verify_shards(shard_dir, ["val"])
    path.unlink()
    with pytest.raises(ShardError, match="val-00000.npz: expected .* bytes, found no file"):
        verify_shards(shard_dir, ["val"])


def test_missing_manifest_is_reported(tmp_path):
    with pytest.raises(ShardError, match="expected a shard manifest at .*manifest.json"):
        read_manifest(tmp_path)


def test_failed_write_leaves_the_old_set_untouched(shard_dir):
    before = {p: p.read_bytes() for p in shard_dir.rglob("*") if p.is_file()}
    with pytest.raises(OSError, match="disk gone"):
        write_shards(fake(fail_at=3), SPLITS, shard_dir, shard_size=2, provenance=PROVENANCE)
    after = {p: p.read_bytes() for p in shard_dir.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in shard_dir.parent.iterdir()] == ["shards"]  # no temporary folder left behind


def test_rewrite_replaces_the_whole_set(shard_dir):
    write_shards(fake(), {"train": np.array([0])}, shard_dir, shard_size=2, provenance={})
    assert sorted(p.relative_to(shard_dir).as_posix() for p in shard_dir.rglob("*.npz")) == ["train/train-00000.npz"]
    assert read_manifest(shard_dir)["counts"] == {"train": 1}


@pytest.mark.parametrize(("value", "shown"), [(-0.5, "-0.5"), (70.0, "70.0"), (np.nan, "nan")])
def test_depth_outside_the_storable_range_is_refused(tmp_path, value, shown):
    reader = FakeReader()
    reader.depth[2, 1, 1] = value
    with pytest.raises(ValueError, match=f"source image 2: expected depth in \\[0, 65.535\\] m, got .*{shown}"):
        write_shards(MatSamples(reader), SPLITS, tmp_path / "s", shard_size=2, provenance={})


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="expected shard_size to be an integer in \\[1, 10000\\], got 0"):
        write_shards(fake(), SPLITS, tmp_path / "s", shard_size=0, provenance={})
    with pytest.raises(ValueError, match="split 'val': expected values in \\[0, 7\\), got 7..7"):
        write_shards(fake(), {"val": np.array([7])}, tmp_path / "s", shard_size=2, provenance={})


def test_peak_memory_does_not_grow_with_the_number_of_images(tmp_path):
    peaks = []
    for n in (4, 16):
        reader = fake(n=n, h=64, w=64)  # built before tracing: only the writer's own memory is measured
        tracemalloc.start()
        write_shards(reader, {"train": np.arange(n)}, tmp_path / f"s{n}", shard_size=2, provenance={})
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # one 64x64 image is 12 KiB of RGB + 2 x 16 KiB of depth; 12 more images would add > 300 KiB
    assert peaks[1] < peaks[0] + 100_000, peaks


def test_encoded_members_are_stored_as_the_source_stores_them(tmp_path):
    """Image files go into the shard byte for byte (stored, not deflated) and decode to the source's pixels: colour
    as is, 8-bit depth as value / 255 * 10 m, 16-bit depth as millimetres."""
    source = EncodedSource()
    out = tmp_path / "shards"
    manifest = write_shards(source, {"train": np.arange(4)}, out, shard_size=4, provenance={})
    assert manifest["has_raw_depth"] is False and manifest["image_shape"] == [H, W]
    with zipfile.ZipFile(out / "train/train-00000.npz") as zf:
        assert "raw_depth_0000.npy" not in zf.namelist()
        assert zf.getinfo("rgb_0001.npy").compress_type == zipfile.ZIP_STORED
    shard = open_shard(out / "train/train-00000.npz")
    for i in range(4):
        assert shard[f"rgb_{i:04d}"].tobytes() == source.sample(i).rgb.tobytes()
        rgb, depth, raw = read_image(shard, i)
        assert np.array_equal(rgb, source.rgb[i]) and raw is None
        expected = source.depth8[i] / 25.5 if i % 2 == 0 else source.depth16[i] / 1000.0  # by hand
        assert np.abs(depth - expected).max() < 1e-5 and depth.dtype == np.float32


def test_a_member_of_another_size_is_refused(tmp_path):
    class Odd(EncodedSource):
        def sample(self, i):
            if i == 2:
                return Sample(np.frombuffer(encode_png(np.zeros((H, W + 1, 3), np.uint8)), np.uint8),
                              super().sample(i).depth, None)
            return super().sample(i)

    with pytest.raises(ValueError, match=rf"source image 2: expected rgb of {H}x{W} pixels .* of {H}x{W + 1}"):
        write_shards(Odd(), {"train": np.arange(4)}, tmp_path / "s", shard_size=2, provenance={})
    assert not (tmp_path / "s").exists()


def test_depth_to_millimetres_a_block_of_rows_at_a_time():
    """metres_to_mm converts a wide map one row per block (2^20 pixels a block): every row lands in its place."""
    width = (1 << 19) + 1  # one row per block
    rows, cols = np.mgrid[0:5, 0:width]
    depth = (rows + (cols % 7) / 1000).astype(np.float32)  # row r, column c: r m + (c mod 7) mm
    np.testing.assert_array_equal(metres_to_mm(depth, "wide"), 1000 * rows + cols % 7)
