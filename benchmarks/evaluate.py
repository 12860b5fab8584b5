"""Speed of evaluation: images/s through every protocol with flip averaging, and where the time goes.

A freshly rendered synthetic set is sharded with most images in the test split; an untrained model (weights from
params.yaml's seed: speed does not depend on them) goes through `depthcore.evaluate.run_protocols` with params.yaml's
protocols (all three), eval batch size and flip averaging, as the evaluate stage runs it. "fp32" is plain fp32 with
contiguous memory; "default" is what params.yaml's `train` section resolves to (the evaluate stage's runtime). Each
configuration runs in its own Python process (peak RSS is its own) after one untimed forward pass that sets up the
kernels. "forward" is the time inside the predictor (the network on the image and on its mirror image, the bilinear
upsampling and the conversion to metres); "loader" is one plain pass over the test split's loader, timed before;
"metrics" is the rest: the eight metrics for each image under each protocol.

    python benchmarks/evaluate.py --images 20
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from common import machine, peak_rss_mib, print_table, render_shards, run_child, runtime_fields  # beside this script
from train_step import PATHS, configure

from depthcore.data import ShardDataset, make_loader
from depthcore.device import resolve_runtime
from depthcore.evaluate import run_protocols
from depthcore.train import build_loss, build_model, predict_depth, prepare

HOLD_OUT = 0.1  # train and val fractions of the rendered set; the rest (most of it) is the test split


def measure(path: str, downsample: bool, shard_dir: Path) -> dict:
    """Evaluate an untrained model of one path on the test split, timing forward passes, loader and the whole."""
    config = configure(path, downsample)  # the fp32 path: fp32 and contiguous memory
    c, e = config.train, config.eval
    runtime = resolve_runtime(c.device, c.precision, c.channels_last)
    loss_fn = build_loss(config)
    net = prepare(build_model(config), runtime).eval()
    test = ShardDataset(shard_dir, "test")
    forward = []

    def predict(rgb: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        depth = predict_depth(net, rgb, runtime, loss_fn).cpu()  # (B, 1, H, W) metres
        forward.append(time.perf_counter() - t0)
        return depth

    first = next(iter(make_loader(test, e.batch_size, shuffle=False, seed=0)))
    predict(first["rgb"])  # untimed: oneDNN sets up its kernels on the first batch
    forward.clear()
    t0 = time.perf_counter()
    for _ in make_loader(test, e.batch_size, shuffle=False, seed=0):
        pass
    loader_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_protocols(predict, test, e.protocols, e.batch_size, e.edge_threshold, config.loss.max_depth)
    total_s = time.perf_counter() - t0
    return runtime_fields(path, downsample, runtime) | {
        "protocols": e.protocols,
        "batch_size": e.batch_size,
        "images": len(test),
        "seconds": total_s,
        "img_s": len(test) / total_s,
        "forward_s": sum(forward),
        "loader_s": loader_s,
        "metrics_s": total_s - sum(forward) - loader_s,
        "peak_rss_mib": peak_rss_mib(),
    }


def table(records: list[dict]) -> list[list]:
    rows = []
    for r in records:
        parts = ("forward_s", "metrics_s", "loader_s")
        shares = [f"{r[key]:.1f} ({100 * r[key] / r['seconds']:.0f} %)" for key in parts]
        rows.append(
            [
                str(r["downsample"]).lower(),
                r["path"],
                r["precision"],
                r["channels_last"],
                r["images"],
                f"{r['seconds']:.1f}",
                f"{r['img_s']:.2f}",
                *shares,
                f"{r['peak_rss_mib']:.0f}",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20, help="rendered images; 80 %% of them are the test split")
    parser.add_argument("--modes", nargs="+", choices=["true", "false"], default=["true"], help="model.downsample")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--workdir", type=Path, default=None, help="where to render (default: a temporary folder)")
    parser.add_argument("--child-path", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--child-downsample", choices=["true", "false"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_path:
        print(json.dumps(measure(args.child_path, args.child_downsample == "true", args.workdir)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        shard_dir = render_shards(workdir, args.images, HOLD_OUT, HOLD_OUT)
        records = [
            run_child(__file__, ["--child-path", path, "--child-downsample", mode, "--workdir", str(shard_dir)])
            for mode in args.modes
            for path in PATHS
        ]
    if args.json:
        print(json.dumps(records, indent=1))
        return
    first = records[0]
    print(machine())
    print(f"Protocols {', '.join(first['protocols'])}, batch {first['batch_size']}")
    headers = ["downsample", "path", "precision", "channels_last", "images", "seconds", "images/s"]
    print_table(headers + ["forward s", "metrics s", "loader s", "peak RSS MiB"], table(records))


if __name__ == "__main__":
    main()
