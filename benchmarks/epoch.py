"""Wall time of whole training epochs, where it goes, and the per-epoch overhead the training loop no longer pays.
One script: its three tables come from the same timed runs.

The train-step benchmark times steps on a batch already in memory; here `depthcore.train.fit` runs `--epochs` epochs
of params.yaml's default path on a freshly rendered synthetic set, loading, augmenting, validating, drawing the grid
and writing checkpoints as the train stage does. Each configuration runs in its own Python process, `--rounds`
times, alternating with the others so that a slow spell of a shared machine falls on all of them; tables give
medians over the rounds. The configurations:

- one per `--workers` count (`train.num_workers`), the loop as it is: loader workers that persist for the whole
  run, and a checkpoint after every epoch (`train.checkpoint_every` 1, params.yaml's);
- "fresh loaders": `--compare-workers` workers, a new DataLoader for every pass over the training and the validation
  split, so new worker processes each epoch, as the loop did before its loaders persisted;
- "checkpoint every N": `--compare-workers` workers, `train.checkpoint_every` N (`--checkpoint-every`, default the
  run's epoch count: only the last epoch writes one).

Tables: (1) each configuration's seconds per epoch (the whole run over its epochs). (2) Where the run's time went,
by timing the functions `fit` calls (wrapped in the child process): setup (building the model, the datasets, which
verify the shards, and the loaders), the training steps (the first, with its one-off kernel set-up, apart from the
rest), the loaders' waits for the first batch of each pass, validation (less its loader's first batch), the
prediction grid, the checkpoint writes and the final model write; what is left is the training loop outside its
steps: waiting for later batches, progress bars and logging. (3) Before and after, per epoch: the first-batch waits
of an epoch after the first with fresh loaders against persistent ones, and the checkpoint writes per epoch with
checkpoint_every 1 against N.

    python benchmarks/epoch.py                     # 0, 1 and 2 workers, 160 rendered images, 2 epochs a run
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from common import (  # beside this script
    add_common_flags,
    configure,
    counted,
    device_args,
    peak_rss_mib,
    rendered_shards,
    report,
    run_child,
)

import depthcore.train as train_module
from depthcore.data import resolve_num_workers
from depthcore.shards import read_manifest

SPLIT = (0.8, 0.1)  # train and val fractions of the rendered set, as in params.yaml
#: The functions of depthcore.train that a run of `fit` spends its time in, by phase of the table, besides
#: `train_step`, whose first call the table shows apart from the others, and the loaders' first batches.
#: `build` is the model factory fit is given; the rest are looked up in depthcore.train when fit calls them.
PHASES = {
    "setup": ("build", "prepare", "ShardDataset", "make_loader", "fingerprint", "load_checkpoint"),
    "validation": ("validation_loss",),
    "grid": ("prediction_grid",),
    "checkpoints": ("atomic_save",),
    "model write": ("save_model",),
}
LOADERS = ("persistent", "fresh")


@dataclass(frozen=True)
class Run:
    """One configuration: loader workers, epochs between checkpoints, and whether its loaders persist."""

    workers: int
    checkpoint_every: int
    loader: str = "persistent"

    def label(self, epochs: int) -> str:
        what = "fresh loaders each epoch" if self.loader == "fresh" else "the loop as it is"
        if self.checkpoint_every != 1:
            last_only = " (the last epoch only)" if self.checkpoint_every >= epochs else ""
            what = f"checkpoint every {self.checkpoint_every} epochs{last_only}"
        return f"{counted(self.workers, 'worker')}, {what}"

    def args(self) -> list[str]:
        """The child process's flags for this configuration."""
        flags = {"workers": self.workers, "checkpoint-every": self.checkpoint_every, "loader": self.loader}
        return [word for key, value in flags.items() for word in (f"--child-{key}", str(value))]


class TimedLoader:
    """A loader of depthcore.data.make_loader that notes how long each pass waits for its first batch in `waits`.

    `fresh`: every pass gets a new loader (new worker processes), as the loop before persistent workers did; the old
    one, and its workers, go when its pass ends.
    """

    def __init__(self, make: Callable, args: tuple, kwargs: dict, fresh: bool, waits: list[float]) -> None:
        self.make, self.make_args, self.fresh, self.waits = make, (args, kwargs), fresh, waits
        self.loader = make(*args, **kwargs)
        self.sampler = self.loader.sampler  # fit calls set_epoch on it

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        t0 = time.perf_counter()
        loader = self.loader
        if self.fresh:
            args, kwargs = self.make_args
            loader = self.make(*args, **kwargs)
            loader.sampler.set_epoch(self.sampler.epoch)
        batches = iter(loader)
        first = next(batches, None)
        self.waits.append(time.perf_counter() - t0)
        if first is not None:
            yield first
            yield from batches


