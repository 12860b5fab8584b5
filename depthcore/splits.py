"""Train / validation / test splits of the labeled NYU images, as data.

Two methods (`data.split.method`):
- `random`: the report's seeded 80/10/10 split. The image order is
  `numpy.random.default_rng(seed).permutation(n)`; the first `floor(train_fraction * n)` go to train, the next
  `floor(val_fraction * n)` to val, the rest to test (1449 images at 0.8 / 0.1 -> 1159 / 144 / 146, the
  report's 1159 training images).
- `official`: NYU's `splits.mat` (795 train / 654 test, 1-based in the file). Validation is a seeded random
  subset of the official training images of size `floor(official_val_fraction * 795 + 0.5)` (0.1 -> 80,
  leaving 715 to train).

Every split is a sorted int64 array of 0-based image indices; `write_splits` stores them as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.io

from depthcore.checks import check_fraction, check_int
from depthcore.config import SplitConfig, official_val_count, random_split_counts
from depthcore.files import write_text
from depthcore.nyu import NYU_NUM_IMAGES, OFFICIAL_TRAIN_COUNT

SPLIT_NAMES = ("train", "val", "test")
METHODS = ("random", "official")
OFFICIAL_TEST_COUNT = 654


def make_splits(num_images: int, split: SplitConfig, seed: int) -> dict[str, np.ndarray]:
    """Split `num_images` images into {"train", "val", "test"}: disjoint, complete, sorted 0-based int64.

    `split` is `data.split`: its `train_fraction`, `val_fraction` are for `random`; `official_file`,
    `official_val_fraction` for official.
    """
    check_int("num_images", num_images, 1)
    check_int("seed", seed, 0)
    if split.method == "random":
        return _random_splits(num_images, seed, split.train_fraction, split.val_fraction)
    if split.method == "official":
        return _official_splits(num_images, seed, split.official_file or None, split.official_val_fraction)
    raise ValueError(f"expected data.split.method to be one of {' | '.join(METHODS)}, got {split.method!r}")


def _random_splits(n: int, seed: int, train_fraction: float, val_fraction: float) -> dict[str, np.ndarray]:
    """Seeded permutation cut into floor / floor / rest."""
    check_fraction("train_fraction", train_fraction)
    check_fraction("val_fraction", val_fraction)
    if train_fraction + val_fraction >= 1:
        raise ValueError(
            f"expected train_fraction + val_fraction < 1 (the rest is the test split), "
            f"got {train_fraction} + {val_fraction} = {train_fraction + val_fraction}"
        )
    counts = random_split_counts(n, train_fraction, val_fraction)
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        raise ValueError(
            f"expected every split to be non-empty, got {counts} for {n} images with train_fraction "
            f"{train_fraction} and val_fraction {val_fraction}; use more images or other fractions"
        )
    order = np.random.default_rng(seed).permutation(n)
    return _sorted_parts(order, counts["train"], counts["val"])


def _official_splits(
    n: int, seed: int, official_file: str | Path | None, official_val_fraction: float
) -> dict[str, np.ndarray]:
    """NYU's train / test from `official_file`, with a seeded validation subset carved from train."""
    if n != NYU_NUM_IMAGES:
        raise ValueError(
            f"official split needs the {NYU_NUM_IMAGES}-image NYU file, got {n} images; "
            f"use data.split.method=random"
        )
    if official_file is None:
        raise ValueError("expected official_file (NYU's splits.mat) for the official split, got None")
    check_fraction("official_val_fraction", official_val_fraction)
    train, test = read_official_splits(official_file)
    n_val = official_val_count(official_val_fraction)
    if n_val in (0, len(train)):
        raise ValueError(
            f"expected official_val_fraction to leave both train and val non-empty, got "
            f"{official_val_fraction} -> {n_val} of {len(train)} training images for validation"
        )
    order = train[np.random.default_rng(seed).permutation(len(train))]
    parts = _sorted_parts(order, len(train) - n_val, n_val)
    return {"train": parts["train"], "val": parts["val"], "test": test}


def read_official_splits(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read NYU's splits.mat (MATLAB v5; `trainNdxs` (795, 1), `testNdxs` (654, 1), 1-based).

    Returns (train, test): sorted 0-based int64 indices, checked to be disjoint and to cover all 1449 images.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"expected NYU's splits.mat at {path}, found nothing (the project keeps a copy in splits/)"
        )
    mat = scipy.io.loadmat(path)
    missing = [key for key in ("trainNdxs", "testNdxs") if key not in mat]
    if missing:
        raise ValueError(f"{path}: expected keys trainNdxs and testNdxs, missing {missing}")
    train = np.sort(mat["trainNdxs"].astype(np.int64).ravel()) - 1
    test = np.sort(mat["testNdxs"].astype(np.int64).ravel()) - 1
    if (len(train), len(test)) != (OFFICIAL_TRAIN_COUNT, OFFICIAL_TEST_COUNT):
        raise ValueError(
            f"{path}: expected {OFFICIAL_TRAIN_COUNT} train and {OFFICIAL_TEST_COUNT} test indices, "
            f"got {len(train)} and {len(test)}"
        )
    together = np.concatenate([train, test])
    if not np.array_equal(np.sort(together), np.arange(NYU_NUM_IMAGES)):
        raise ValueError(
            f"{path}: expected train and test to cover images 1..{NYU_NUM_IMAGES} once each, they do not"
        )
    return train, test


def write_splits(splits: dict[str, np.ndarray], path: str | Path) -> None:
    """Write the splits as JSON {"train": [...], "val": [...], "test": [...]}, atomically (temp + rename)."""
    if set(splits) != set(SPLIT_NAMES):
        raise ValueError(f"expected split names {list(SPLIT_NAMES)}, got {sorted(splits)}")
    data = {name: [int(i) for i in splits[name]] for name in SPLIT_NAMES}
    write_text(path, json.dumps(data, indent=1) + "\n")


def read_splits(path: str | Path) -> dict[str, np.ndarray]:
    """Read splits written by `write_splits` back as sorted int64 arrays."""
    with open(path) as f:
        data = json.load(f)
    return {name: np.asarray(data[name], dtype=np.int64) for name in SPLIT_NAMES}


def _sorted_parts(order: np.ndarray, n_train: int, n_val: int) -> dict[str, np.ndarray]:
    """Cut `order` into train / val / rest, each sorted int64."""
    cuts = np.split(order.astype(np.int64), [n_train, n_train + n_val])
    return {name: np.sort(part) for name, part in zip(SPLIT_NAMES, cuts, strict=True)}

