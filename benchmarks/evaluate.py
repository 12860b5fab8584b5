"""Speed of evaluation: images/s through every protocol with flip averaging, and where the time goes.

A freshly rendered synthetic set is sharded with most images in the test split; an untrained model (weights from
params.yaml's seed: speed does not depend on them) goes through `depthcore.evaluate.run_protocols` with params.yaml's
protocols (all three), eval batch size and flip averaging, as the evaluate stage runs it. "fp32" is plain fp32 with
contiguous memory; "default" is what params.yaml's `train` section resolves to (the evaluate stage's runtime), on
`train.device` (auto, or --device). Each configuration runs in its own Python process (peak RSS is its own) after
one untimed forward pass that sets up the kernels. "forward" is the time inside `depthcore.inference.Predictor`
(the network on the image and on its mirror image, the conversion to metres, the upsampling to the input's size
and the copy back to the CPU); "loader" is one plain pass over the test split's loader, timed before; "metrics" is
the rest: every metric of each image under each protocol.

    python benchmarks/evaluate.py --images 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import (  # beside this script
    PATHS,
    add_common_flags,
    configure,
    device_args,
    peak_rss_mib,
    rendered_shards,
    report,
    run_child,
    runtime_fields,
)

from depthcore.data import ShardDataset, make_loader
from depthcore.device import resolve_runtime
from depthcore.evaluate import run_protocols, usable_protocols
from depthcore.inference import Predictor, prepare
from depthcore.train import build_model

HOLD_OUT = 0.1  # train and val fractions of the rendered set; the rest (most of it) is the test split


def measure(path: str, downsample: bool, shard_dir: Path, device: str | None) -> dict:
    """Evaluate an untrained model of one path on the test split, timing forward passes, loader and the whole."""
    config = configure(path, downsample, device)  # the fp32 path: fp32 and contiguous memory
    c, e = config.train, config.eval
    runtime = resolve_runtime(c.device, c.precision, c.channels_last)  # as depthcore.evaluate.evaluate_model
    model, spec = build_model(config)
    predictor = Predictor(prepare(model, runtime), runtime, spec)
    test = ShardDataset(shard_dir, "test")
    protocols, _ = usable_protocols(e.protocols, test.has_raw_depth)
    forward = []

    def predict(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        t0 = time.perf_counter()
        depth = predictor(batch["rgb"])  # (B, 1, H, W) metres, on the CPU
        forward.append(time.perf_counter() - t0)
        return depth

    loader = make_loader(test, e.batch_size, shuffle=False, seed=0)  # as run_protocols makes it
    predict(next(iter(loader)))  # untimed: oneDNN (cuDNN) sets up its kernels on the first batch
    forward.clear()
    t0 = time.perf_counter()
    for _ in loader:
        pass
    loader_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_protocols(predict, test, protocols, e)
    total_s = time.perf_counter() - t0
    return runtime_fields(path, downsample, runtime) | {
        "protocols": protocols,
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
                r["device"],
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
    add_common_flags(parser, "where to render")
    parser.add_argument("--child-path", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--child-downsample", choices=["true", "false"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_path:
        print(json.dumps(measure(args.child_path, args.child_downsample == "true", args.workdir, args.device)))
        return
    with rendered_shards(args.workdir, args.images, HOLD_OUT, HOLD_OUT) as shard_dir:
        child = ["--workdir", str(shard_dir), *device_args(args.device)]
        records = [
            run_child(__file__, ["--child-path", path, "--child-downsample", mode, *child])
            for mode in args.modes
            for path in PATHS
        ]
    first = records[0]
    title = f"Protocols {', '.join(first['protocols'])}, batch {first['batch_size']}"
    headers = ["downsample", "path", "device", "precision", "channels_last", "images", "seconds", "images/s"]
    report(args, records, [(title, headers + ["forward s", "metrics s", "loader s", "peak RSS MiB"], table(records))])


if __name__ == "__main__":
    main()
