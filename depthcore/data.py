"""Torch Dataset over the shards, augmentation, and the DataLoader factory.

Augmentation (report and paper): a horizontal flip of image, depth and raw depth together with probability
`flip_p`, and with probability `channel_swap_p` a permutation of the RGB channels drawn uniformly from the
five that are not the identity (so the colours really change whenever the swap fires). Its randomness is a
function of (seed, epoch, index) only, never of worker, process or access order: any `num_workers` gives the
same samples, and a resumed run reproduces them.

Use per epoch (a fresh loader each epoch; workers are not persistent, so they always see the current epoch):

    train = ShardDataset("data/shards", "train", augment=True, seed=seed)
    for epoch in range(epochs):
        loader = make_loader(train, batch_size, shuffle=True, seed=seed, epoch=epoch, num_workers=n, device=d)
        for batch in loader:
            batch["rgb"]  # (B, 3, H, W) float32 in [0, 1]
            batch["depth"], batch["raw_depth"]  # (B, 1, H, W) float32 metres
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from depthcore.shards import open_shard, read_image, read_manifest, verify_shards

# The five non-identity orders of the (R, G, B) channels.
CHANNEL_PERMUTATIONS = tuple(p for p in itertools.permutations(range(3)) if p != (0, 1, 2))
_AUGMENT_STREAM, _LOADER_STREAM = (
    0,
    1,
)  # SeedSequence keys: augmentation draws and shuffle order never coincide


class ShardDataset(Dataset):
    """The images of one split of a shard set, as tensors.

    Item i is a dict: `rgb` (3, H, W) float32 in [0, 1], `depth` (1, H, W) float32 metres (holes filled),
    `raw_depth` (1, H, W) float32 metres (0 = no reading), `index` the position i in the split.
    `source_indices[i]` is the image's index in the source .mat file.
    """

    def __init__(
        self,
        shard_dir: str | Path,
        split: str,
        augment: bool = False,
        flip_p: float = 0.5,
        channel_swap_p: float = 0.25,
        seed: int = 0,
        verify: bool = True,
    ) -> None:
        for name, p in (("flip_p", flip_p), ("channel_swap_p", channel_swap_p)):
            if not 0 <= p <= 1:
                raise ValueError(f"expected {name} in [0, 1], got {p!r}")
        _check_seed("seed", seed)
        self.shard_dir = Path(shard_dir)
        manifest = verify_shards(self.shard_dir, [split]) if verify else read_manifest(self.shard_dir)
        if split not in manifest["shards"]:
            raise ValueError(f"expected a split in {list(manifest['shards'])}, got {split!r}")
        self.split = split
        self.augment = augment
        self.flip_p = flip_p
        self.channel_swap_p = channel_swap_p
        self.seed = seed
        self.epoch = 0
        self.source_indices = manifest["source_indices"][split]
        self._locations = [
            (entry["file"], j) for entry in manifest["shards"][split] for j in range(entry["count"])
        ]
        self._open: dict[str, Any] = {}
        self._pid = os.getpid()

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of `epoch`; call before creating the epoch's loader."""
        _check_seed("epoch", epoch)
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._locations)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(f"expected an index in [0, {len(self)}), got {i}")
        file, j = self._locations[i]
        rgb, depth, raw = read_image(self._shard(file), j)  # (H, W, 3) uint8, (H, W) f32, (H, W) f32
        if self.augment:
            flip, order = self.draw(i)
            if flip:
                rgb, depth, raw = rgb[:, ::-1], depth[:, ::-1], raw[:, ::-1]
            if order != (0, 1, 2):
                rgb = rgb[:, :, list(order)]
        return {
            "rgb": torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255),
            "depth": torch.from_numpy(np.ascontiguousarray(depth))[None],
            "raw_depth": torch.from_numpy(np.ascontiguousarray(raw))[None],
            "index": i,
        }

    def draw(self, i: int) -> tuple[bool, tuple[int, int, int]]:
        """The augmentation of item i this epoch: (flip?, channel order), from (seed, epoch, i) alone."""
        rng = np.random.default_rng([self.seed, _AUGMENT_STREAM, self.epoch, i])
        flip_u, swap_u, pick = rng.random(), rng.random(), int(rng.integers(len(CHANNEL_PERMUTATIONS)))
        order = CHANNEL_PERMUTATIONS[pick] if swap_u < self.channel_swap_p else (0, 1, 2)
        return bool(flip_u < self.flip_p), order

    def _shard(self, file: str) -> Any:
        """The open shard `file`, opened once per process (forked workers must not share handles)."""
        if self._pid != os.getpid():
            self._open, self._pid = {}, os.getpid()
        if file not in self._open:
            self._open[file] = open_shard(self.shard_dir / file)
        return self._open[file]

    def __getstate__(self) -> dict[str, Any]:
        """Spawned workers get the dataset without open file handles; they open their own."""
        return {**self.__dict__, "_open": {}}


def make_loader(
    dataset: ShardDataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    epoch: int = 0,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader for one epoch: calls `dataset.set_epoch(epoch)`; shuffle order seeded by (seed, epoch).

    Workers are not persistent (each epoch's loader starts its own, which sees the epoch just set); memory is
    pinned only when `device` is CUDA.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"expected a positive integer batch_size, got {batch_size!r}")
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"expected a non-negative integer num_workers, got {num_workers!r}")
    _check_seed("seed", seed)
    dataset.set_epoch(epoch)
    state = np.random.SeedSequence([seed, _LOADER_STREAM, epoch]).generate_state(2, dtype=np.uint32)
    generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        pin_memory=torch.device(device).type == "cuda",
        drop_last=drop_last,
        generator=generator,
        persistent_workers=False,
    )


def _check_seed(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"expected a non-negative integer {name}, got {value!r}")
