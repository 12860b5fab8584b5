"""Speed and memory of the data path: synthesis, sharding at two dataset sizes, and the augmented loader.

Each step runs in its own Python process so that its peak RSS (`ru_maxrss`) is its own; "growth" is that peak
minus the process's peak after its imports, i.e. what the step itself added. For sharding, "traced" is the peak
of Python and numpy allocations (tracemalloc) during `write_shards`: the writer's own memory, which must not
depend on the number of images. RSS growth also holds the reader's HDF5 chunk caches, which fill up over the
first few dozen images and then stay flat; pick sizes past that to compare RSS. Loader rows time one full
augmented epoch over the train split of the largest set, worker start-up included (workers are not
persistent: each epoch starts its own), and apart from that the time to the first batch (start-up, paid once per
epoch) and the images/s after it, the rate the loader keeps up while training runs; their RSS is the main
process's only.

    python benchmarks/data.py --sizes 40 160
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

from common import MIB, machine, print_table, run_child  # beside this script

from depthcore.data import ShardDataset, make_loader
from depthcore.nyu import NyuMat
from depthcore.shards import write_shards
from depthcore.splits import make_splits
from depthcore.synthetic import write_synthetic_nyu


def step(kind: str, path: Path, num_images: int, shard_size: int, num_workers: int, seed: int) -> dict:
    """One measured step in this process (its imports already done)."""
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    traced = None
    t0 = time.perf_counter()
    if kind == "synthesis":
        write_synthetic_nyu(path / f"nyu-{num_images}.mat", num_images, seed)
        count = num_images
    elif kind == "sharding":
        splits = make_splits(num_images, "random", seed)
        tracemalloc.start()
        with NyuMat(path / f"nyu-{num_images}.mat") as reader:
            write_shards(reader, splits, path / f"shards-{num_images}", shard_size, {"source": "synthetic"})
        traced = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        count = num_images
    else:
        dataset = ShardDataset(path / f"shards-{num_images}", "train", augment=True, seed=seed)
        t0 = time.perf_counter()  # shard verification (hashing) is a one-off, not loader speed
        loader = make_loader(dataset, 8, shuffle=True, seed=seed, epoch=0, num_workers=num_workers)
        batches = iter(loader)
        first_count = len(next(batches)["rgb"])
        first = time.perf_counter() - t0  # worker start-up and the first batch: once per epoch
        later_count = sum(len(batch["rgb"]) for batch in batches)
        count = first_count + later_count
        steady = later_count / (time.perf_counter() - t0 - first)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    growth = (peak - start_rss) / MIB
    record = {"images": count, "seconds": seconds, "peak_mib": peak / MIB, "growth_mib": growth, "traced_mib": traced}
    return record | ({"first_batch_s": first, "steady_img_s": steady} if kind == "loader" else {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[40, 160], help="two dataset sizes, in images")
    parser.add_argument("--shard-size", type=int, default=8, help="images per shard")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="loader worker counts to time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="where to write (default: a temporary folder)")
    parser.add_argument("--step", choices=["synthesis", "sharding", "loader"], help=argparse.SUPPRESS)
    parser.add_argument("--num-images", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--num-workers", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        record = step(args.step, args.workdir, args.num_images, args.shard_size, args.num_workers, args.seed)
        print(json.dumps(record))
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        rows = []
        plan = [("synthesis", n, 0) for n in args.sizes] + [("sharding", n, 0) for n in args.sizes]
        plan += [("loader", max(args.sizes), w) for w in args.workers]
        for kind, n, workers in plan:
            shared = ["--workdir", str(workdir), "--shard-size", str(args.shard_size), "--seed", str(args.seed)]
            shared += ["--num-workers", str(workers)]
            record = run_child(__file__, shared + ["--step", kind, "--num-images", str(n)])
            label = f"{kind} ({n}-image set" + (f", batch 8, {workers} workers)" if kind == "loader" else ")")
            rows.append(
                [
                    label,
                    record["images"],
                    f"{record['seconds']:.2f}",
                    f"{record['images'] / record['seconds']:.1f}",
                    f"{record['peak_mib']:.0f}",
                    f"{record['growth_mib']:.0f}",
                    "" if record["traced_mib"] is None else f"{record['traced_mib']:.1f}",
                    f"{record['first_batch_s']:.2f}" if kind == "loader" else "",
                    f"{record['steady_img_s']:.1f}" if kind == "loader" else "",
                ]
            )
        headers = ["step", "images", "seconds", "images/s", "peak RSS MiB", "growth MiB", "traced MiB"]
        print(machine())
        print_table(headers + ["first batch s", "images/s after it"], rows)


if __name__ == "__main__":
    main()
