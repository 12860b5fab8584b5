from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import depthcore.data as data_module
from depthcore.config import AugmentConfig
from depthcore.data import (
    MAX_OPEN_SHARDS,
    EpochSampler,
    LoaderOptions,
    ShardDataset,
    make_loader,
    resolve_num_workers,
    usable_cores,
    verify_for_training,
)
from depthcore.distributed import Dist
from depthcore.shards import ShardError, read_manifest, write_shards
from depthcore.sources.nyu_mat import MatSamples
from tests.helpers import ROOT, make_config

AUGMENT = make_config().augment  # params.yaml's: flip 0.5, channel swap 0.25

H, W, N = 4, 6, 7
IDENTITY = (0, 1, 2)


class PatternReader:
    """Images whose pixels say where they are, so that misaligned image and depth are detectable.

    rgb channel k of pixel (r, c) is 40 c + 8 r + k (any channel order keeps min = 40 c + 8 r);
    depth is (1000 + 100 i + 10 r + c) mm exactly; raw depth has holes (0) in column 0 and at (0, 1).
    """

    def __len__(self) -> int:
        return N

    def __getitem__(self, i):
        r, c = np.mgrid[0:H, 0:W]
        rgb = np.stack([40 * c + 8 * r + k for k in range(3)], axis=-1).astype(np.uint8)
        return rgb, ((1000 + 100 * i + 10 * r + c) / 1000).astype(np.float32)

    def raw_depth(self, i):
        raw = self[i][1].copy()
        raw[:, 0] = 0
        raw[0, 1] = 0
        return raw


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "shards"
    splits = {"train": np.arange(N), "val": np.array([], dtype=np.int64)}
    write_shards(MatSamples(PatternReader()), splits, out, shard_size=3, provenance={"source": "pattern"})
    return out


