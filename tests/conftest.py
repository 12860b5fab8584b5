"""Shared fixtures: a tiny synthetic .mat and its shards. Helpers that tests import live in tests/helpers.py.

Under pytest-xdist (`make test` runs 2 workers) each worker, and every process it starts (DVC stages, torchrun),
computes on its share of the cores: two workers that each ran as many threads as there are cores would oversubscribe
them, and a thread waiting for a descheduled sibling makes a step many times slower. The main process makes a folder
for the whole run, in which runs that several tests compare against are built once (tests/helpers.built_once).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from depthcore.shards import write_shards
from depthcore.sources.nyu_mat import MatSamples, NyuMat
from depthcore.sources.synthetic import write_synthetic_nyu
from depthcore.splits import make_splits
from tests.helpers import SHARED_ENV, split_config

TINY_IMAGES = 8  # split 4 train / 2 val / 2 test

_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    _THREADS = max(1, torch.get_num_threads() // _WORKERS)  # torch's default: one thread per usable core
    os.environ["OMP_NUM_THREADS"] = str(_THREADS)  # for the processes tests start
    torch.set_num_threads(_THREADS)


@pytest.fixture(scope="session")
def tiny_mat(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("nyu") / "nyu.mat"
    write_synthetic_nyu(path, TINY_IMAGES, seed=0)
    return path


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory, tiny_mat) -> Path:
    out = tmp_path_factory.mktemp("data") / "shards"
    with NyuMat(tiny_mat) as reader:
        splits = make_splits(len(reader), split_config("random", train_fraction=0.5, val_fraction=0.25), 0)
        write_shards(MatSamples(reader), splits, out, 2, {"source": "synthetic", "split": "random", "seed": 0})
    return out


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first (a stable sort), so that under pytest-xdist the long ones start early and the short ones fill
    in around them, instead of one long test running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_configure(config: pytest.Config) -> None:
    """The run's shared folder (tests/helpers.built_once), made by the main process before pytest-xdist starts its
    workers, which inherit its path."""
    if not hasattr(config, "workerinput"):
        os.environ[SHARED_ENV] = tempfile.mkdtemp(prefix="depthcore-tests-")


def pytest_unconfigure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):
        shutil.rmtree(os.environ.pop(SHARED_ENV), ignore_errors=True)