def timed(fn: Callable, seconds: list[float]) -> Callable:
    """`fn`, appending each call's wall time to `seconds`."""

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - t0)

    return wrapper


def run_fit(shard_dir: Path, run: Run, epochs: int, device: str | None, out: Path) -> dict:
    """Fit `epochs` epochs of the default path as `run` says; its wall time, phases and loader waits."""
    config = configure(
        "default", device=device, epochs=epochs, num_workers=run.workers, checkpoint_every=run.checkpoint_every
    )
    durations: dict[str, list[float]] = defaultdict(list)
    waits: dict[str, list[float]] = {"train": [], "val": []}  # per pass, i.e. per epoch
    real_make_loader = train_module.make_loader

    def make_loader(*args, **kwargs) -> TimedLoader:
        split = "train" if kwargs["shuffle"] else "val"
        return TimedLoader(real_make_loader, args, kwargs, run.loader == "fresh", waits[split])

    train_module.make_loader = make_loader
    for name in ("train_step", *(name for names in PHASES.values() for name in names if name != "build")):
        setattr(train_module, name, timed(getattr(train_module, name), durations[name]))
    build = timed(train_module.build_model, durations["build"])
    t0 = time.perf_counter()
    try:
        train_module.fit(
            config, shard_dir, out / "model.pt", out / "checkpoint.pt", lambda record, grid: None, build=build
        )
        seconds = time.perf_counter() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)  # 0.65 GB of weights and checkpoint per run
    timed_phases = {phase: sum(sum(durations[name]) for name in names) for phase, names in PHASES.items()}
    timed_phases["validation"] -= sum(waits["val"])  # its loader's first batches are a phase of their own
    steps = durations["train_step"]
    phases = {  # in the order a run meets them
        "setup": timed_phases.pop("setup"),
        "first batches": sum(map(sum, waits.values())),
        "first step": steps[0],
        "later steps": sum(steps[1:]),
        **timed_phases,
    }
    phases["rest"] = seconds - sum(phases.values())
    return {
        "seconds": seconds,
        "phases": phases,
        "later_step_s": statistics.median(steps[1:]) if len(steps) > 1 else None,
        "first_batch_s": waits,
        "checkpoint_s": durations["atomic_save"],
        "peak_rss_mib": peak_rss_mib(),
    }


def plan(workers: list[int], compare: int, checkpoint_every: int) -> list[Run]:
    """The worker sweep as the loop is, then the two comparisons at `compare` workers (their baseline included)."""
    runs = [Run(w, 1) for w in workers]
    if compare not in workers:
        runs.append(Run(compare, 1))
    return runs + [Run(compare, 1, "fresh"), Run(compare, checkpoint_every)]


def summarise(run: Run, done: list[dict], epochs: int, train_images: int) -> dict:
    """One configuration's record: medians over its rounds."""
    per_epoch = [r["seconds"] / epochs for r in done]
    median = statistics.median(per_epoch)
    later = [r["later_step_s"] for r in done if r["later_step_s"] is not None]
    return {
        "workers": run.workers,
        "checkpoint_every": run.checkpoint_every,
        "loader": run.loader,
        "epoch_s": median,
        "epochs_s": per_epoch,
        "train_img_s": train_images / median,
        "phases_s": {name: statistics.median(r["phases"][name] for r in done) for name in done[0]["phases"]},
        "later_step_s": statistics.median(later) if later else None,
        # per epoch: the train and val loaders' first-batch waits of epoch 1 and of the epochs after it
        "first_batch_epoch1_s": statistics.median(
            r["first_batch_s"]["train"][0] + r["first_batch_s"]["val"][0] for r in done
        ),
        "first_batch_later_s": statistics.median(
            statistics.mean(t + v for t, v in zip(r["first_batch_s"]["train"][1:], r["first_batch_s"]["val"][1:]))
            for r in done
        ),
        "checkpoint_per_epoch_s": statistics.median(sum(r["checkpoint_s"]) / epochs for r in done),
        "checkpoints": len(done[0]["checkpoint_s"]),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in done),
    }


