"""What the benchmark scripts share: their configuration and flags, the work folder and the rendered shards, child
processes, the device's clock, peak memory, and how a result is printed (the machine line and tables, or JSON)."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import resource
import subprocess
import sys
import tempfile
import time
import typing
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from depthcore.config import Config, TrainConfig, load_config
from depthcore.device import CPU_BF16_FLAGS, CPUINFO, Runtime, resolve_runtime
from depthcore.shards import write_shards
from depthcore.sources import SOURCES
from depthcore.sources.nyu_mat import MatSamples, NyuMat
from depthcore.sources.synthetic import write_synthetic_densedepth_zip, write_synthetic_nyu
from depthcore.splits import make_splits

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
MIB = 1024  # ru_maxrss is in KiB on Linux
#: The two configurations the speed tables compare: plain fp32, and what params.yaml's `train` section resolves to.
PATHS = ("fp32", "default")
#: The values of `train.device`, for --device.
DEVICES = typing.get_args(typing.get_type_hints(TrainConfig)["device"])


def configure(
    path: str, downsample: bool | None = None, device: str | None = None, decoder: str | None = None, **train
) -> Config:
    """params.yaml with `model.downsample`, `model.decoder`, `train.device` (None: params.yaml's) and other `train`
    changes.

    The fp32 path is fp32, contiguous memory and no compile; the default path is params.yaml's own.
    """
    config = load_config(PARAMS)
    if path == "fp32":
        train = {"precision": "fp32", "channels_last": False, "compile": False} | train
    if device is not None:
        train["device"] = device
    model = config.model if downsample is None else replace(config.model, downsample=downsample)
    model = model if decoder is None else replace(model, decoder=decoder)
    return replace(config, model=model, train=replace(config.train, **train))


def train_runtime(config: Config) -> Runtime:
    """The runtime `depthcore.train.fit` trains on: `train.device` (auto: cuda, then mps, then cpu), precision and
    memory format resolved; on CUDA with cuDNN picking its fastest kernels once, as fit sets it."""
    t = config.train
    runtime = resolve_runtime(t.device, t.precision, t.channels_last)
    if runtime.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return runtime


def add_common_flags(parser: argparse.ArgumentParser, workdir_help: str = "where to write") -> None:
    """The flags every benchmark takes: --device (`train.device`), --json, --save and --workdir."""
    parser.add_argument(
        "--device", choices=DEVICES, default=None, help="train.device (default: params.yaml's; auto: cuda, mps, cpu)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the tables")
    parser.add_argument("--save", type=Path, default=None, help="also write the JSON record to this file")
    parser.add_argument("--workdir", type=Path, default=None, help=f"{workdir_help} (default: a temporary folder)")


def device_args(device: str | None) -> list[str]:
    """--device for a child process: the parent's choice, or nothing (params.yaml's)."""
    return [] if device is None else ["--device", device]


@contextlib.contextmanager
def work_folder(path: Path | None) -> Iterator[Path]:
    """`path`, created if need be and kept afterwards, or a temporary folder removed afterwards."""
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="depthcore-bench-") as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def rendered_shards(
    workdir: Path | None, num_images: int, train_fraction: float, val_fraction: float
) -> Iterator[Path]:
    """Shards of `num_images` rooms rendered from params.yaml's data.seed, split at random with these fractions, in
    `work_folder(workdir)`: the shard folder, for as long as the block runs."""
    config = load_config(PARAMS)
    split = replace(config.data.split, method="random", train_fraction=train_fraction, val_fraction=val_fraction)
    splits = make_splits(num_images, split, config.data.seed)
    provenance = {"source": "synthetic", "split": "random", "seed": config.data.seed}
    with work_folder(workdir) as folder:
        mat = write_synthetic_nyu(folder / "nyu.mat", num_images, config.data.seed)
        with NyuMat(mat) as reader:
            write_shards(MatSamples(reader), splits, folder / "shards", config.data.shard_size, provenance)
        yield folder / "shards"


@contextlib.contextmanager
def rendered_zip_shards(workdir: Path | None, scenes: int, frames: int, test: int, min_train: int) -> Iterator[Path]:
    """Shards of a zip in DenseDepth's layout (JPEG and 8-bit PNG training pairs: what the loader decodes for the
    paper), rendered from params.yaml's data.seed: `scenes` rooms of `frames` frames and `test` test pairs, split as
    the shard stage splits the real zip (whole rooms held out for validation), the training pairs written over and
    over to at least `min_train` images, so that an epoch is long enough to time without rendering more rooms. In
    `work_folder(workdir)`: the shard folder, for as long as the block runs."""
    config = load_config(PARAMS)
    config = replace(config, data=replace(config.data, source="densedepth"))
    with work_folder(workdir) as folder:
        path = write_synthetic_densedepth_zip(folder / "nyu_data.zip", scenes, frames, test, config.data.seed)
        with SOURCES["densedepth"].open(config, path) as (samples, splits, provenance):
            repeat = math.ceil(min_train / len(splits["train"]))
            splits = {**splits, "train": np.tile(splits["train"], repeat)}
            write_shards(samples, splits, folder / "shards", config.data.shard_size, provenance | {"repeat": repeat})
        yield folder / "shards"


def run_child(script: str, args: list[str]) -> dict:
    """Run `script` with `args` in a fresh Python process; return the JSON record it prints last.

    A failing child raises with the end of its stderr, so that its own error message reaches the user.
    """
    done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(script).name} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def synchronize() -> None:
    """Wait for the work queued on the GPU (CUDA or MPS run asynchronously: a clock read before this would miss it);
    nothing on the CPU."""
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    elif torch.backends.mps.is_available():
        torch.mps.synchronize()


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / MIB


def peak_device_mib(device: torch.device) -> float | None:
    """The most GPU memory torch has allocated in this process, in MiB; None off CUDA."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def runtime_fields(path: str, downsample: bool, runtime: Runtime) -> dict:
    """The fields that say which configuration a record measured."""
    return {
        "downsample": downsample,
        "path": path,
        "device": runtime.device.type,
        "precision": runtime.precision,
        "channels_last": runtime.channels_last,
    }


