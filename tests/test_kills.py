"""A writer killed mid-write (SIGKILL: no cleanup runs) leaves its output as it was, and its temporary is cleared when
the output is written again: after the rerun the folder holds the expected outputs and nothing else.

Each writer runs in a child process that stalls at a known point of its write (a source image that takes a minute,
an object that takes a minute to pickle); the test waits until the write's temporary exists, kills the child, then
writes again in this process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from depthcore.checkpoint import save_atomic
from depthcore.shards import Sample, verify_shards, write_shards
from tests.helpers import ROOT

STALL_S = 60  # how long the child stalls: far longer than the test waits for it
WAIT_S = 30  # the longest the test waits for the child to reach its stall (it imports torch first)
SPLITS = {"train": np.arange(6), "test": np.arange(6, 8)}


class Images:
    """8 images of 4x5 pixels with depth; with `stall_at`, reading that image stalls (the writer is mid-set)."""

    has_raw_depth = False

    def __init__(self, stall_at: int | None = None) -> None:
        self.stall_at = stall_at

    def __len__(self) -> int:
        return 8

    def sample(self, i: int) -> Sample:
        if i == self.stall_at:
            time.sleep(STALL_S)
        rgb = np.full((4, 5, 3), i, np.uint8)
        return Sample(rgb, np.full((4, 5), 1000 + i, np.uint16), None)


class SlowToPickle:
    """Pickling this takes STALL_S seconds: torch.save is then inside its write, the temporary open."""

    def __reduce__(self):
        time.sleep(STALL_S)
        return (SlowToPickle, ())


def _kill_when(child: subprocess.Popen, sign: Path) -> None:
    """SIGKILL `child` as soon as `sign` exists (it has started writing), and wait for it to die."""
    deadline = time.monotonic() + WAIT_S
    while not sign.exists():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, f"{sign} never appeared"
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=WAIT_S) == -signal.SIGKILL


def _start(code: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_shard_writer_killed_mid_set_leaves_nothing_after_the_next_write(tmp_path):
    data = tmp_path / "data"
    write_shards(Images(), SPLITS, data / "shards", shard_size=2, provenance={})
    before = {p.name: p.read_bytes() for p in (data / "shards" / "train").iterdir()}
    child = _start("from tests.test_kills import Images, SPLITS; from depthcore.shards import write_shards; "
                   "write_shards(Images(stall_at=3), SPLITS, 'data/shards', shard_size=2, provenance={})", tmp_path)
    _kill_when(child, data / ".shards.tmp" / "train" / "train-00001.npz")  # shard 0 done, shard 1 begun
    assert ".shards.tmp" in _names(data)  # the litter of the kill...
    verify_shards(data / "shards")  # ...beside the old set, intact
    write_shards(Images(), SPLITS, data / "shards", shard_size=2, provenance={})
    assert _names(data) == ["shards"]
    assert _names(data / "shards") == ["manifest.json", "test", "train"]
    assert {p.name: p.read_bytes() for p in (data / "shards" / "train").iterdir()} == before  # the same bytes


def test_a_checkpoint_write_killed_midway_leaves_nothing_after_the_next_write(tmp_path):
    models = tmp_path / "models"
    save_atomic({"step": 1}, models / "checkpoint.pt")
    child = _start("from tests.test_kills import SlowToPickle; from depthcore.checkpoint import save_atomic; "
                   "from pathlib import Path; "
                   "save_atomic({'step': 2, 'stall': SlowToPickle()}, Path('models/checkpoint.pt'))", tmp_path)
    _kill_when(child, models / ".checkpoint.pt.tmp" / "checkpoint.pt")
    assert _names(models) == [".checkpoint.pt.tmp", "checkpoint.pt"]  # the litter of the kill...
    assert torch.load(models / "checkpoint.pt", weights_only=True) == {"step": 1}  # ...beside the old file, intact
    save_atomic({"step": 3}, models / "checkpoint.pt")
    assert _names(models) == ["checkpoint.pt"]
    assert torch.load(models / "checkpoint.pt", weights_only=True) == {"step": 3}