def decode(sample: dict, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(row, column) as read from the rgb, and (row, column) as read from the depth, each (H, W)."""
    v = sample["rgb"].numpy().astype(int).min(axis=0)
    mm = np.rint(sample["depth"][0].numpy() * 1000).astype(int) - 1000 - 100 * i
    return v % 40 // 8, v // 40, mm // 10, mm % 10


def test_item_without_augmentation_matches_the_source(shard_dir):
    ds = ShardDataset(shard_dir, "train")
    assert len(ds) == N and ds.source_indices == list(range(N))
    for i in range(N):
        sample = ds[i]
        rgb, depth = PatternReader()[i]
        assert sample["rgb"].shape == (3, H, W) and sample["rgb"].dtype == torch.uint8  # float on the device
        assert sample["depth"].shape == (1, H, W) and sample["depth"].dtype == torch.float32
        assert sample["raw_depth"].shape == (1, H, W) and sample["raw_depth"].dtype == torch.float32
        assert np.array_equal(sample["rgb"].numpy(), rgb.transpose(2, 0, 1))
        assert np.abs(sample["depth"][0].numpy() - depth).max() <= 1e-6  # whole millimetres: exact up to float32
        assert np.array_equal(sample["raw_depth"][0].numpy() == 0, PatternReader().raw_depth(i) == 0)
        assert sample["index"] == i


def test_augmentation_keeps_image_and_depth_aligned(shard_dir):
    ds = ShardDataset(shard_dir, "train", augment=AUGMENT, seed=5)
    flipped = []
    for epoch in range(4):
        for i in range(N):
            sample = ds[epoch, i]
            r_rgb, c_rgb, r_depth, c_depth = decode(sample, i)
            assert np.array_equal(r_rgb, r_depth) and np.array_equal(c_rgb, c_depth)
            holes = (c_depth == 0) | ((r_depth == 0) & (c_depth == 1))
            raw = sample["raw_depth"][0]
            assert np.array_equal((raw == 0).numpy(), holes)
            assert torch.equal(raw[~torch.from_numpy(holes)], sample["depth"][0][~torch.from_numpy(holes)])
            flipped.append(bool(c_depth[0, 0] == W - 1))
    assert 0 < sum(flipped) < len(flipped)  # both cases were seen


def test_flip_mirrors_every_array(shard_dir):
    plain = ShardDataset(shard_dir, "train")[2]
    augmented = ShardDataset(shard_dir, "train", augment=AugmentConfig(flip_p=1.0, channel_swap_p=0.0))
    sample = augmented[0, 2]
    for key in ("rgb", "depth", "raw_depth"):
        assert torch.equal(sample[key], plain[key].flip(-1)), key
    for key in ("rgb", "depth", "raw_depth"):  # an index without an epoch is the image as stored
        assert torch.equal(augmented[2][key], plain[key]), key


def test_channel_permutation_keeps_depth_and_changes_colours(shard_dir):
    plain = ShardDataset(shard_dir, "train")
    ds = ShardDataset(shard_dir, "train", augment=AugmentConfig(flip_p=0.0, channel_swap_p=1.0), seed=1)
    seen = set()
    for epoch in range(3):
        for i in range(N):
            sample, reference = ds[epoch, i], plain[i]
            assert torch.equal(sample["depth"], reference["depth"])
            assert torch.equal(sample["raw_depth"], reference["raw_depth"])
            orders = [
                p
                for p in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
                if torch.equal(sample["rgb"], reference["rgb"][list(p)])
            ]
            assert len(orders) == 1 and orders[0] != IDENTITY
            seen.add(orders[0])
    assert len(seen) >= 3


def test_augmentation_rates_follow_the_probabilities(shard_dir):
    ds = ShardDataset(shard_dir, "train", augment=AugmentConfig(flip_p=0.5, channel_swap_p=0.25))
    draws = [ds.draw(0, i) for i in range(4000)]
    flips = np.mean([flip for flip, _ in draws])
    swaps = np.mean([order != IDENTITY for _, order in draws])
    # binomial standard deviations: 0.008 and 0.007
    assert abs(flips - 0.5) < 0.04 and abs(swaps - 0.25) < 0.035


def test_augmentation_depends_on_seed_epoch_and_index_only(shard_dir):
    a = ShardDataset(shard_dir, "train", augment=AUGMENT, seed=3)
    b = ShardDataset(shard_dir, "train", augment=AUGMENT, seed=3)
    forward = [a[2, i] for i in range(N)]
    backward = [b[2, i] for i in reversed(range(N))][::-1]
    for x, y in zip(forward, backward, strict=True):
        assert torch.equal(x["rgb"], y["rgb"]) and torch.equal(x["depth"], y["depth"])
    assert [a.draw(2, i) for i in range(N)] == [b.draw(2, i) for i in range(N)]
    assert [a.draw(2, i) for i in range(N)] != [a.draw(3, i) for i in range(N)]
    c = ShardDataset(shard_dir, "train", augment=AUGMENT, seed=4)
    assert [a.draw(2, i) for i in range(N)] != [c.draw(2, i) for i in range(N)]


def epoch_batches(loader, epoch: int) -> list[dict]:
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_loader_batches(shard_dir):
    ds = ShardDataset(shard_dir, "train", augment=AUGMENT)
    batches = epoch_batches(make_loader(ds, batch_size=3, shuffle=True, seed=0), 1)
    assert [b["rgb"].shape for b in batches] == [(3, 3, H, W), (3, 3, H, W), (1, 3, H, W)]
    assert all(b["rgb"].dtype == torch.uint8 for b in batches)
    assert all(b["depth"].shape[1:] == (1, H, W) and b["depth"].dtype == torch.float32 for b in batches)
    assert all(b["raw_depth"].shape[1:] == (1, H, W) for b in batches)
    order = torch.cat([b["index"] for b in batches]).tolist()
    assert sorted(order) == list(range(N))


def test_shuffle_order_is_seeded_by_seed_and_epoch(shard_dir):
    ds = ShardDataset(shard_dir, "train")

    def order(seed, epoch):
        loader = make_loader(ds, 2, shuffle=True, seed=seed)
        return [i for b in epoch_batches(loader, epoch) for i in b["index"].tolist()]

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1)
    assert order(0, 0) != order(1, 0)


def test_persistent_workers_give_the_same_batches_every_epoch(shard_dir):
    """Workers live across epochs (the epoch travels with each index), and give exactly what no worker gives, as do
    workers started for each pass (`persistent=False`, the validation loader's)."""
    ds = ShardDataset(shard_dir, "train", augment=AUGMENT, seed=2)
    single, multi = (make_loader(ds, 2, shuffle=True, seed=2, options=LoaderOptions(num_workers=n)) for n in (0, 2))
    each_pass = make_loader(ds, 2, shuffle=True, seed=2, options=LoaderOptions(num_workers=2, persistent=False))
    assert multi.persistent_workers and not single.persistent_workers and not each_pass.persistent_workers
    for epoch in (3, 4):
        one, two, three = epoch_batches(single, epoch), epoch_batches(multi, epoch), epoch_batches(each_pass, epoch)
        assert len(one) == len(two) == len(three) == 4
        for x, y, z in zip(one, two, three, strict=True):
            keys = ("rgb", "depth", "raw_depth", "index")
            assert all(torch.equal(x[k], y[k]) and torch.equal(x[k], z[k]) for k in keys)
    assert not torch.equal(epoch_batches(single, 3)[0]["rgb"], epoch_batches(single, 4)[0]["rgb"])


def test_processes_split_each_epoch_round_robin():
    """The k-th batches of 2 processes together are the k-th batch of one process with twice the batch size."""
    whole = EpochSampler(10, shuffle=True, seed=1)
    whole.set_epoch(2)
    order = [i for _, i in whole]
    shares = []
    for rank in range(2):
        sampler = EpochSampler(10, shuffle=True, seed=1, rank=rank, world_size=2)
        sampler.set_epoch(2)
        shares.append([i for _, i in sampler])
        assert len(sampler) == 5 and all(epoch == 2 for epoch, _ in sampler)
    for k in range(0, 5, 2):  # per-process batches of 2 against one process's batches of 4
        assert sorted(shares[0][k : k + 2] + shares[1][k : k + 2]) == sorted(order[2 * k : 2 * k + 4])
    # padding: 7 items over 3 processes -> 3 each, the first two items again; unpadded: 3, 2, 2, nothing twice
    padded = [[i for _, i in EpochSampler(7, False, 0, rank, 3)] for rank in range(3)]
    assert padded == [[0, 3, 6], [1, 4, 0], [2, 5, 1]]
    unpadded = [[i for _, i in EpochSampler(7, False, 0, rank, 3, pad=False)] for rank in range(3)]
    assert unpadded == [[0, 3, 6], [1, 4], [2, 5]] and [
        len(EpochSampler(7, False, 0, r, 3, pad=False)) for r in range(3)
    ] == [3, 2, 2]


def test_num_workers_auto(monkeypatch):
    monkeypatch.setattr(data_module, "usable_cores", lambda: 16)
    assert resolve_num_workers("auto", 1) == 8  # 15 spare, capped
    assert resolve_num_workers("auto", 4) == 3  # 16 / 4 - 1
    monkeypatch.setattr(data_module, "usable_cores", lambda: 2)
    assert resolve_num_workers("auto", 1) == 1 and resolve_num_workers("auto", 2) == 1  # never 0
    assert resolve_num_workers(0) == 0 and resolve_num_workers(3) == 3


def fake_cgroups(tmp_path, membership: str, files: dict[str, str]):
    """A cgroup mount under tmp_path with `files` (path -> text) and a /proc/self/cgroup saying `membership`."""
    root = tmp_path / "cgroup"
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    (tmp_path / "self").write_text(membership)
    return root, tmp_path / "self"


def test_usable_cores_follow_affinity_and_the_cgroup_quota(monkeypatch, tmp_path):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    # cgroup v2: 4 CPUs' worth (400000 / 100000 us) set on the parent, none on the process's own cgroup
    v2 = {"cpu.max": "max 100000\n", "kube/cpu.max": "400000 100000\n", "kube/pod/cpu.max": "max 100000\n"}
    assert usable_cores(*fake_cgroups(tmp_path / "a", "0::/kube/pod\n", v2)) == 4
    # a quota of 2.5 CPUs allows 3 busy cores part of the time: rounded up
    v2 = {"cpu.max": "250000 100000\n"}
    assert usable_cores(*fake_cgroups(tmp_path / "b", "0::/\n", v2)) == 3
    # cgroup v1: the cpu controller's cfs files; -1 is no limit
    v1 = {"cpu/docker/cpu.cfs_quota_us": "200000\n", "cpu/docker/cpu.cfs_period_us": "100000\n"}
    assert usable_cores(*fake_cgroups(tmp_path / "c", "5:cpu,cpuacct:/docker\n1:memory:/docker\n", v1)) == 2
    v1 = {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}
    assert usable_cores(*fake_cgroups(tmp_path / "d", "5:cpu,cpuacct:/\n", v1)) == 16
    # no quota anywhere, or no cgroup files at all: the affinity alone; a quota above it changes nothing
    assert usable_cores(*fake_cgroups(tmp_path / "e", "0::/x\n", {"x/cpu.max": "max 100000\n"})) == 16
    assert usable_cores(tmp_path / "nothing", tmp_path / "nothing" / "cgroup") == 16
    assert usable_cores(*fake_cgroups(tmp_path / "f", "0::/\n", {"cpu.max": "3200000 100000\n"})) == 16
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    assert usable_cores(*fake_cgroups(tmp_path / "g", "0::/\n", {"cpu.max": "400000 100000\n"})) == 2


class ManyImages(PatternReader):
    def __len__(self) -> int:
        return 64


def test_reading_more_shards_than_the_open_file_limit(tmp_path):
    """A training pass over 64 shards of one image in a process allowed 40 open files: shards are closed again."""
    out = tmp_path / "shards"
    write_shards(MatSamples(ManyImages()), {"train": np.arange(64)}, out, shard_size=1, provenance={})
    child = textwrap.dedent(
        """
        import os, resource, sys
        from depthcore.config import AugmentConfig
        from depthcore.data import ShardDataset, make_loader
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        train = ShardDataset(sys.argv[1], "train", augment=AugmentConfig(0.5, 0.25))
        loader = make_loader(train, 4, shuffle=True, seed=0)
        loader.sampler.set_epoch(1)
        print(sum(len(batch["index"]) for batch in loader), "images;", len(os.listdir("/proc/self/fd")), "open files")
        """
    )
    done = subprocess.run([sys.executable, "-c", child, str(out)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("64 images;")


def test_open_shards_are_bounded(tmp_path):
    out = tmp_path / "shards"
    write_shards(MatSamples(ManyImages()), {"train": np.arange(64)}, out, shard_size=2, provenance={})
    ds = ShardDataset(out, "train")
    before = len(os.listdir("/proc/self/fd"))
    for i in range(64):
        assert ds[i]["index"] == i
    assert len(os.listdir("/proc/self/fd")) - before == MAX_OPEN_SHARDS  # 32 shards read, the last 8 still open
    assert torch.equal(ds[0]["depth"], ShardDataset(out, "train")[0]["depth"])  # a closed shard opens again


def test_pin_memory_only_for_cuda(shard_dir):
    ds = ShardDataset(shard_dir, "train")
    assert make_loader(ds, 2, shuffle=False, seed=0, options=LoaderOptions(device="cuda")).pin_memory
    assert not make_loader(ds, 2, shuffle=False, seed=0, options=LoaderOptions(device="cpu")).pin_memory


def test_empty_split(shard_dir):
    assert len(ShardDataset(shard_dir, "val")) == 0


def test_tampered_shard_is_refused_on_open(tmp_path):
    out = tmp_path / "shards"
    write_shards(MatSamples(PatternReader()), {"train": np.arange(N)}, out, shard_size=3, provenance={})
    path = out / "train" / "train-00001.npz"
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="train-00001.npz: expected SHA-256 .*dvc repro -f shard"):
        ShardDataset(out, "train")


def test_bad_arguments_are_refused(shard_dir):
    with pytest.raises(ShardError, match="expected split 'tets' in the manifest"):
        ShardDataset(shard_dir, "tets")
    with pytest.raises(ValueError, match="expected a split in \\['train', 'val'\\], got 'tets'"):
        ShardDataset(shard_dir, "tets", verify=False)
    with pytest.raises(ValueError, match="expected flip_p to be a number in \\[0.0, 1.0\\], got 1.5"):
        ShardDataset(shard_dir, "train", augment=AugmentConfig(flip_p=1.5, channel_swap_p=0.25))
    with pytest.raises(ValueError, match="expected seed to be an integer >= 0, got True"):
        ShardDataset(shard_dir, "train", seed=True)
    with pytest.raises(ValueError, match="expected batch_size to be an integer >= 1, got 0"):
        make_loader(ShardDataset(shard_dir, "train"), 0, shuffle=False, seed=0)
    with pytest.raises(IndexError, match="expected an index in \\[0, 7\\), got 7"):
        ShardDataset(shard_dir, "train")[7]


class OtherProcessFailed:
    """A process of a launch that is not its machine's local rank 0, whose local rank 0 found a bad shard."""

    local_rank = 1

    def any(self, flag: bool) -> bool:
        return True


def test_verify_for_training_checks_every_split_before_training(tmp_path, monkeypatch):
    """A truncated validation shard is refused before the first step (training only checked the train split), in one
    line; a process that does not hash is told, not left waiting."""
    out = tmp_path / "shards"
    splits = {"train": np.arange(4), "val": np.arange(4, 6), "test": np.arange(6, 7)}
    write_shards(MatSamples(PatternReader()), splits, out, shard_size=2, provenance={})
    assert verify_for_training(out, Dist()) == read_manifest(out)
    val = out / "val" / "val-00000.npz"
    size = val.stat().st_size
    val.write_bytes(val.read_bytes()[:-10])
    ShardDataset(out, "train")  # what training checked alone
    with pytest.raises(ShardError) as caught:
        verify_for_training(out, Dist())
    message = str(caught.value)
    assert message.startswith(f"shard {val}: expected {size} bytes, found {size - 10}; ") and "\n" not in message
    hashed = []
    monkeypatch.setattr("depthcore.shards.sha256_file", lambda path, *args: hashed.append(path))
    with pytest.raises(ShardError, match="failed verification on another process \\(local rank 0 of a machine\\)"):
        verify_for_training(out, OtherProcessFailed())
    assert hashed == []  # local rank 1 reads no shard
