"""Speed and memory of the data path: rendering, sharding and the augmented loader, on the NYU .mat layout or on
DenseDepth's zip. One script: both modes share its steps, its child-process runner and its tables.

Each step runs in its own Python process so that its peak RSS (`ru_maxrss`) is its own; "growth" is that peak
minus the process's peak after its imports, i.e. what the step itself added. Sharding goes through the source
registry (`depthcore.sources`) and `depthcore.shards.write_shards`, as the shard stage does (params.yaml's splits);
"traced" is the peak of Python and numpy allocations (tracemalloc) during `write_shards`: the writer's own memory,
which must not depend on the number of images. Loader rows build the train split's `ShardDataset` (augmented, which
verifies each train shard's SHA-256 against the manifest: once per training run, timed apart), then time one whole
pass of `depthcore.data.make_loader` at batch 8: apart, the time to the first batch (worker start-up: once per run,
the workers persist across epochs) and the images/s after the start-up, the rate the loader keeps up while training
runs (counted from the first batch with 0 or 1 workers; with w workers from the w-th, since the workers load their
first batches side by side while they start). Their RSS is the main process's only.

.mat mode (the default): rooms rendered in the labeled NYU .mat layout at two sizes, both sharded, the larger loaded
with each of `--workers` (0 1 2). RSS growth also holds the reader's HDF5 chunk caches, which fill up over the first
few dozen images and then stay flat; pick sizes past that to compare RSS.

Zip mode (`--zip-pairs N`): rooms rendered into a zip laid out like DenseDepth's nyu_data.zip
(`depthcore.sources.synthetic.write_synthetic_densedepth_zip`: at least N training
pairs, JPEG and 8-bit PNG, in scenes of
`--frames-per-scene` frames, plus `--zip-test` test pairs, PNG and 16-bit PNG, 654 as in the real file), sharded as
the shard stage shards the real one (its test pairs the test split, whole scenes held out for validation) and loaded
with each of `--workers` (1 2 4). One table: sharding images/s, its peak RSS and the writer's traced peak so far at
a few image counts (early on and after each split: it should stay flat over the training pairs; the test pairs'
larger PNGs raise it once), the shards' bytes per image against the zip's bytes per pair (the shards store the zip's
file bytes as they are), shard verification and the loader. Then the projection for the real file (50,688 + 654
pairs, about 4.1 GB), scaled from the measured rates.

`--against RECORD` (what `train_step.py --save RECORD` wrote) adds a line: does the loader, at each worker count,
deliver the images/s of params.yaml's default training step (downsampled model) measured there? --device only decides
whether the loader pins its batches (CUDA), as in training.

    python benchmarks/data.py --sizes 40 160
    python benchmarks/data.py --zip-pairs 5000
    python benchmarks/data.py --zip-pairs 400 --workers 1 2 4 8 --device cuda --against step.json
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import time
import tracemalloc
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from common import (  # beside this script
    MIB,
    PARAMS,
    Table,
    add_common_flags,
    counted,
    device_args,
    report,
    run_child,
    work_folder,
)

from depthcore.config import Config, load_config
from depthcore.data import LoaderOptions, ShardDataset, make_loader, resolve_num_workers
from depthcore.device import resolve_device
from depthcore.shards import read_manifest, write_shards
from depthcore.sources import SOURCES
from depthcore.sources.densedepth import DenseDepthZip
from depthcore.sources.synthetic import write_synthetic_densedepth_zip, write_synthetic_nyu

BATCH = 8  # the loader's batch size (params.yaml's train.batch_size)
#: DenseDepth's real nyu_data.zip (as its loaders count it): training pairs, test pairs, bytes (about 4.1 GB).
REAL_TRAIN_PAIRS, REAL_TEST_PAIRS, REAL_ZIP_BYTES = 50_688, 654, 4.1e9
#: What the sharding steps of each mode render and read: the `data.source` whose reader opens the file.
MODE_SOURCES = {"mat": "synthetic", "zip": "densedepth"}
KIB, GB = 1024, 1e9


def source_config(mode: str, seed: int) -> Config:
    """params.yaml with `data.source` for `mode` and `data.seed` = `seed`: what the shard stage would read."""
    config = load_config(PARAMS)
    return replace(config, data=replace(config.data, seed=seed, source=MODE_SOURCES[mode]))


def render_step(mode: str, path: Path, num: int, frames: int, num_test: int, seed: int) -> dict:
    """Render the .mat (`num` images) or the zip (`num` scenes of `frames` frames and `num_test` test pairs)."""
    if mode == "mat":
        write_synthetic_nyu(path, num, seed)
        return {"images": num}
    write_synthetic_densedepth_zip(path, num, frames, num_test, seed)
    return {"images": num * frames + num_test, "source_bytes": path.stat().st_size}


def shard_step(mode: str, path: Path, out: Path, shard_size: int, seed: int) -> dict:
    """Shard the source file at `path` into `out` as the shard stage would, tracing the writer's memory."""
    config = source_config(mode, seed)
    with SOURCES[config.data.source].open(config, path) as (samples, splits, provenance):
        total = sum(map(len, splits.values()))
        # Where to note the traced peak so far (images written): early on, once two shards are closed (and hashed),
        # and after each split.
        marks = {min(total, max(total // 10, 2 * shard_size))}
        marks.update(int(end) for end in np.cumsum([len(indices) for indices in splits.values()]))
        traced_at, done = {}, 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            if done in marks:
                traced_at[done] = tracemalloc.get_traced_memory()[1] / 2**20

        tracemalloc.start()
        t0 = time.perf_counter()
        manifest = write_shards(samples, splits, out, shard_size, provenance, progress)
        seconds = time.perf_counter() - t0
        traced = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        source_bytes = zip_bytes(path, samples, splits) if mode == "zip" else None
    shard_bytes = {name: sum(entry["bytes"] for entry in entries) for name, entries in manifest["shards"].items()}
    return {
        "traced_at_mib": traced_at,
        "images": total,
        "seconds": seconds,
        "traced_mib": traced,
        "counts": manifest["counts"],
        "shard_bytes": shard_bytes,
        "source_bytes": source_bytes,
    }


def zip_bytes(path: Path, samples: DenseDepthZip, splits: dict[str, np.ndarray]) -> dict[str, int]:
    """The stored bytes of each split's pairs in the zip (both members; zip headers not counted)."""
    with zipfile.ZipFile(path) as zf:
        stored = {info.filename: info.compress_size for info in zf.infolist()}
    return {
        name: sum(stored[member] for i in indices for member in samples.member_names(int(i)))
        for name, indices in splits.items()
    }


def load_step(shard_dir: Path, num_workers: int, seed: int, device: str | None) -> dict:
    """Verify and load the train split once, augmented, at batch BATCH with `num_workers` workers."""
    target = resolve_device(device or load_config(PARAMS).train.device)  # pinned memory on CUDA, as in training
    t0 = time.perf_counter()
    augment = load_config(PARAMS).augment
    dataset = ShardDataset(shard_dir, "train", augment=augment, seed=seed)  # checks every train shard's SHA-256
    verify_s = time.perf_counter() - t0
    verified = sum(entry["bytes"] for entry in read_manifest(shard_dir)["shards"]["train"])
    options = LoaderOptions(num_workers=num_workers, device=target)
    loader = make_loader(dataset, BATCH, shuffle=True, seed=seed, options=options)
    loader.sampler.set_epoch(0)
    t0 = time.perf_counter()
    arrivals, sizes = [], []  # seconds since the pass began, images: per batch
    for batch in loader:
        arrivals.append(time.perf_counter() - t0)
        sizes.append(len(batch["rgb"]))
    # The workers load their first batches side by side while they start; the rate after the start-up counts from
    # the last of those on (from the first batch with 0 or 1 workers).
    start = max(num_workers - 1, 0)
    if len(arrivals) < start + 2:
        raise SystemExit(
            f"expected more than {start + 1} batches of {BATCH} to time the loader after its start-up with "
            f"{num_workers} workers, got {len(arrivals)}: use more images"
        )
    return {
        "images": sum(sizes),
        "seconds": arrivals[-1],
        "first_batch_s": arrivals[0],  # worker start-up and the first batch: once per run
        "steady_img_s": sum(sizes[start + 1 :]) / (arrivals[-1] - arrivals[start]),
        "steady_from_batch": start + 1,
        "verify_s": verify_s,
        "verified_bytes": verified,
    }


def step(args: argparse.Namespace) -> dict:
    """One measured step in this process (its imports already done), with its peak RSS and what the step added."""
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if args.step == "render":
        record = render_step(args.mode, args.source_file, args.num, args.frames_per_scene, args.zip_test, args.seed)
    elif args.step == "shard":
        record = shard_step(args.mode, args.source_file, args.shard_dir, args.shard_size, args.seed)
    else:
        record = load_step(args.shard_dir, args.num_workers, args.seed, args.device)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (
        {"seconds": time.perf_counter() - t0}
        | record
        | {
            "peak_mib": peak / MIB,
            "growth_mib": (peak - start_rss) / MIB,
        }
    )


def child(args: argparse.Namespace, step_name: str, mode: str, **options) -> dict:
    """Run one step in a fresh process; `options` become its flags (--shard-dir ... for shard_dir=...)."""
    flags = ["--step", step_name, "--mode", mode, "--seed", str(args.seed), "--shard-size", str(args.shard_size)]
    flags += ["--frames-per-scene", str(args.frames_per_scene), "--zip-test", str(args.zip_test)]
    for key, value in options.items():
        flags += [f"--{key.replace('_', '-')}", str(value)]
    return run_child(__file__, flags + device_args(args.device))


def load_runs(args: argparse.Namespace, mode: str, shard_dir: Path) -> list[dict]:
    """Load `shard_dir`'s train split with each --workers count, a fresh process each; their records."""
    return [
        child(args, "load", mode, shard_dir=shard_dir, num_workers=workers) | {"workers": workers}
        for workers in args.workers
    ]


def loader_label(record: dict) -> str:
    return f"loader (batch {BATCH}, augmented, {counted(record['workers'], 'worker')})"


def mat_mode(args: argparse.Namespace, workdir: Path) -> tuple[dict, list[Table], list[str]]:
    """Render and shard two .mat sets, load the larger one: the record, the table, no notes."""
    rows, records = [], {"render": [], "shard": []}
    for kind in ("render", "shard"):
        for n in args.sizes:
            mat, shards = workdir / f"nyu-{n}.mat", workdir / f"shards-{n}"
            record = child(args, kind, "mat", num=n, source_file=mat, shard_dir=shards) | {"set": n}
            records[kind].append(record)
            traced = f"{record['traced_mib']:.1f}" if kind == "shard" else ""
            name = "synthesis" if kind == "render" else "sharding"
            rows.append([f"{name} ({n}-image set)", *mat_cells(record), traced, "", ""])
    records["load"] = load_runs(args, "mat", workdir / f"shards-{max(args.sizes)}")
    for r in records["load"]:
        first, steady = f"{r['first_batch_s']:.2f}", f"{r['steady_img_s']:.1f}"
        rows.append([f"{loader_label(r)}, {max(args.sizes)}-image set", *mat_cells(r), "", first, steady])
    headers = ["step", "images", "seconds", "images/s", "peak RSS MiB", "growth MiB", "traced MiB", "first batch s"]
    return records, [("", headers + ["images/s after the start-up"], rows)], []


def mat_cells(record: dict) -> list:
    """images, seconds, images/s, peak RSS and growth of one .mat-mode step."""
    rate = record["images"] / record["seconds"]
    return [
        record["images"],
        f"{record['seconds']:.2f}",
        f"{rate:.1f}",
        f"{record['peak_mib']:.0f}",
        f"{record['growth_mib']:.0f}",
    ]


def zip_mode(args: argparse.Namespace, workdir: Path) -> tuple[dict, list[Table], list[str]]:
    """Render a DenseDepth-layout zip, shard it, load its train split: the record, the table and the projection."""
    scenes = math.ceil(args.zip_pairs / args.frames_per_scene)
    source, shards = workdir / "nyu_data.zip", workdir / "shards"
    render = child(args, "render", "zip", num=scenes, source_file=source)
    shard = child(args, "shard", "zip", source_file=source, shard_dir=shards)
    loads = load_runs(args, "zip", shards)
    counts, zipped, sharded = shard["counts"], shard["source_bytes"], shard["shard_bytes"]
    kinds = {"train + val (JPEG, 8-bit PNG)": ("train", "val"), "test (PNG, 16-bit PNG)": ("test",)}
    per_image = {  # kind -> (images, zip bytes per pair, shard bytes per image)
        kind: (
            sum(counts[s] for s in splits),
            sum(zipped[s] for s in splits) / sum(counts[s] for s in splits),
            sum(sharded[s] for s in splits) / sum(counts[s] for s in splits),
        )
        for kind, splits in kinds.items()
    }
    ratio = sum(sharded.values()) / sum(zipped.values())
    verify_s = statistics.median(r["verify_s"] for r in loads)
    verify_rate = loads[0]["verified_bytes"] / verify_s  # bytes per second
    traced = shard["traced_at_mib"]
    rows = [
        [
            f"render {render['images']} pairs ({scenes} scenes x {args.frames_per_scene} + {args.zip_test} test)",
            render["images"],
            f"{render['seconds']:.1f}",
            f"{render['images'] / render['seconds']:.1f}",
            f"{render['peak_mib']:.0f}",
            "",
            "",
            f"whole zip: {render['source_bytes'] / render['images'] / KIB:.1f} KiB per pair",
        ],
        [
            "sharding, all splits (write_shards)",
            shard["images"],
            f"{shard['seconds']:.2f}",
            f"{shard['images'] / shard['seconds']:.1f}",
            f"{shard['peak_mib']:.0f} (+{shard['growth_mib']:.0f})",
            ", ".join(f"{mib:.1f} at {n}" for n, mib in traced.items()) + f", {shard['traced_mib']:.1f} in all",
            "",
            f"{sum(zipped.values()) / shard['images'] / KIB:.1f} / {sum(sharded.values()) / shard['images'] / KIB:.1f}"
            f" KiB ({ratio:.3f}x)",
        ],
        *(
            [f"shards of {kind}", n, "", "", "", "", "", f"{z / KIB:.1f} / {s / KIB:.1f} KiB ({s / z:.3f}x)"]
            for kind, (n, z, s) in per_image.items()
        ),
        [
            f"verify the train shards (SHA-256, {verify_rate / 2**20:.0f} MiB/s)",
            counts["train"],
            f"{verify_s:.2f}",
            "",
            "",
            "",
            "",
            "",
        ],
    ]
    for r in loads:
        rate, first = f"{r['steady_img_s']:.1f}", f"{r['first_batch_s']:.2f}"
        rows.append([loader_label(r), r["images"], f"{r['seconds']:.1f}", rate, f"{r['peak_mib']:.0f}", "", first, ""])
    headers = ["step", "images", "seconds", "images/s (loader: after the start-up)", "peak RSS MiB (+ over imports)"]
    headers += ["writer's traced peak MiB at N images"]
    headers += ["first batch s", "bytes per image: zip / shards"]
    projection, notes = project(shard, per_image, ratio, verify_rate, loads)
    record = {"render": render, "shard": shard, "load": loads, "projection": projection}
    title = f"Zip mode: DenseDepth's layout, rendered; shard size {args.shard_size}"
    return record, [(title, headers, rows)], notes


def project(
    shard: dict, per_image: dict, ratio: float, verify_rate: float, loads: list[dict]
) -> tuple[dict, list[str]]:
    """The real nyu_data.zip's sharding time, shard size, verification and loading, scaled from the measured rates."""
    (_, _, train_b), (_, _, test_b) = per_image.values()  # shard bytes per image: train + val kind, test kind
    total = REAL_TRAIN_PAIRS + REAL_TEST_PAIRS
    val_fraction = load_config(PARAMS).data.densedepth.val_fraction
    real_train = REAL_TRAIN_PAIRS * (1 - val_fraction)  # whole scenes go to validation: about this many pairs
    from_zip = REAL_ZIP_BYTES * ratio  # the shards of the real zip, from its size
    projection = {
        "sharding_s": total / (shard["images"] / shard["seconds"]),
        "shard_bytes_from_images": REAL_TRAIN_PAIRS * train_b + REAL_TEST_PAIRS * test_b,
        "shard_bytes_from_zip": from_zip,
        "verify_s": (from_zip - REAL_TEST_PAIRS * test_b) * (1 - val_fraction) / verify_rate,
        "load_pass_s": {r["workers"]: real_train / r["steady_img_s"] for r in loads},
    }
    passes = ", ".join(f"{s / 60:.1f} min with {counted(w, 'worker')}" for w, s in projection["load_pass_s"].items())
    notes = [
        f"Projected for DenseDepth's real nyu_data.zip ({REAL_TRAIN_PAIRS:,} + {REAL_TEST_PAIRS} pairs, about "
        f"{REAL_ZIP_BYTES / GB:.1f} GB), scaled from the rates above:",
        f"- sharding: {projection['sharding_s'] / 60:.1f} min at {shard['images'] / shard['seconds']:.1f} images/s; "
        f"the writer streams one image at a time (traced peak above), so its memory stays where it is here",
        f"- shards on disk: {from_zip / GB:.2f} GB from the real zip's size x {ratio:.3f} (shards / zip bytes here); "
        f"{projection['shard_bytes_from_images'] / GB:.2f} GB from the bytes per image here, low where rendered "
        "rooms make smaller files than photographs",
        f"- verifying the train shards (SHA-256) at the start of every training run, about {real_train:,.0f} images "
        f"(data.densedepth.val_fraction {val_fraction}): {projection['verify_s']:.0f} s at "
        f"{verify_rate / 2**20:.0f} MiB/s",
        f"- one pass of the loader alone over that train split: {passes}",
    ]
    return projection, notes


def keeps_up(step_file: Path, loads: list[dict]) -> str:
    """One line: the loader's images/s at each worker count against the default training step's in `step_file`."""
    rows = json.loads(step_file.read_text())["rows"]
    step_rec = next((r for r in rows if r["downsample"] and r["path"] == "default"), None)
    if step_rec is None:
        raise SystemExit(f"{step_file}: expected a train_step.py record with the downsampled default path")
    rate = step_rec["img_s"]
    fast = [r["workers"] for r in loads if r["steady_img_s"] >= rate]
    each = "; ".join(
        f"{counted(r['workers'], 'worker')}: {r['steady_img_s']:.1f} images/s, {r['steady_img_s'] / rate:.2f}x"
        for r in loads
    )
    verdict = (
        f"keeps up from {counted(min(fast), 'worker')} on" if fast else "does NOT keep up at any measured worker count"
    )
    workers = load_config(PARAMS).train.num_workers
    return (
        f"Loader against the default training step ({step_rec['device']} {step_rec['precision']}, batch "
        f"{step_rec['batch_size']}, downsampled: {rate:.1f} images/s): it {verdict} ({each}). params.yaml's "
        f"train.num_workers: {workers}; `auto` gives {resolve_num_workers('auto')} here."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[40, 160], help=".mat mode: two dataset sizes, in images")
    parser.add_argument("--zip-pairs", type=int, default=None, help="zip mode: at least this many training pairs")
    parser.add_argument("--frames-per-scene", type=int, default=20, help="zip mode: frames per rendered scene")
    parser.add_argument("--zip-test", type=int, default=REAL_TEST_PAIRS, help="zip mode: test pairs")
    parser.add_argument("--shard-size", type=int, default=None, help="images per shard (.mat: 8, zip: params.yaml's)")
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="loader workers (.mat: 0 1 2, zip: 1 2 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--against", type=Path, default=None, help="a train_step.py --save record to compare with")
    add_common_flags(parser)
    parser.add_argument("--step", choices=["render", "shard", "load"], help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=list(SOURCES), help=argparse.SUPPRESS)
    parser.add_argument("--num", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--source-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--shard-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--num-workers", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    zip_run = args.zip_pairs is not None or args.mode == "zip"
    if args.shard_size is None:
        args.shard_size = load_config(PARAMS).data.shard_size if zip_run else 8
    if args.step:
        print(json.dumps(step(args)))
        return
    if args.workers is None:
        args.workers = [1, 2, 4] if zip_run else [0, 1, 2]
    with work_folder(args.workdir) as workdir:
        record, tables, notes = (zip_mode if zip_run else mat_mode)(args, workdir)
    if args.against is not None:
        notes.append(keeps_up(args.against, record["load"]))
    report(args, record, tables, notes)


if __name__ == "__main__":
    main()
