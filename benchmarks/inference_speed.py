"""Speed of prediction on the CPU: onnxruntime against PyTorch, for params.yaml's model shape.

The network of params.yaml's `model` section (random weights: speed does not depend on them) goes through three
predictors with one contract, 8-bit RGB (B, 3, 480, 640) in, metres at 480x640 out (the conversion to [0, 1], the
network, the read-back to metres and the upsampling to the input's size):

    onnxruntime  the model exported by `depthcore export` (`depthcore.export.export_onnx`), in onnxruntime's CPU
                 provider with one thread per core (`depthcore.inference.load_onnx_predictor`)
    fp32         PyTorch eager, fp32, contiguous memory (`depthcore.inference.Predictor`)
    default      PyTorch eager as `depthcore predict --device cpu` runs it: `resolve_runtime("cpu", "auto", True)`,
                 bf16 autocast and channels_last on CPUs with native bf16, else fp32

all in this process, one after the other, each after WARMUP untimed calls. Latency is the median time of one call on one
image; images/s is the images of --rounds calls over their total time, at batch 1 and at batch 8. "x 30 fps" is batch
1's images/s over 30 (video's frame rate). The load average before and after is printed: other work on the machine
slows every path.

    python benchmarks/inference_speed.py [--rounds 10] [--json]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import PARAMS, report, work_folder  # beside this script

from depthcore.config import load_config
from depthcore.device import resolve_runtime
from depthcore.export import FP32, export_onnx
from depthcore.inference import Predictor, load_onnx_predictor, prepare
from depthcore.model import DenseDepth, ModelSpec
from depthcore.nyu import HEIGHT, WIDTH

BATCHES = (1, 8)
WARMUP = 2
REAL_TIME_FPS = 30


def predictors(workdir: Path) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """The three paths (module docstring) for params.yaml's model, its ONNX file written into `workdir`."""
    torch.manual_seed(0)
    spec = ModelSpec.from_config(load_config(PARAMS))
    model = DenseDepth.from_spec(spec).eval()
    export_onnx(model, spec, "random weights, for timing", workdir / "model.onnx")
    default = resolve_runtime("cpu", "auto", True)
    return {
        "onnxruntime": load_onnx_predictor(workdir / "model.onnx", threads=os.cpu_count() or 1),
        "fp32": Predictor(model, FP32, spec),
        # prepare() moves the weights to channels_last in place: the default path gets its own copy
        f"default ({default.precision}, channels_last)": Predictor(prepare(copy.deepcopy(model), default), default,
                                                                   spec),
    }


def seconds_per_call(predict: Callable[[torch.Tensor], torch.Tensor], batch: int, rounds: int) -> list[float]:
    """The wall time of each of `rounds` calls on a random (batch, 3, 480, 640) uint8 batch, after WARMUP calls."""
    seeded = torch.Generator().manual_seed(0)
    rgb = torch.randint(0, 256, (batch, 3, HEIGHT, WIDTH), dtype=torch.uint8, generator=seeded)
    for _ in range(WARMUP):
        predict(rgb)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        predict(rgb)
        times.append(time.perf_counter() - start)
    return times


def measure(name: str, predict: Callable[[torch.Tensor], torch.Tensor], rounds: int) -> dict:
    """Latency at batch 1 and images/s at each of BATCHES for one path."""
    record: dict = {"path": name}
    for batch in BATCHES:
        times = seconds_per_call(predict, batch, rounds)
        record[f"img_s_batch{batch}"] = batch * len(times) / sum(times)
        if batch == 1:
            record["latency_ms"] = 1000 * statistics.median(times)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="timed calls at each batch size")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--save", type=Path, default=None, help="also write the JSON record to this file")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the ONNX file (default: temporary)")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with work_folder(args.workdir) as workdir:
        records = [measure(name, predict, args.rounds) for name, predict in predictors(workdir).items()]
    load_after = os.getloadavg()[0]
    rows = [[r["path"], f"{r['latency_ms']:.1f}", *(f"{r[f'img_s_batch{b}']:.2f}" for b in BATCHES),
             f"{r['img_s_batch1'] / REAL_TIME_FPS:.2f}x"] for r in records]
    headers = ["path", "latency ms (1 image)", *(f"images/s, batch {b}" for b in BATCHES), f"x {REAL_TIME_FPS} fps"]
    title = f"params.yaml's model, {HEIGHT}x{WIDTH} uint8 in, metres at {HEIGHT}x{WIDTH} out; {args.rounds} rounds"
    notes = [f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after, on {os.cpu_count()} cores"]
    report(args, {"records": records, "load_before": load_before, "load_after": load_after}, [(title, headers, rows)],
           notes)


if __name__ == "__main__":
    main()
