"""Wall time of whole training epochs, where it goes, and how training scales over the GPUs of a machine. Both modes
time the same instrumented `depthcore.train.fit`, in child processes.

Every clock is read once the device has finished the work queued before it (`common.synchronize`: CUDA runs
asynchronously, and a clock read without it times the queueing, not the work): around each training step, each wait
for a batch and each timed function. On a GPU this keeps the device from running ahead of the host by a step, which
costs a little throughput (the host's time to start the next step); the loop itself waits every 20 steps.

Default mode, the CPU's tables. `fit` runs `--epochs` epochs of params.yaml's default path on a freshly rendered
synthetic set, loading, augmenting, validating, drawing the grid and writing checkpoints as the train stage does. Each
configuration runs in its own Python process, `--rounds` times, alternating with the others so that a slow spell of a
shared machine falls on all of them; tables give medians over the rounds. The configurations:

- one per `--workers` count (`train.num_workers`), the loop as it is: loader workers that persist for the whole
  run, and a checkpoint after every epoch (`train.checkpoint_every` 1, params.yaml's);
- "fresh loaders": `--compare-workers` workers, a new DataLoader for every pass over the training and the validation
  split, so new worker processes each epoch, as the loop did before its loaders persisted;
- "checkpoint every N": `--compare-workers` workers, `train.checkpoint_every` N (`--checkpoint-every`, default the
  run's epoch count: only the last epoch writes one).

Tables: (1) each configuration's seconds per epoch (the whole run over its epochs). (2) Where the run's time went,
by timing the functions `fit` calls (wrapped in the child process): setup (verifying the shards, building the model,
the datasets and the loaders), the training steps (the first, with its one-off kernel set-up, apart from the rest),
the loaders' waits for the first batch of each pass, validation (less its loader's first batch), the prediction grid,
the checkpoint writes and the final model write; what is left is the training loop outside its steps: waiting for
later batches, progress bars and logging. (3) Before and after, per epoch: the first-batch waits of an epoch after
the first with fresh loaders against persistent ones, and the checkpoint writes per epoch with checkpoint_every 1
against N.

`--paper`: the paper's training profile (`model.downsample` false, the half decoder, batch 8 per process,
`train.precision` auto: bf16 on Ampere and later GPUs, channels_last, `train.num_workers` auto) on a zip rendered in
DenseDepth's layout (`common.rendered_zip_shards`: the loader decodes JPEG and 8-bit PNG, as for the real data), run
under torchrun with 1 process and with `--nproc` processes (default: every visible GPU), each process for `--steps`
training steps after `--warmup-steps` untimed ones (cuDNN choosing its kernels, the workers starting). Tables: (1)
scaling: images/s of the processes together and per process, the efficiency against 1 process (images/s of N over N
times 1's), the median step, and the share of the time the slowest process waited for a batch (after the device was
done): whether its loader workers, sharing the machine's cores with the other processes', keep up; (2) an epoch of
DenseDepth's 50,688 training pairs and its validation pass, projected from these rates; (3) the evaluate stage
(`depthcore.evaluate.evaluate_model`: every protocol, flip averaging) on the test split, with the model of the
1-process run.

    python benchmarks/epoch.py                     # 0, 1 and 2 workers, 160 rendered images, 2 epochs a run
    python benchmarks/epoch.py --paper --device cuda   # the GPUs here (benchmarks/gpu.sh)
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from common import (  # beside this script
    add_common_flags,
    configure,
    counted,
    device_args,
    peak_device_mib,
    peak_rss_mib,
    rendered_shards,
    rendered_zip_shards,
    report,
    run_child,
    synchronize,
)

import depthcore.train as train_module
from depthcore import distributed
from depthcore.config import Config
from depthcore.data import ShardDataset, resolve_num_workers, usable_cores
from depthcore.device import resolve_device, resolve_runtime
from depthcore.evaluate import evaluate_model
from depthcore.shards import read_manifest

SPLIT = (0.8, 0.1)  # train and val fractions of the rendered set, as in params.yaml
#: The functions of depthcore.train that a run of `fit` spends its time in, by phase of the table, besides
#: `train_step`, whose first call the table shows apart from the others, and the loaders' first batches.
#: `build` is the model factory fit is given; the rest are looked up in depthcore.train when fit calls them.
PHASES = {
    "setup": ("verify_for_training", "build", "prepare", "ShardDataset", "make_loader", "fingerprint",
              "load_checkpoint"),
    "validation": ("validation_loss",),
    "grid": ("prediction_grid",),
    "checkpoints": ("save_checkpoint",),
    "model write": ("save_model",),
}  # fmt: skip
LOADERS = ("persistent", "fresh")
#: DenseDepth's nyu_data.zip: its training pairs (the paper's epoch), and about the 5 % of them that
#: `data.densedepth.val_fraction` holds out (whole rooms) for validation; the paper trains 20 epochs.
REAL_TRAIN_PAIRS, REAL_VAL_PAIRS, PAPER_EPOCHS = 50_688, 2_534, 20


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
    """A loader of depthcore.data.make_loader that notes, for each pass, how long each batch was waited for (once the
    device was done) in a new list of `waits`, and ends a pass after `limit` batches (None: every batch).

    `fresh`: every pass gets a new loader (new worker processes), as the loop before persistent workers did; the old
    one, and its workers, go when its pass ends.
    """

    def __init__(
        self, make: Callable, args: tuple, kwargs: dict, fresh: bool, waits: list[list[float]], limit: int | None
    ) -> None:
        self.make, self.make_args, self.fresh, self.waits = make, (args, kwargs), fresh, waits
        self.loader = make(*args, **kwargs)
        self.sampler, self.dataset = self.loader.sampler, self.loader.dataset  # fit calls set_epoch, counts images
        self.length = len(self.loader) if limit is None else min(limit, len(self.loader))

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator:
        loader = self.loader
        if self.fresh:
            args, kwargs = self.make_args
            loader = self.make(*args, **kwargs)
            loader.sampler.set_epoch(self.sampler.epoch)
        batches, waits = iter(loader), []
        self.waits.append(waits)
        for _ in range(self.length):
            synchronize()
            t0 = time.perf_counter()
            batch = next(batches)
            waits.append(time.perf_counter() - t0)
            yield batch


def timed(fn: Callable, seconds: list[float]) -> Callable:
    """`fn`, appending each call's wall time, from a synchronised device to a synchronised device, to `seconds`."""

    def wrapper(*args, **kwargs):
        synchronize()
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            synchronize()
            seconds.append(time.perf_counter() - t0)

    return wrapper


