"""Torch Dataset over the shards, augmentation, the epoch sampler and the DataLoader factory.

Augmentation (report and paper): a horizontal flip of image, depth and raw depth together with probability
`flip_p`, and with probability `channel_swap_p` a permutation of the RGB channels drawn uniformly from the
five that are not the identity (so the colours really change whenever the swap fires). Its randomness is a
function of (seed, epoch, index) only, never of worker, process or access order: any `num_workers` and any number
of processes give the same samples, and a resumed run reproduces them.

The epoch travels with the index: `EpochSampler` yields (epoch, index) pairs from the main process, so loader
workers can live for the whole run (`persistent_workers`) and still augment each epoch as its own. One loader
serves every epoch:

    train = ShardDataset("data/shards", "train", augment=config.augment, seed=seed)
    loader = make_loader(train, batch_size, shuffle=True, seed=seed, options=LoaderOptions(num_workers=n, device=d))
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            batch["rgb"]  # (B, 3, H, W) uint8: it becomes float in [0, 1] on the device (`Runtime.images`)
            batch["depth"]  # (B, 1, H, W) float32 metres; "raw_depth" too when the source has raw depth

Under torchrun each process reads its share of every epoch (`rank`, `world_size`): the epoch's order is cut
round-robin, so the processes' k-th batches together are the k-th batch of one process with `world_size` times
the batch size.

Before training, `verify_for_training` checks every shard of every split once per machine; the datasets are then
opened with `verify=False`.
"""

from __future__ import annotations

import itertools
import math
import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from depthcore.checks import check_int, check_probability
from depthcore.config import AugmentConfig
from depthcore.shards import ShardError, open_shard, read_image, read_manifest, verify_shards

# The five non-identity orders of the (R, G, B) channels.
CHANNEL_PERMUTATIONS = tuple(p for p in itertools.permutations(range(3)) if p != (0, 1, 2))
_AUGMENT_STREAM, _LOADER_STREAM = 0, 1  # SeedSequence keys: augmentation draws and shuffle order never coincide
#: Shards a dataset keeps open per process (each holds a file handle), the least recently read closed first. The
#: training order is a permutation of the whole split, so consecutive reads rarely share a shard and a cache cannot
#: save much there (reopening one reads only its zip directory); validation and test read in order, 32 images a
#: shard, so one open shard serves them. Unbounded, a worker of the paper's split (about 1,500 training shards)
#: would pass the usual limit of 1,024 open files.
MAX_OPEN_SHARDS = 8