def tables(records: list[dict], runs: list[Run], args: argparse.Namespace, counts: dict) -> list:
    """The three tables of the module docstring."""
    labels = [run.label(args.epochs) for run in runs]
    title = (
        f"Default path, {counts['train']} train / {counts['val']} val images, {args.epochs} epochs a run, median of "
        f"{args.rounds} runs (fresh process each, alternating); seconds per epoch: the whole run over its epochs"
    )
    rows = [
        [
            label,
            " ".join(f"{s:.1f}" for s in r["epochs_s"]),
            f"{r['epoch_s']:.1f}",
            f"{r['train_img_s']:.2f}",
            f"{r['peak_rss_mib']:.0f}",
        ]
        for label, r in zip(labels, records)
    ]
    epoch_table = (title, ["run", "s per epoch, by round", "median", "train images/s", "peak RSS MiB (main)"], rows)
    names = list(records[0]["phases_s"])
    batch = configure("default").train.batch_size
    title = f"Where the run's time went, seconds over its {args.epochs} epochs (a later step: batch {batch})"
    rows = [
        [label, *(f"{r['phases_s'][n]:.1f}" for n in names), f"{r['later_step_s'] or float('nan'):.2f}"]
        for label, r in zip(labels, records)
    ]
    phase_table = (title, ["run", *names, "a later step"], rows)
    return [epoch_table, phase_table, overhead_table(dict(zip(runs, records)), args)]


def overhead_table(by_run: dict[Run, dict], args: argparse.Namespace) -> tuple[str, list[str], list[list]]:
    """Per epoch, before and after: fresh against persistent loaders, checkpoint_every 1 against N."""
    base = by_run[Run(args.compare_workers, 1)]
    fresh = by_run[Run(args.compare_workers, 1, "fresh")]
    sparse = by_run[Run(args.compare_workers, args.checkpoint_every)]
    title = f"Per epoch, before and after, {counted(args.compare_workers, 'worker')}, seconds"
    rows = [
        [
            "first batches of an epoch after the first (train + val loaders)",
            "fresh loaders each epoch",
            f"{fresh['first_batch_later_s']:.2f}",
            "persistent loaders",
            f"{base['first_batch_later_s']:.2f}",
            f"{fresh['first_batch_later_s'] - base['first_batch_later_s']:.2f}",
        ],
        [
            "first batches of epoch 1 (worker start-up, either way)",
            "fresh loaders each epoch",
            f"{fresh['first_batch_epoch1_s']:.2f}",
            "persistent loaders",
            f"{base['first_batch_epoch1_s']:.2f}",
            "",
        ],
        [
            "checkpoint writes",
            f"checkpoint_every 1 ({counted(base['checkpoints'], 'write')})",
            f"{base['checkpoint_per_epoch_s']:.2f}",
            f"checkpoint_every {args.checkpoint_every} ({counted(sparse['checkpoints'], 'write')})",
            f"{sparse['checkpoint_per_epoch_s']:.2f}",
            f"{base['checkpoint_per_epoch_s'] - sparse['checkpoint_per_epoch_s']:.2f}",
        ],
    ]
    return title, ["per epoch", "before", "s", "after", "s", "saved s"], rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="train.num_workers values")
    parser.add_argument("--images", type=int, default=160, help="rendered images (80/10/10 split)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs a run (at least 2: epochs after the first)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per configuration, alternating")
    parser.add_argument(
        "--compare-workers",
        type=int,
        default=None,
        help="workers of the before/after runs (default: params.yaml's train.num_workers, at least 1)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        help="train.checkpoint_every of the 'after' run (default: --epochs)",
    )
    add_common_flags(parser, "where to render")
    parser.add_argument("--child-workers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-checkpoint-every", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--child-loader", choices=LOADERS, default="persistent", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_workers is not None:
        run = Run(args.child_workers, args.child_checkpoint_every, args.child_loader)
        out = args.workdir.parent / f"run-{args.child_workers}-{time.monotonic_ns()}"
        print(json.dumps(run_fit(args.workdir, run, args.epochs, args.device, out)))
        return
    if args.epochs < 2:
        parser.error(f"expected --epochs of at least 2 (the overhead is the later epochs'), got {args.epochs}")
    if args.compare_workers is None:
        args.compare_workers = max(1, resolve_num_workers(configure("default").train.num_workers))
    if args.checkpoint_every is None:
        args.checkpoint_every = args.epochs
    if args.checkpoint_every < 2:
        parser.error(f"expected --checkpoint-every of at least 2 (1 is the 'before'), got {args.checkpoint_every}")
    runs = plan(args.workers, args.compare_workers, args.checkpoint_every)
    with rendered_shards(args.workdir, args.images, *SPLIT) as shard_dir:
        counts = read_manifest(shard_dir)["counts"]
        child = ["--workdir", str(shard_dir), "--epochs", str(args.epochs), *device_args(args.device)]
        done: dict[Run, list[dict]] = {run: [] for run in runs}
        for _ in range(args.rounds):
            for run in runs:
                done[run].append(run_child(__file__, [*run.args(), *child]))
    records = [summarise(run, done[run], args.epochs, counts["train"]) for run in runs]
    report(args, {"counts": counts, "epochs": args.epochs, "rows": records}, tables(records, runs, args, counts))


if __name__ == "__main__":
    main()