def machine() -> str:
    """One line naming what a table was measured on, and when: this host's speed drifts, so tables carry it."""
    cpu, flags = platform.processor() or platform.machine(), set()
    if CPUINFO.is_file():
        for line in CPUINFO.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                cpu = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    bf16 = " ".join(flag for flag in CPU_BF16_FLAGS if flag in flags) or "no native bf16"
    gpu = f", {torch.cuda.get_device_name()} (CUDA {torch.version.cuda})" if torch.cuda.is_available() else ""
    return (
        f"{cpu} ({bf16}), {torch.get_num_threads()} threads{gpu}, torch {torch.__version__},"
        f" {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


Table = tuple[str, list[str], list[list]]  # title (may be ""), headers, rows


def report(args: argparse.Namespace, record: dict | list, tables: list[Table], notes: list[str] = ()) -> None:
    """Print the machine line, the tables and the `notes` lines after them, or with --json the record alone; with
    --save also write the record to that file."""
    text = json.dumps(record, indent=1)
    if args.save is not None:
        args.save.write_text(text + "\n")
    if args.json:
        print(text)
        return
    print(machine())
    for i, (title, headers, rows) in enumerate(tables):
        if i:
            print()
        if title:
            print(title)
        print_table(headers, rows)
    if notes:
        print("\n" + "\n".join(notes))


def counted(n: int, noun: str) -> str:
    """`n` and `noun`, plural unless n is 1: "1 worker", "2 workers"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def print_table(headers: list[str], rows: list[list]) -> None:
    """A GitHub-markdown table (tab-separated if tabulate is missing)."""
    try:
        from tabulate import tabulate
    except ImportError:
        print("\t".join(headers))
        print("\n".join("\t".join(str(x) for x in row) for row in rows))
    else:
        print(tabulate(rows, headers=headers, tablefmt="github"))
