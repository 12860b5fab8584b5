"""Shared fixtures: a tiny synthetic shard set and configs built from the committed params.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from depthcore.config import Config, build
from depthcore.nyu import NyuMat
from depthcore.shards import write_shards
from depthcore.splits import make_splits
from depthcore.synthetic import write_synthetic_nyu

ROOT = Path(__file__).resolve().parents[1]
TINY_IMAGES = 8  # split 4 train / 2 val / 2 test


def make_config(**overrides) -> Config:
    """params.yaml with dotted overrides, e.g. make_config(**{"train.epochs": 2})."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, value in overrides.items():
        *sections, key = dotted.split(".")
        node = raw
        for section in sections:
            node = node[section]
        node[key] = value
    return build(Config, raw)


def tiny_train_config(**overrides) -> Config:
    """A config that trains in seconds on the tiny shards: 2 epochs of 2 steps, fp32 on the CPU, no workers."""
    settings = {
        "train.epochs": 2,
        "train.batch_size": 2,
        "train.device": "cpu",
        "train.precision": "fp32",
        "train.num_workers": 0,
        "train.num_vis": 1,
        "eval.batch_size": 2,
        "eval.num_vis": 1,
    }
    return make_config(**{**settings, **overrides})


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
        write_shards(reader, splits, out, 2, {"source": "synthetic", "seed": 0, "split_method": "random"})
    return out