def instrument(durations: dict, waits: dict, fresh: bool, limit: int | None) -> Callable:
    """Time the functions of depthcore.train (in this process) into `durations` by name and the loaders' waits into
    `waits` by split; the training loader stops after `limit` batches a pass. Returns the timed model factory."""
    real_make_loader = train_module.make_loader

    def make_loader(*args, **kwargs) -> TimedLoader:
        split, cap = ("train", limit) if kwargs["shuffle"] else ("val", None)
        return TimedLoader(real_make_loader, args, kwargs, fresh, waits[split], cap)

    train_module.make_loader = make_loader
    for name in ("train_step", *(name for names in PHASES.values() for name in names if name != "build")):
        setattr(train_module, name, timed(getattr(train_module, name), durations[name]))
    return timed(train_module.build_model, durations["build"])


def run_fit(config: Config, shard_dir: Path, out: Path, fresh: bool = False, limit: int | None = None,
            info: distributed.Dist | None = None) -> dict:  # fmt: skip
    """Fit per `config` as the train stage does, writing into `out`, timed: the run's wall time, its phases, every
    step and every wait for a batch."""
    durations: dict[str, list[float]] = defaultdict(list)
    waits: dict[str, list[list[float]]] = {"train": [], "val": []}  # per split, per pass, per batch
    build = instrument(durations, waits, fresh, limit)
    files = train_module.TrainFiles(shard_dir, out / "model.pt", out / "checkpoint.pt")
    synchronize()
    t0 = time.perf_counter()
    train_module.fit(config, files, lambda record, grid: None, info, build=build)
    synchronize()
    seconds = time.perf_counter() - t0
    first = {split: [passed[0] for passed in passes if passed] for split, passes in waits.items()}
    timed_phases = {phase: sum(sum(durations[name]) for name in names) for phase, names in PHASES.items()}
    timed_phases["validation"] -= sum(first["val"])  # its loader's first batches are a phase of their own
    steps = durations["train_step"]
    phases = {  # in the order a run meets them
        "setup": timed_phases.pop("setup"),
        "first batches": sum(map(sum, first.values())),
        "first step": steps[0],
        "later steps": sum(steps[1:]),
        **timed_phases,
    }
    phases["rest"] = seconds - sum(phases.values())
    return {
        "seconds": seconds,
        "phases": phases,
        "step_s": steps,
        "later_step_s": statistics.median(steps[1:]) if len(steps) > 1 else None,
        "first_batch_s": first,
        "train_waits_s": waits["train"],
        "validation_s": durations["validation_loss"],
        "checkpoint_s": durations["save_checkpoint"],
        "peak_rss_mib": peak_rss_mib(),
    }


