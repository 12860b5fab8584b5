"""Speed and memory of training steps, plain fp32 against the default path, and their quality parity.

"plain fp32" is fp32, contiguous memory, `torch.optim.AdamW` with its defaults and no compile. "default" is what
params.yaml's `train` section resolves to on this machine, built by depthcore.train's own `prepare` and
`make_optimizer`; both paths step through `depthcore.train.train_step` and read the loss back (`.item()`) each step
as `fit` does. Each configuration runs in its own Python process, so its peak RSS (`ru_maxrss`, imports included) is
its own, `--rounds` times, alternating with the other path; s/step is the median over all rounds' steps. Inputs are
random 480x640 images (speed does not depend on the pixels); warm-up steps (where a compiled model compiles) are
timed apart and left out of s/step. The full-resolution model (`model.downsample: false`) is about 25 times slower
per image, so it runs at batch 2 and with fewer steps.

`--quality` trains both paths for a few epochs from the same seed on a freshly rendered synthetic set at 480x640
(depthcore.train.fit with the params.yaml config) and compares their final validation losses, beside a third run,
fp32 with channels_last: the same arithmetic as fp32 in another summation order, so its difference from fp32 is
the noise floor of the comparison, what rounding alone does to the result. Its learning rate is `--lr`, 1e-4 by
default (the report's): at params.yaml's 5e-4, training from scratch on this small set has loss spikes (the fp32
run's validation loss went 0.55, 1.01, 0.67 over epochs 2-4), and the two fp32 runs that differ only in rounding
ended 27 % apart, which no precision can be judged against; at 1e-4 they ended 0.14 % apart.

    python benchmarks/train_step.py                 # the speed table
    python benchmarks/train_step.py --json          # the same as JSON
    python benchmarks/train_step.py --quality       # fp32 against default: final validation loss
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from common import (  # beside this script
    PARAMS,
    machine,
    peak_rss_mib,
    print_table,
    render_shards,
    run_child,
    runtime_fields,
)

from depthcore.config import Config, load_config
from depthcore.device import resolve_runtime
from depthcore.nyu import HEIGHT, WIDTH
from depthcore.train import build_loss, build_model, fit, make_optimizer, prepare, train_step

PATHS = ("fp32", "default")
#: (batch size, timed steps, warm-up steps) of the full-resolution model, whatever --steps and --warmup say.
FULL_RESOLUTION = (2, 2, 1)
#: --quality's train and val fractions: a large validation split (cheap to run) averages out single images.
QUALITY_SPLIT = (0.5, 0.4)


def configure(path: str, downsample: bool | None = None, **train) -> Config:
    """params.yaml with `model.downsample` and `train` changes; the fp32 path: fp32, contiguous memory, no compile."""
    config = load_config(PARAMS)
    if path == "fp32":
        train = {"precision": "fp32", "channels_last": False, "compile": False} | train
    model = config.model if downsample is None else replace(config.model, downsample=downsample)
    return replace(config, model=model, train=replace(config.train, **train))


def measure_steps(path: str, downsample: bool, batch_size: int, steps: int, warmup: int) -> dict:
    """Time `warmup` + `steps` training steps of one path on a random (batch_size, 3, 480, 640) batch."""
    config = configure(path, downsample=downsample, batch_size=batch_size)
    c = config.train
    model, loss_fn = build_model(config), build_loss(config)
    runtime = resolve_runtime(c.device, c.precision, c.channels_last)
    if path == "fp32":  # the plain loop: no depthcore speed-ups
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, c.lr, weight_decay=c.weight_decay)
        net = model.to(runtime.device)
    else:
        optimizer = make_optimizer(model, c.lr, c.weight_decay)
        net = prepare(model, runtime, c.compile)
    scaler = runtime.grad_scaler()
    generator = torch.Generator().manual_seed(config.seed)
    low, high = config.loss.min_depth, config.loss.max_depth
    batch = {
        "rgb": torch.rand(batch_size, 3, HEIGHT, WIDTH, generator=generator),  # (B, 3, H, W) in [0, 1]
        "depth": low + (high - low) * torch.rand(batch_size, 1, HEIGHT, WIDTH, generator=generator),  # metres
    }
    net.train()
    times = []
    for _ in range(warmup + steps):
        t0 = time.perf_counter()
        loss, _ = train_step(net, batch, loss_fn, optimizer, scaler, runtime)
        loss.item()  # waits for the step, as fit's progress bar does
        times.append(time.perf_counter() - t0)
    return runtime_fields(path, downsample, runtime) | {
        "compile": path == "default" and c.compile,
        "batch_size": batch_size,
        "warmup_s": sum(times[:warmup]),
        "step_times": times[warmup:],
        "peak_rss_mib": peak_rss_mib(),
    }


def combine(runs: list[dict]) -> dict:
    """One record from the rounds of one configuration: median step time, mean warm-up, largest peak RSS."""
    times = [t for run in runs for t in run["step_times"]]
    step_s = statistics.median(times)
    return runs[0] | {
        "rounds": len(runs),
        "steps": len(times),
        "warmup_s": statistics.mean(run["warmup_s"] for run in runs),
        "step_times": times,
        "step_s": step_s,
        "img_s": runs[0]["batch_size"] / step_s,
        "peak_rss_mib": max(run["peak_rss_mib"] for run in runs),
    }


def quality_run(path: str, shard_dir: Path, epochs: int, lr: float, channels_last: bool | None) -> dict:
    """Fit one path on `shard_dir` (channels_last None: the path's own); its losses and wall time."""
    changes = {"epochs": epochs, "lr": lr} | ({} if channels_last is None else {"channels_last": channels_last})
    config = configure(path, **changes)
    c = config.train
    out = shard_dir.parent / f"{path}-{c.channels_last}"
    t0 = time.perf_counter()
    history = fit(config, shard_dir, out / "model.pt", out / "checkpoint.pt", lambda record, grid: None)
    return {
        "path": path,
        "precision": resolve_runtime(c.device, c.precision, c.channels_last).precision,
        "channels_last": c.channels_last,
        "compile": c.compile,
        "seconds": time.perf_counter() - t0,
        "train_loss": history[-1]["train_loss"],
        "val_loss": history[-1]["val_loss"],
        "val_losses": [record["val_loss"] for record in history],
        "peak_rss_mib": peak_rss_mib(),
    }


def speed_table(modes: list[bool], steps: int, warmup: int, rounds: int) -> tuple[str, list[str], list[list], dict]:
    """Measure both paths in each mode; the table's title, headers and rows, and the JSON record.

    The paths alternate, round after round (fp32, default, fp32, default, ...), so that a slow spell of a shared
    machine falls on both rather than on one; the median step of all rounds is less swayed by one slow step.
    """
    rows, records = [], []
    for downsample in modes:
        batch, n, w = (8, steps, warmup) if downsample else FULL_RESOLUTION
        args = ["--child-downsample", str(downsample).lower(), "--batch-size", str(batch)]
        args += ["--steps", str(n), "--warmup", str(w)]
        runs = {path: [] for path in PATHS}
        for _ in range(rounds):
            for path in PATHS:
                runs[path].append(run_child(__file__, ["--child-path", path, *args]))
        baseline = combine(runs["fp32"])
        for path in PATHS:
            record = combine(runs[path])
            record["speedup"] = record["img_s"] / baseline["img_s"]
            records.append(record)
            rows.append(
                [
                    f"{str(downsample).lower()} (batch {batch}, {rounds}x{n} steps)",
                    path,
                    record["precision"],
                    record["channels_last"],
                    record["compile"],
                    f"{record['warmup_s']:.1f}",
                    f"{record['step_s']:.2f}",
                    f"{record['img_s']:.2f}",
                    f"{record['peak_rss_mib']:.0f}",
                    f"{record['speedup']:.2f}x",
                ]
            )
    downsampled = {r["path"]: r for r in records if r["downsample"]}
    summary = {
        "fp32_img_s": downsampled["fp32"]["img_s"] if downsampled else None,
        "default_img_s": downsampled["default"]["img_s"] if downsampled else None,
        "speedup": downsampled["default"]["speedup"] if downsampled else None,
        "rows": records,
    }
    title = "480x640 input, s/step the median; speedup: images/s over fp32's"
    headers = ["downsample", "path", "precision", "channels_last", "compile", "warm-up s", "s/step", "images/s"]
    return title, headers + ["peak RSS MiB", "speedup"], rows, summary


def quality_table(num_images: int, epochs: int, lr: float, workdir: Path) -> tuple[str, list[str], list[list], dict]:
    """Render, shard, fit fp32, its channels_last twin and the default path; title, headers, rows and JSON record."""
    t0 = time.perf_counter()
    shard_dir = render_shards(workdir, num_images, *QUALITY_SPLIT)
    render_s = time.perf_counter() - t0
    common = ["--workdir", str(shard_dir), "--epochs", str(epochs), "--lr", str(lr)]
    runs = [["fp32"], ["fp32", "--channels-last"], ["default"]]
    fp32, twin, default = (run_child(__file__, ["--quality-path", *run, *common]) for run in runs)
    rows = []
    for label, record in (("fp32", fp32), ("fp32 twin (noise floor)", twin), ("default", default)):
        record["val_rel_diff"] = (record["val_loss"] - fp32["val_loss"]) / fp32["val_loss"]
        rows.append(
            [
                label,
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
    headers = ["run", "precision", "channels_last", "compile", "seconds", "final train loss", "val loss by epoch"]
    return title, headers + ["final val vs fp32", "peak RSS MiB"], rows, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15, help="timed steps of the downsampled model (batch 8)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--rounds", type=int, default=2, help="fresh processes per configuration, alternating")
    parser.add_argument("--modes", nargs="+", choices=["true", "false"], default=["true", "false"], help="downsample")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--quality", action="store_true", help="compare final validation losses instead of speed")
    parser.add_argument("--images", type=int, default=160, help="--quality: rendered images (50/40/10 split)")
    parser.add_argument("--epochs", type=int, default=5, help="--quality: training epochs")
    parser.add_argument("--lr", type=float, default=1e-4, help="--quality: learning rate (see above)")
    parser.add_argument("--workdir", type=Path, default=None, help="--quality: where to render (default: temporary)")
    parser.add_argument("--batch-size", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--child-path", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--child-downsample", choices=["true", "false"], help=argparse.SUPPRESS)
    parser.add_argument("--quality-path", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--channels-last", action="store_const", const=True, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_path:
        downsample = args.child_downsample == "true"
        print(json.dumps(measure_steps(args.child_path, downsample, args.batch_size, args.steps, args.warmup)))
        return
    if args.quality_path:
        print(json.dumps(quality_run(args.quality_path, args.workdir, args.epochs, args.lr, args.channels_last)))
        return
    if args.quality:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = args.workdir or Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            title, headers, rows, summary = quality_table(args.images, args.epochs, args.lr, workdir)
    else:
        modes = [mode == "true" for mode in args.modes]
        title, headers, rows, summary = speed_table(modes, args.steps, args.warmup, args.rounds)
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    print(machine())
    print(title)
    print_table(headers, rows)


if __name__ == "__main__":
    main()