class ShardDataset(Dataset):
    """The images of one split of a shard set, as tensors.

    `dataset[i]` is image i as stored; `dataset[(epoch, i)]` is image i augmented as in `epoch` with the
    probabilities of `augment` (params.yaml's `augment` section; the same as `dataset[i]` when it is None). An item
    is a dict: `rgb` (3, H, W) uint8, `depth` (1, H, W) float32 metres (holes filled), `raw_depth` (1, H, W) float32
    metres (0 = no reading) when the source has raw depth (`has_raw_depth`), and `index` i. `source_indices[i]` is
    the image's index in the source.
    """

    def __init__(
        self,
        shard_dir: str | Path,
        split: str,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        verify: bool = True,
    ) -> None:
        if augment is not None:
            check_probability("flip_p", augment.flip_p)
            check_probability("channel_swap_p", augment.channel_swap_p)
        check_int("seed", seed, 0)
        self.shard_dir = Path(shard_dir)
        manifest = verify_shards(self.shard_dir, [split]) if verify else read_manifest(self.shard_dir)
        if split not in manifest["shards"]:
            raise ValueError(f"expected a split in {list(manifest['shards'])}, got {split!r}")
        self.split = split
        self.augment = augment is not None
        self.flip_p = 0.0 if augment is None else augment.flip_p
        self.channel_swap_p = 0.0 if augment is None else augment.channel_swap_p
        self.seed = seed
        self.has_raw_depth = manifest["has_raw_depth"]
        self.source_indices = manifest["source_indices"][split]
        self._locations = [(entry["file"], j) for entry in manifest["shards"][split] for j in range(entry["count"])]
        self._open: OrderedDict[str, Any] = OrderedDict()  # file -> open shard, least recently read first
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self._locations)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, i = key if isinstance(key, tuple) else (None, key)
        if not 0 <= i < len(self):
            raise IndexError(f"expected an index in [0, {len(self)}), got {i}")
        file, j = self._locations[i]
        rgb, depth, raw = read_image(self._shard(file), j, file)  # (H, W, 3) uint8, (H, W) f32, (H, W) f32 | None
        if self.augment and epoch is not None:
            flip, order = self.draw(epoch, i)
            if flip:
                rgb, depth = rgb[:, ::-1], depth[:, ::-1]
                raw = None if raw is None else raw[:, ::-1]
            if order != (0, 1, 2):
                rgb = rgb[:, :, list(order)]
        item = {
            "rgb": torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))),  # (3, H, W) uint8
            "depth": torch.from_numpy(np.ascontiguousarray(depth))[None],  # (1, H, W)
            "index": i,
        }
        if raw is not None:
            item["raw_depth"] = torch.from_numpy(np.ascontiguousarray(raw))[None]
        return item

    def draw(self, epoch: int, i: int) -> tuple[bool, tuple[int, int, int]]:
        """The augmentation of item i in `epoch`: (flip?, channel order), from (seed, epoch, i) alone."""
        rng = np.random.default_rng([self.seed, _AUGMENT_STREAM, epoch, i])
        flip_u, swap_u, pick = rng.random(), rng.random(), int(rng.integers(len(CHANNEL_PERMUTATIONS)))
        order = CHANNEL_PERMUTATIONS[pick] if swap_u < self.channel_swap_p else (0, 1, 2)
        return bool(flip_u < self.flip_p), order

    def _shard(self, file: str) -> Any:
        """The open shard `file`, opened in this process (forked workers must not share handles); at most
        MAX_OPEN_SHARDS stay open, the least recently read closed first."""
        if self._pid != os.getpid():
            self._open, self._pid = OrderedDict(), os.getpid()
        shard = self._open.pop(file, None)
        if shard is None:
            shard = open_shard(self.shard_dir / file)
            if len(self._open) == MAX_OPEN_SHARDS:
                self._open.popitem(last=False)[1].close()
        self._open[file] = shard  # now the most recently read
        return shard

    def __getstate__(self) -> dict[str, Any]:
        """Spawned workers get the dataset without open file handles; they open their own."""
        return {**self.__dict__, "_open": OrderedDict()}


class EpochSampler(Sampler):
    """One process's (epoch, index) pairs of each epoch; call `set_epoch` before iterating an epoch.

    The epoch's order is a permutation seeded by (seed, epoch) when `shuffle`, else 0..n-1. With `pad` the order is
    extended by its own first items to a multiple of `world_size`, so that every process gets as many items (the
    training loader: DDP needs equal step counts); without, the last processes may get one item fewer (validation
    and test: nothing counted twice). Process `rank` takes every `world_size`-th item from position `rank` on.
    """

    def __init__(
        self, size: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1, pad: bool = True
    ) -> None:
        check_int("seed", seed, 0)
        check_int("world_size", world_size, 1)
        check_int("rank", rank, 0, world_size - 1)
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = check_int("epoch", epoch, 0)

    def order(self) -> list[int]:
        """Every process's items of the current epoch, before the cut (padded when `pad`)."""
        if self.shuffle:
            state = np.random.SeedSequence([self.seed, _LOADER_STREAM, self.epoch]).generate_state(2, np.uint32)
            generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        if self.pad and order:
            total = math.ceil(self.size / self.world_size) * self.world_size
            order = (order * math.ceil(total / self.size))[:total]
        return order

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, i) for i in self.order()[self.rank :: self.world_size]])

    def __len__(self) -> int:
        if self.pad:
            return math.ceil(self.size / self.world_size)
        return len(range(self.rank, self.size, self.world_size))


#: The most loader workers `num_workers: auto` starts per training process.
MAX_AUTO_WORKERS = 8
CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")