def run_configuration(shard_dir: Path, run: Run, epochs: int, device: str | None, out: Path) -> dict:
    """Fit `epochs` epochs of the default path as `run` says (the default mode's child process)."""
    config = configure(
        "default", device=device, epochs=epochs, num_workers=run.workers, checkpoint_every=run.checkpoint_every
    )
    try:
        return run_fit(config, shard_dir, out, fresh=run.loader == "fresh")
    finally:
        shutil.rmtree(out, ignore_errors=True)  # 0.65 GB of weights and checkpoint per run


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
    """The default mode's three tables (module docstring)."""
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


def default_mode(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """The CPU's tables: every configuration of `plan`, `--rounds` times, then the three tables."""
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


def paper_config(args: argparse.Namespace) -> Config:
    """The paper's profile (module docstring), one epoch of at most `--warmup-steps` + `--steps` steps a process."""
    return configure(
        "default", downsample=args.downsample == "true", decoder="half", device=args.device, epochs=1,
        batch_size=args.batch_size, global_batch_size=None, precision="auto", channels_last=True, compile=False,
        num_workers="auto", checkpoint_every=1,
    )  # fmt: skip


def paper_child(args: argparse.Namespace) -> None:
    """One process of a --paper run under torchrun: fit, then, on rank 0 with --child-evaluate, the evaluate stage's
    work on the test split; writes its record to --child-out/rank<RANK>.json."""
    config = paper_config(args)
    t = config.train
    info = distributed.setup(resolve_device(t.device).type)
    try:
        limit = args.warmup_steps + args.steps
        record = run_fit(config, args.workdir, args.child_out / "run", limit=limit, info=info)
        record |= {
            "rank": info.rank,
            "precision": resolve_runtime(t.device, t.precision, t.channels_last).precision,
            "device": torch.cuda.get_device_name() if torch.cuda.is_initialized() else resolve_device(t.device).type,
            "workers": resolve_num_workers(t.num_workers, info.local_world_size),
            "cores": usable_cores(),
            "val_images": len(ShardDataset(args.workdir, "val", verify=False)),
            "peak_device_mib": peak_device_mib(torch.device("cuda")) if torch.cuda.is_initialized() else None,
        }
        if args.child_evaluate and info.is_main:
            test_images = len(ShardDataset(args.workdir, "test", verify=False))
            synchronize()
            t0 = time.perf_counter()
            evaluate_model(config, args.workdir, args.child_out / "run" / "model.pt")
            synchronize()
            record["evaluation"] = {"images": test_images, "seconds": time.perf_counter() - t0}
        (args.child_out / f"rank{info.rank}.json").write_text(json.dumps(record))
    finally:
        distributed.teardown(info)


def paper_run(shard_dir: Path, nproc: int, args: argparse.Namespace, evaluate: bool) -> list[dict]:
    """Run `paper_child` under torchrun in `nproc` processes; their records, by rank."""
    out = shard_dir.parent / f"paper-{nproc}"
    out.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", __file__,
               "--child-paper", "--child-out", str(out), "--workdir", str(shard_dir), *paper_flags(args),
               *(["--child-evaluate"] if evaluate else [])]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[2:])} failed:\n{done.stdout[-1500:]}\n{done.stderr[-3000:]}")
    try:
        return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(nproc)]
    finally:
        shutil.rmtree(out)


