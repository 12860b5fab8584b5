"""Shared fixtures: a tiny synthetic .mat and its shards. Helpers that tests import live in tests/helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from depthcore.nyu import NyuMat
from depthcore.shards import MatSamples, write_shards
from depthcore.splits import make_splits
from depthcore.synthetic import write_synthetic_nyu

TINY_IMAGES = 8  # split 4 train / 2 val / 2 test


@pytest.fixture(scope="session")
def tiny_mat(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("nyu") / "nyu.mat"
    write_synthetic_nyu(path, TINY_IMAGES, seed=0)
    return path


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory, tiny_mat) -> Path:
    out = tmp_path_factory.mktemp("data") / "shards"
    with NyuMat(tiny_mat) as reader:
        splits = make_splits(len(reader), "random", 0, train_fraction=0.5, val_fraction=0.25)
        write_shards(MatSamples(reader), splits, out, 2, {"source": "synthetic", "split": "random", "seed": 0})
    return out
