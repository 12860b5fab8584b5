"""Wall time of whole training epochs by DataLoader worker count: does a loader worker pay on this machine?

The train-step benchmark times steps on a batch already in memory; here `depthcore.train.fit` runs one epoch of
params.yaml's default path on a freshly rendered synthetic set, loading, augmenting, validating and drawing the
grid as the train stage does, once per `train.num_workers` value. A worker process takes the loading off the
training thread, but on a machine with few cores it also competes with the training's own compute threads for
them. Each count runs in its own Python process, `--rounds` times, alternating with the others so that a slow
spell of a shared machine falls on all of them; the table gives each count's median epoch.

A second table splits each count's median epoch into where its time went, by timing the functions `fit` calls
(wrapped in the child process): setup (building the model and the datasets, which verify the shards), the training
steps (the first, with its one-off kernel set-up, apart from the rest), validation, the prediction grid, and the
checkpoint and model writes. What is left is the training loop outside its steps: waiting for the loader, progress
bars and logging.

    python benchmarks/epoch.py                     # 0, 1 and 2 workers, 160 rendered images
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import machine, peak_rss_mib, print_table, render_shards, run_child  # beside this script
from train_step import configure

import depthcore.train as train_module
from depthcore.shards import read_manifest

SPLIT = (0.8, 0.1)  # train and val fractions of the rendered set, as in params.yaml
#: The functions of depthcore.train that one epoch of `fit` spends its time in, by phase of the table, besides
#: `train_step`, whose first call the table shows apart from the others.
PHASES = {
    "setup": ("build_model", "prepare", "ShardDataset"),
    "validation": ("validation_loss",),
    "grid": ("prediction_grid",),
    "writes": ("atomic_save",),
}


def time_calls(name: str, durations: dict[str, list[float]]) -> None:
    """Replace depthcore.train's `name` with a wrapper that appends each call's seconds to durations[name]."""
    real = getattr(train_module, name)
    durations[name] = []

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            durations[name].append(time.perf_counter() - t0)

    setattr(train_module, name, timed)


def one_epoch(shard_dir: Path, num_workers: int, out: Path) -> dict:
    """Fit one epoch of the default path with `num_workers` loader workers; its wall time and its phases' seconds."""
    config = configure("default", epochs=1, num_workers=num_workers)
    durations: dict[str, list[float]] = {}
    for name in ("train_step", *(name for names in PHASES.values() for name in names)):
        time_calls(name, durations)
    t0 = time.perf_counter()
    try:
        train_module.fit(config, shard_dir, out / "model.pt", out / "checkpoint.pt", lambda record, grid: None)
        seconds = time.perf_counter() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)  # 0.65 GB of weights and checkpoint per run
    phases = {phase: sum(sum(durations[name]) for name in names) for phase, names in PHASES.items()}
    steps = durations["train_step"]
    rest = seconds - sum(phases.values()) - sum(steps)
    phases |= {"first_step": steps[0], "later_steps": sum(steps[1:]), "rest": rest}
    return {
        "num_workers": num_workers,
        "seconds": seconds,
        "phases": phases,
        "later_step_s": statistics.median(steps[1:]),
        "peak_rss_mib": peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="train.num_workers values")
    parser.add_argument("--images", type=int, default=160, help="rendered images (80/10/10 split)")
    parser.add_argument("--rounds", type=int, default=2, help="epochs per worker count, alternating")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--workdir", type=Path, default=None, help="where to render (default: a temporary folder)")
    parser.add_argument("--child-workers", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_workers is not None:
        out = args.workdir.parent / f"run-{args.child_workers}-{time.monotonic_ns()}"
        print(json.dumps(one_epoch(args.workdir, args.child_workers, out)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        shard_dir = render_shards(workdir, args.images, *SPLIT)
        counts = read_manifest(shard_dir)["counts"]
        runs = {w: [] for w in args.workers}
        for _ in range(args.rounds):
            for w in args.workers:
                runs[w].append(run_child(__file__, ["--child-workers", str(w), "--workdir", str(shard_dir)]))
    records = []
    for w, done in runs.items():
        seconds = statistics.median(run["seconds"] for run in done)
        records.append(
            {
                "num_workers": w,
                "epoch_s": seconds,
                "phases_s": {
                    phase: statistics.median(run["phases"][phase] for run in done) for phase in done[0]["phases"]
                },
                "later_step_s": statistics.median(run["later_step_s"] for run in done),
                "epochs_s": [run["seconds"] for run in done],
                "train_img_s": counts["train"] / seconds,
                "peak_rss_mib": max(run["peak_rss_mib"] for run in done),
            }
        )
    if args.json:
        print(json.dumps({"counts": counts, "rows": records}, indent=1))
        return
    print(machine())
    print(
        f"Default path, {counts['train']} train / {counts['val']} val images,"
        f" median of {args.rounds} epochs (fresh process each, alternating)"
    )
    rows = [
        [
            r["num_workers"],
            " ".join(f"{s:.1f}" for s in r["epochs_s"]),
            f"{r['epoch_s']:.1f}",
            f"{r['train_img_s']:.2f}",
            f"{r['peak_rss_mib']:.0f}",
        ]
        for r in records
    ]
    print_table(["workers", "epochs s", "median epoch s", "train images/s", "peak RSS MiB (main)"], rows)
    batch = configure("default").train.batch_size
    print(f"\nWhere the epoch went, seconds, median over rounds (a later step: batch {batch}, after the first):")
    names = list(records[0]["phases_s"])
    rows = [
        [r["num_workers"], *(f"{r['phases_s'][n]:.1f}" for n in names), f"{r['later_step_s']:.2f}"] for r in records
    ]
    print_table(["workers", *(n.replace("_", " ") for n in names), "a later step"], rows)


if __name__ == "__main__":
    main()
