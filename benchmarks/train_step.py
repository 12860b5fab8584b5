"""Speed and memory of training steps, plain fp32 against the default path, and their quality parity.

"plain fp32" is fp32, contiguous memory, `torch.optim.AdamW` with its defaults and no compile. "default" is what
params.yaml's `train` section resolves to on this machine, built as `depthcore.train.fit` builds it (`prepare`, then
`TrainState.create`); both paths step through `depthcore.train.train_step` and read the loss back (`.item()`) each step,
which waits for the device. The device is `train.device` (params.yaml's `auto`: cuda, then mps, then cpu; --device
chooses another), so on a CUDA machine this measures CUDA, with cuDNN choosing its kernels as fit lets it (both
paths). Each configuration runs in its own Python process, so its peak RSS (`ru_maxrss`, imports included) and GPU
memory are its own, `--rounds` times, alternating with the other path; s/step is the median over all rounds' steps.
Inputs are random uint8 480x640 images, as the loader delivers them (speed does not depend on the pixels), pinned
on CUDA as the loader pins them; warm-up steps (where a compiled model compiles, cuDNN tries its kernels) are timed
apart and left out of s/step. On the CPU the full-resolution model (`model.downsample: false`) is about 25 times
slower per image, so there it runs at batch 2 and with fewer steps; elsewhere at params.yaml's batch size.

`--quality` trains both paths for a few epochs from the same seed on a freshly rendered synthetic set at 480x640
(depthcore.train.fit with the params.yaml config) and compares their final validation losses, beside a third run,
fp32 with channels_last: the same arithmetic as fp32 in another summation order, so its difference from fp32 is
the noise floor of the comparison, what rounding alone does to the result. Its learning rate is `--lr`, 1e-4 by
default (the report's): at params.yaml's 5e-4, training from scratch on this small set has loss spikes (the fp32
run's validation loss went 0.55, 1.01, 0.67 over epochs 2-4), and the two fp32 runs that differ only in rounding
ended 27 % apart, which no precision can be judged against; at 1e-4 they ended 0.14 % apart.

    python benchmarks/train_step.py                 # the speed table
    python benchmarks/train_step.py --json          # the same as JSON
    python benchmarks/train_step.py --device cuda --save step.json   # on a GPU; the record for data.py --against
    python benchmarks/train_step.py --quality       # fp32 against default: final validation loss
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from common import (  # beside this script
    PATHS,
    Table,
    add_common_flags,
    configure,
    device_args,
    peak_device_mib,
    peak_rss_mib,
    rendered_shards,
    report,
    run_child,
    runtime_fields,
    train_runtime,
)

from depthcore.checkpoint import TrainState
from depthcore.device import resolve_device
from depthcore.inference import prepare
from depthcore.nyu import HEIGHT, WIDTH
from depthcore.train import TrainFiles, build_loss, build_model, fit, train_step

#: (batch size, timed steps, warm-up steps) of the full-resolution model on the CPU, whatever --steps and --warmup
#: say; other devices run it like the downsampled model, at params.yaml's batch size.
FULL_RESOLUTION_CPU = (2, 2, 1)
#: --quality's train and val fractions: a large validation split (cheap to run) averages out single images.
QUALITY_SPLIT = (0.5, 0.4)


def measure_steps(path: str, downsample: bool, batch_size: int, steps: int, warmup: int, device: str | None) -> dict:
    """Time `warmup` + `steps` training steps of one path on a random (batch_size, 3, 480, 640) batch."""
    config = configure(path, downsample=downsample, device=device, batch_size=batch_size)
    c = config.train
    runtime = train_runtime(config)
    (model, _), loss_fn = build_model(config), build_loss(config).to(runtime.device)
    if path == "fp32":  # the plain loop: no depthcore speed-ups
        net = model.to(runtime.device)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, c.lr, weight_decay=c.weight_decay)
        constant = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        state = TrainState(model, optimizer, runtime.grad_scaler(), constant, ema=None)
    else:  # as fit builds it: on the device first, then the state (optimizer, schedule, ...)
        net = prepare(model, runtime, c.compile)
        state = TrainState.create(model, config, runtime, total_steps=warmup + steps)
    generator = torch.Generator().manual_seed(config.seed)
    low, high = config.loss.min_depth, config.loss.max_depth
    batch = {  # what the loader delivers: uint8 images, made float on the device by train_step
        "rgb": torch.randint(0, 256, (batch_size, 3, HEIGHT, WIDTH), dtype=torch.uint8, generator=generator),
        "depth": low + (high - low) * torch.rand(batch_size, 1, HEIGHT, WIDTH, generator=generator),  # metres
    }
    if runtime.device.type == "cuda":  # the loader pins its batches for CUDA
        batch = {key: value.pin_memory() for key, value in batch.items()}
    net.train()
    times = []
    for _ in range(warmup + steps):
        t0 = time.perf_counter()
        loss = train_step(net, batch, loss_fn, state, runtime)
        loss.item()  # waits for the step, as fit's loss check does
        times.append(time.perf_counter() - t0)
    return runtime_fields(path, downsample, runtime) | {
        "compile": path == "default" and c.compile,
        "batch_size": batch_size,
        "warmup_s": sum(times[:warmup]),
        "step_times": times[warmup:],
        "peak_rss_mib": peak_rss_mib(),
        "peak_device_mib": peak_device_mib(runtime.device),
    }


def combine(runs: list[dict]) -> dict:
    """One record from the rounds of one configuration: median step time, mean warm-up, largest peak memory."""
    times = [t for run in runs for t in run["step_times"]]
    step_s = statistics.median(times)
    device_peaks = [run["peak_device_mib"] for run in runs if run["peak_device_mib"] is not None]
    return runs[0] | {
        "rounds": len(runs),
        "steps": len(times),
        "warmup_s": statistics.mean(run["warmup_s"] for run in runs),
        "step_times": times,
        "step_s": step_s,
        "img_s": runs[0]["batch_size"] / step_s,
        "peak_rss_mib": max(run["peak_rss_mib"] for run in runs),
        "peak_device_mib": max(device_peaks) if device_peaks else None,
    }


def quality_run(
    path: str, shard_dir: Path, epochs: int, lr: float, channels_last: bool | None, device: str | None
) -> dict:
    """Fit one path on `shard_dir` (channels_last None: the path's own); its losses and wall time."""
    changes = {"epochs": epochs, "lr": lr} | ({} if channels_last is None else {"channels_last": channels_last})
    config = configure(path, device=device, **changes)
    c = config.train
    runtime = train_runtime(config)
    out = shard_dir.parent / f"{path}-{c.channels_last}"
    t0 = time.perf_counter()
    history = fit(config, TrainFiles(shard_dir, out / "model.pt", out / "checkpoint.pt"), lambda record, grid: None)
    return {
        "path": path,
        "device": runtime.device.type,
        "precision": runtime.precision,
        "channels_last": c.channels_last,
        "compile": c.compile,
        "seconds": time.perf_counter() - t0,
        "train_loss": history[-1]["train_loss"],
        "val_loss": history[-1]["val_loss"],
        "val_losses": [record["val_loss"] for record in history],
        "peak_rss_mib": peak_rss_mib(),
    }


def step_plan(downsample: bool, device: str | None, steps: int, warmup: int) -> tuple[int, int, int]:
    """(batch size, timed steps, warm-up steps) of one mode: params.yaml's batch size and --steps / --warmup, but for
    the full-resolution model on the CPU, about 25 times slower per image (FULL_RESOLUTION_CPU)."""
    config = configure("default", device=device)
    if not downsample and resolve_device(config.train.device).type == "cpu":
        return FULL_RESOLUTION_CPU
    return config.train.batch_size, steps, warmup


def speed_row(r: dict, on_gpu: bool) -> list:
    """One configuration's row of the speed table (with its peak GPU memory when `on_gpu`)."""
    per_round = r["steps"] // r["rounds"]
    return [
        f"{str(r['downsample']).lower()} (batch {r['batch_size']}, {r['rounds']}x{per_round} steps)",
        r["path"],
        r["device"],
        r["precision"],
        r["channels_last"],
        r["compile"],
        f"{r['warmup_s']:.1f}",
        f"{r['step_s']:.3f}",
        f"{r['img_s']:.2f}",
        f"{r['peak_rss_mib']:.0f}",
        *([f"{r['peak_device_mib']:.0f}"] if on_gpu else []),
        f"{r['speedup']:.2f}x",
    ]


def speed_table(modes: list[bool], steps: int, warmup: int, rounds: int, device: str | None) -> tuple[Table, dict]:
    """Measure both paths in each mode; the table and the JSON record.

    The paths alternate, round after round (fp32, default, fp32, default, ...), so that a slow spell of a shared
    machine falls on both rather than on one; the median step of all rounds is less swayed by one slow step.
    """
    records = []
    for downsample in modes:
        batch, n, w = step_plan(downsample, device, steps, warmup)
        args = ["--child-downsample", str(downsample).lower(), "--batch-size", str(batch)]
        args += ["--steps", str(n), "--warmup", str(w), *device_args(device)]
        runs = {path: [] for path in PATHS}
        for _ in range(rounds):
            for path in PATHS:
                runs[path].append(run_child(__file__, ["--child-path", path, *args]))
        baseline = combine(runs["fp32"])
        for path in PATHS:
            record = combine(runs[path])
            records.append(record | {"speedup": record["img_s"] / baseline["img_s"]})
    on_gpu = any(r["peak_device_mib"] is not None for r in records)
    rows = [speed_row(r, on_gpu) for r in records]
    downsampled = {r["path"]: r for r in records if r["downsample"]}
    summary = {
        "fp32_img_s": downsampled["fp32"]["img_s"] if downsampled else None,
        "default_img_s": downsampled["default"]["img_s"] if downsampled else None,
        "speedup": downsampled["default"]["speedup"] if downsampled else None,
        "rows": records,
    }
    title = "480x640 input, s/step the median; speedup: images/s over fp32's"
    headers = ["downsample", "path", "device", "precision", "channels_last", "compile", "warm-up s", "s/step"]
    headers += ["images/s", "peak RSS MiB", *(["peak GPU MiB"] if on_gpu else []), "speedup"]
    return (title, headers, rows), summary


def quality_table(
    num_images: int, epochs: int, lr: float, shard_dir: Path, render_s: float, device: str | None
) -> tuple[Table, dict]:
    """Fit fp32, its channels_last twin and the default path on `shard_dir`; the table and the JSON record."""
    shared = ["--workdir", str(shard_dir), "--epochs", str(epochs), "--lr", str(lr), *device_args(device)]
    runs = [["fp32"], ["fp32", "--channels-last"], ["default"]]
    fp32, twin, default = (run_child(__file__, ["--quality-path", *run, *shared]) for run in runs)
    rows = []
    for label, record in (("fp32", fp32), ("fp32 twin (noise floor)", twin), ("default", default)):
        record["val_rel_diff"] = (record["val_loss"] - fp32["val_loss"]) / fp32["val_loss"]
        rows.append(
            [
                label,
                record["device"],
                record["precision"],
                record["channels_last"],
                record["compile"],
                f"{record['seconds']:.0f}",
                f"{record['train_loss']:.4f}",
                " ".join(f"{loss:.4f}" for loss in record["val_losses"]),
                f"{100 * record['val_rel_diff']:+.2f} %",
                f"{record['peak_rss_mib']:.0f}",
            ]
        )
    summary = {"num_images": num_images, "epochs": epochs, "lr": lr, "render_s": render_s}
    summary |= {"val_rel_diff": default["val_rel_diff"], "noise_rel_diff": twin["val_rel_diff"]}
    summary["rows"] = [fp32, twin, default]
    title = f"{num_images} rendered images (rendered, sharded in {render_s:.0f} s), {epochs} epochs, lr {lr}, 480x640"
    headers = ["run", "device", "precision", "channels_last", "compile", "seconds", "final train loss"]
    headers += ["val loss by epoch", "final val vs fp32", "peak RSS MiB"]
    return (title, headers, rows), summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15, help="timed steps per process (batch: params.yaml's, 8)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--rounds", type=int, default=2, help="fresh processes per configuration, alternating")
    parser.add_argument("--modes", nargs="+", choices=["true", "false"], default=["true", "false"], help="downsample")
    add_common_flags(parser, "--quality: where to render")
    parser.add_argument("--quality", action="store_true", help="compare final validation losses instead of speed")
    parser.add_argument("--images", type=int, default=160, help="--quality: rendered images (50/40/10 split)")
    parser.add_argument("--epochs", type=int, default=5, help="--quality: training epochs")
    parser.add_argument("--lr", type=float, default=1e-4, help="--quality: learning rate (see above)")
    parser.add_argument("--batch-size", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--child-path", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--child-downsample", choices=["true", "false"], help=argparse.SUPPRESS)
    parser.add_argument("--quality-path", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--channels-last", action="store_const", const=True, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_path:
        downsample = args.child_downsample == "true"
        record = measure_steps(args.child_path, downsample, args.batch_size, args.steps, args.warmup, args.device)
        print(json.dumps(record))
        return
    if args.quality_path:
        record = quality_run(args.quality_path, args.workdir, args.epochs, args.lr, args.channels_last, args.device)
        print(json.dumps(record))
        return
    if args.quality:
        t0 = time.perf_counter()
        with rendered_shards(args.workdir, args.images, *QUALITY_SPLIT) as shard_dir:
            render_s = time.perf_counter() - t0
            table, summary = quality_table(args.images, args.epochs, args.lr, shard_dir, render_s, args.device)
    else:
        modes = [mode == "true" for mode in args.modes]
        table, summary = speed_table(modes, args.steps, args.warmup, args.rounds, args.device)
    report(args, summary, [table])


if __name__ == "__main__":
    main()