def usable_cores(cgroup_root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> int:
    """The cores this process may use: those it may run on (`os.sched_getaffinity`: taskset, Slurm's cpusets), and
    no more than its CPU quota rounded up (a container's `--cpus`, Kubernetes' CPU limit): the smallest quota of its
    cgroup and the cgroups above it, cgroup v2's cpu.max or v1's cpu.cfs_quota_us. `self_cgroup` lists the cgroups
    (/proc/self/cgroup), `cgroup_root` is where they are mounted."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quotas = [quota for folder in _cpu_cgroups(cgroup_root, self_cgroup) if (quota := _cpu_quota(folder)) is not None]
    return max(1, min([cores, *(math.ceil(quota) for quota in quotas)]))


def _cpu_cgroups(root: Path, self_cgroup: Path) -> list[Path]:
    """The folders of this process's CPU cgroup and of every cgroup above it, up to `root` (none where unreadable)."""
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        return []
    folders = []
    for line in lines:  # "0::/path" (v2) or "4:cpu,cpuacct:/path" (v1)
        _, controllers, path = line.split(":", 2)
        if controllers == "" or "cpu" in controllers.split(","):
            base = root if controllers == "" else root / "cpu"  # v1: the cpu controller's mount (or its link)
            folder = base / path.lstrip("/")
            folders += [folder, *(parent for parent in folder.parents if parent.is_relative_to(base))]
    return folders


def _cpu_quota(folder: Path) -> float | None:
    """The cores' worth of CPU time the cgroup at `folder` allows (quota / period); None when it sets no limit."""
    try:
        if (folder / "cpu.max").is_file():  # v2: "max 100000" or "200000 100000"
            quota, period = (folder / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        if (folder / "cpu.cfs_quota_us").is_file():  # v1: -1 for no limit
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            return None if quota < 0 else quota / int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        pass
    return None


def resolve_num_workers(value: int | str, processes_here: int = 1) -> int:
    """`train.num_workers` as a count: the integer itself, or for `auto` the cores each of the `processes_here`
    training processes on this machine can spare (its share of the `usable_cores` less one for itself), at least 1
    and at most MAX_AUTO_WORKERS."""
    if value != "auto":
        return check_int("num_workers", value, 0)
    return max(1, min(MAX_AUTO_WORKERS, usable_cores() // max(processes_here, 1) - 1))


@dataclass(frozen=True)
class LoaderOptions:
    """How a loader reads beyond its batches: this process's share of each epoch (`rank` of `world_size`), its worker
    processes (0: load in the calling process), whether they persist across passes, and the device the batches go
    to (memory is pinned for CUDA)."""

    rank: int = 0
    world_size: int = 1
    num_workers: int = 0
    persistent: bool = True
    device: str | torch.device = "cpu"


def make_loader(
    dataset: ShardDataset, batch_size: int, shuffle: bool, seed: int, options: LoaderOptions = LoaderOptions()
) -> DataLoader:
    """A DataLoader over `dataset` for every epoch (its `sampler` is an `EpochSampler`: call `set_epoch`).

    Shuffled and padded across processes when `shuffle` (training); in order and unpadded otherwise. Workers persist
    across epochs when `options.persistent` (training: no start-up each epoch); without, each pass starts its workers
    and ends them (validation, one pass an epoch: no idle workers holding memory in between).
    """
    check_int("batch_size", batch_size, 1)
    check_int("num_workers", options.num_workers, 0)
    sampler = EpochSampler(len(dataset), shuffle, seed, options.rank, options.world_size, pad=shuffle)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=options.num_workers,
        pin_memory=torch.device(options.device).type == "cuda",
        generator=torch.Generator().manual_seed(seed),  # worker seeds; the draws above never use them
        persistent_workers=options.persistent and options.num_workers > 0,
    )


class Processes(Protocol):
    """What `verify_for_training` needs of the run's processes (`depthcore.distributed.Dist` is one)."""

    local_rank: int  # the process's rank on its machine

    def any(self, flag: bool) -> bool: ...  # True on every process when `flag` is True on any; waits for all


def verify_for_training(shard_dir: str | Path, processes: Processes) -> dict[str, Any]:
    """Check every shard of every split (size and SHA-256 against the manifest) once per machine; return the manifest.

    Local rank 0 of each machine hashes its machine's copy; every process then meets the others in `processes.any`,
    which waits for all of them and tells each whether any found a bad shard. If one did, every process raises (the
    one that found it its `ShardError` naming the shard, the others a `ShardError` pointing to it), so no process is
    left waiting for one that stopped. A truncated validation or test shard is refused here, before the first step,
    not when an epoch reaches it. Open the datasets with `verify=False` after it.
    """
    failure: Exception | None = None
    if processes.local_rank == 0:
        try:
            verify_shards(shard_dir)
        except Exception as err:  # any failure must reach the collective below, or the others wait for it
            failure = err
    if processes.any(failure is not None):
        raise failure or ShardError(
            f"{shard_dir}: the shards failed verification on another process (local rank 0 of a machine); its error "
            "names the shard"
        )
    return read_manifest(shard_dir)
