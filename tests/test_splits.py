from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from depthcore.splits import make_splits, read_splits, write_splits
from tests.helpers import split_config

OFFICIAL = Path(__file__).resolve().parents[1] / "splits" / "nyuv2_splits.mat"
OFFICIAL_SHA256 = "6e081404491a8bfba2f066beaa9713ef6046f9007aa5f799f2a350506a580cee"  # as third parties record it


def assert_partition(splits: dict[str, np.ndarray], n: int) -> None:
    """Sorted int64 parts, pairwise disjoint, together exactly 0..n-1."""
    assert list(splits) == ["train", "val", "test"]
    for part in splits.values():
        assert part.dtype == np.int64
        assert np.all(np.diff(part) > 0)
    together = np.concatenate(list(splits.values()))
    assert len(together) == n
    assert set(together.tolist()) == set(range(n))


def test_random_split_counts_for_the_nyu_file():
    splits = make_splits(1449, split_config("random"), 0)
    # floor(0.8 * 1449) = 1159 (the report's training count), floor(0.1 * 1449) = 144, rest 146
    assert [len(splits[k]) for k in ("train", "val", "test")] == [1159, 144, 146]
    assert_partition(splits, 1449)


def test_random_split_counts_with_other_fractions():
    splits = make_splits(100, split_config("random", train_fraction=0.29, val_fraction=0.7), 3)
    # 0.29 * 100 is 28.999999999999996 in floating point; the split still takes 29
    assert [len(splits[k]) for k in ("train", "val", "test")] == [29, 70, 1]
    assert_partition(splits, 100)


def test_random_split_is_seeded():
    a = make_splits(50, split_config("random"), 7)
    b = make_splits(50, split_config("random"), 7)
    c = make_splits(50, split_config("random"), 8)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["train"], c["train"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train_fraction": 0.0}, "expected train_fraction to be a number in \\(0.0, 1.0\\)"),
        ({"train_fraction": 1.2}, "expected train_fraction to be a number in \\(0.0, 1.0\\)"),
        ({"val_fraction": -0.1}, "expected val_fraction to be a number in \\(0.0, 1.0\\)"),
        ({"train_fraction": 0.9, "val_fraction": 0.1}, "train_fraction \\+ val_fraction < 1"),
    ],
)
def test_random_split_rejects_bad_fractions(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_splits(100, split_config("random", **kwargs), 0)


def test_random_split_rejects_an_empty_split():
    # 5 images: floor(0.8 * 5) = 4 train, floor(0.1 * 5) = 0 val
    with pytest.raises(ValueError, match="every split to be non-empty.*'val': 0"):
        make_splits(5, split_config("random"), 0)


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="random \\| official, got 'eigen'"):
        make_splits(1449, split_config("eigen"), 0)


def test_committed_splits_file_is_nyus():
    assert hashlib.sha256(OFFICIAL.read_bytes()).hexdigest() == OFFICIAL_SHA256


def test_official_split_matches_the_file():
    splits = make_splits(1449, split_config("official", official_file=OFFICIAL, official_val_fraction=0.1), 0)
    # round(0.1 * 795) = 80 of the 795 official training images go to validation
    assert [len(splits[k]) for k in ("train", "val", "test")] == [715, 80, 654]
    assert_partition(splits, 1449)
    mat = scipy.io.loadmat(OFFICIAL)
    one_based_train = mat["trainNdxs"].ravel().astype(int)
    one_based_test = mat["testNdxs"].ravel().astype(int)
    assert sorted(np.concatenate([splits["train"], splits["val"]]).tolist()) == sorted((one_based_train - 1).tolist())
    assert splits["test"].tolist() == sorted((one_based_test - 1).tolist())
    # the file's first test entries are images 1, 2 and its first train entry image 3 (1-based)
    assert one_based_test[:2].tolist() == [1, 2] and one_based_train[0] == 3
    assert {0, 1} <= set(splits["test"].tolist())
    assert 2 in set(splits["train"].tolist()) | set(splits["val"].tolist())


def test_official_validation_is_seeded():
    a = make_splits(1449, split_config("official", official_file=OFFICIAL), 1)
    b = make_splits(1449, split_config("official", official_file=OFFICIAL), 1)
    c = make_splits(1449, split_config("official", official_file=OFFICIAL), 2)
    assert np.array_equal(a["val"], b["val"])
    assert not np.array_equal(a["val"], c["val"])
    assert np.array_equal(a["test"], c["test"])


def test_official_split_needs_the_nyu_file():
    with pytest.raises(ValueError, match="needs the 1449-image NYU file, got 200 images; use data.split.method=random"):
        make_splits(200, split_config("official", official_file=OFFICIAL), 0)


def test_official_split_needs_the_splits_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected NYU's splits.mat"):
        make_splits(1449, split_config("official", official_file=tmp_path / "missing.mat"), 0)


def test_official_split_rejects_a_wrong_file(tmp_path):
    path = tmp_path / "short.mat"
    scipy.io.savemat(path, {"trainNdxs": np.arange(1, 11, dtype=np.uint16)[:, None], "testNdxs": np.array([[11]])})
    with pytest.raises(ValueError, match="expected 795 train and 654 test indices, got 10 and 1"):
        make_splits(1449, split_config("official", official_file=path), 0)


def test_write_splits_round_trip(tmp_path):
    splits = make_splits(20, split_config("random"), 0)
    path = tmp_path / "sub" / "splits.json"
    write_splits(splits, path)
    with open(path) as f:
        raw = json.load(f)
    assert raw == {k: splits[k].tolist() for k in ("train", "val", "test")}
    back = read_splits(path)
    assert all(np.array_equal(back[k], splits[k]) and back[k].dtype == np.int64 for k in splits)
    assert [p.name for p in path.parent.iterdir()] == ["splits.json"]  # no temporary file left