def paper_flags(args: argparse.Namespace) -> list[str]:
    """The profile's flags, for a child process."""
    flags = ["--downsample", args.downsample, "--batch-size", str(args.batch_size), "--steps", str(args.steps)]
    return flags + ["--warmup-steps", str(args.warmup_steps), *device_args(args.device)]


def steady(records: list[dict], skip: int, batch: int) -> dict:
    """One run's rates (its processes' records) over the training steps after the first `skip`: the slowest
    process's time for them, steps and waits for their batches together; and its validation pass."""
    steps = len(records[0]["step_s"]) - skip
    if steps < 1:
        raise SystemExit(f"expected more than {skip} training steps a process, got {steps + skip}: render more")
    windows = [sum(r["step_s"][skip:]) + sum(r["train_waits_s"][0][skip:]) for r in records]
    waits = [sum(r["train_waits_s"][0][skip:]) for r in records]
    first = records[0]
    period = max(windows) / steps  # one step of every process, waits included
    # validation: the first batch's wait (its workers start for each pass) apart from the rest, which overlaps
    val_start = max(r["first_batch_s"]["val"][0] for r in records)
    val_work = max(sum(r["validation_s"]) - r["first_batch_s"]["val"][0] for r in records)
    return {
        "processes": len(records),
        "steps": steps,
        "step_s": statistics.median(s for r in records for s in r["step_s"][skip:]),
        "period_s": period,
        "img_s": len(records) * batch / period,
        "wait_share": max(w / window for w, window in zip(waits, windows)),
        "val_start_s": val_start,
        "val_s_per_image": val_work / first["val_images"],
        **{key: first[key] for key in ("precision", "device", "workers", "cores", "peak_device_mib")},
    }


def paper_tables(rows: list[dict], evaluation: dict, args: argparse.Namespace, counts: dict) -> list:
    """Scaling, the projected epoch and the evaluation (module docstring)."""
    first, batch = rows[0], args.batch_size
    model = f"downsample {args.downsample}, half decoder, {first['precision']}, channels_last, on {first['device']}"
    scaling = [
        [r["processes"], r["processes"] * batch, r["steps"], f"{r['img_s']:.1f}", f"{r['img_s'] / r['processes']:.1f}",
         f"{100 * r['img_s'] / (r['processes'] * first['img_s']):.0f} %", f"{r['step_s']:.3f}",
         f"{100 * r['wait_share']:.1f} %", f"{r['workers']} (of {r['cores']} cores)",
         "" if r["peak_device_mib"] is None else f"{r['peak_device_mib']:.0f}"]
        for r in rows
    ]  # fmt: skip
    headers = ["processes", "global batch", "steps timed", "images/s", "per process", "efficiency", "a step s",
               "waiting for batches", "loader workers a process", "peak GPU MiB"]  # fmt: skip
    title = (f"Training: {model}, batch {batch} a process; {counts['train']} train images, {args.warmup_steps} "
             "untimed steps first; efficiency: images/s over the processes times 1 process's; waiting: the slowest "
             "process's share of the time")  # fmt: skip
    projected = []
    for r in rows:
        train_s = math.ceil(REAL_TRAIN_PAIRS / (r["processes"] * batch)) * r["period_s"]
        val_s = r["val_start_s"] + REAL_VAL_PAIRS * r["val_s_per_image"]
        projected.append([r["processes"], f"{train_s / 60:.1f}", f"{val_s / 60:.1f}", f"{(train_s + val_s) / 60:.1f}",
                          f"{PAPER_EPOCHS * (train_s + val_s) / 3600:.1f}"])  # fmt: skip
    projection = (f"Projected from these rates, minutes: a pass over DenseDepth's {REAL_TRAIN_PAIRS:,} training pairs "
                  f"and the validation of about {REAL_VAL_PAIRS:,} (data.densedepth.val_fraction 0.05 of them); hours "
                  f"for the paper's {PAPER_EPOCHS} epochs",
                  ["processes", "train pass", "validation", "epoch", f"{PAPER_EPOCHS} epochs"], projected)  # fmt: skip
    rate = evaluation["images"] / evaluation["seconds"]
    evaluated = [[evaluation["images"], f"{evaluation['seconds']:.1f}", f"{rate:.2f}"]]
    evaluation_table = (f"The evaluate stage on the test split, 1 process ({model}; every protocol, flip averaging, "
                        f"eval.batch_size; loading the model and drawing the grid included)",
                        ["test images", "seconds", "images/s"], evaluated)  # fmt: skip
    return [(title, headers, scaling), projection, evaluation_table]


def paper_mode(args: argparse.Namespace) -> None:
    """1 process, then `--nproc`, under torchrun on rendered zip-layout shards; the three tables."""
    nproc = args.nproc or max(torch.cuda.device_count(), 1)
    counts = sorted({1, nproc})
    min_train = (args.warmup_steps + args.steps) * args.batch_size * max(counts)
    with rendered_zip_shards(args.workdir, args.scenes, args.frames, args.test, min_train) as shard_dir:
        manifest = read_manifest(shard_dir)
        runs = [paper_run(shard_dir, n, args, evaluate=n == 1) for n in counts]
    rows = [steady(records, args.warmup_steps, args.batch_size) for records in runs]
    evaluation = runs[0][0]["evaluation"]
    record = {"counts": manifest["counts"], "rows": rows, "evaluation": evaluation}
    report(args, record, paper_tables(rows, evaluation, args, manifest["counts"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="train.num_workers values")
    parser.add_argument("--images", type=int, default=160, help="rendered images (80/10/10 split)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs a run (at least 2: epochs after the first)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per configuration, alternating")
    parser.add_argument("--compare-workers", type=int, default=None,
                        help="workers of the before/after runs (default: params.yaml's train.num_workers, at least 1)")
    parser.add_argument("--checkpoint-every", type=int, default=None,
                        help="train.checkpoint_every of the 'after' run (default: --epochs)")  # fmt: skip
    paper = parser.add_argument_group("--paper: the paper's profile under torchrun")
    paper.add_argument("--paper", action="store_true", help="measure the paper's profile (module docstring)")
    paper.add_argument("--nproc", type=int, default=None, help="processes to compare with 1 (default: every GPU)")
    paper.add_argument("--steps", type=int, default=150, help="timed training steps a process")
    paper.add_argument("--warmup-steps", type=int, default=10, help="untimed training steps before them")
    paper.add_argument("--batch-size", type=int, default=8, help="images a step and process")
    paper.add_argument("--downsample", choices=["true", "false"], default="false", help="model.downsample")
    paper.add_argument("--scenes", type=int, default=16, help="rendered rooms (one held out for validation)")
    paper.add_argument("--frames", type=int, default=20, help="rendered frames a room")
    paper.add_argument("--test", type=int, default=32, help="rendered test pairs")
    add_common_flags(parser, "where to render")
    parser.add_argument("--child-workers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-checkpoint-every", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--child-loader", choices=LOADERS, default="persistent", help=argparse.SUPPRESS)
    parser.add_argument("--child-paper", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-evaluate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_paper:
        paper_child(args)
    elif args.child_workers is not None:
        run = Run(args.child_workers, args.child_checkpoint_every, args.child_loader)
        out = args.workdir.parent / f"run-{args.child_workers}-{time.monotonic_ns()}"
        print(json.dumps(run_configuration(args.workdir, run, args.epochs, args.device, out)))
    elif args.paper:
        paper_mode(args)
    else:
        default_mode(args, parser)


if __name__ == "__main__":
    main()
