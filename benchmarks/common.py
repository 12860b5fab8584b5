"""What the benchmark scripts share: child processes, peak memory, the rendered set, the runtime's fields, tables."""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from depthcore.config import load_config
from depthcore.device import Runtime
from depthcore.nyu import NyuMat
from depthcore.shards import write_shards
from depthcore.splits import make_splits
from depthcore.synthetic import write_synthetic_nyu

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
MIB = 1024  # ru_maxrss is in KiB on Linux


def run_child(script: str, args: list[str]) -> dict:
    """Run `script` with `args` in a fresh Python process; return the JSON record it prints last.

    A failing child raises with the end of its stderr, so that its own error message reaches the user.
    """
    done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(script).name} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / MIB


def runtime_fields(path: str, downsample: bool, runtime: Runtime) -> dict:
    """The fields that say which configuration a record measured."""
    return {
        "downsample": downsample,
        "path": path,
        "device": runtime.device.type,
        "precision": runtime.precision,
        "channels_last": runtime.channels_last,
    }


def render_shards(workdir: Path, num_images: int, train_fraction: float, val_fraction: float) -> Path:
    """Render `num_images` rooms from params.yaml's seed and shard them with a random split of these fractions."""
    config = load_config(PARAMS)
    mat = write_synthetic_nyu(workdir / "nyu.mat", num_images, config.seed)
    splits = make_splits(num_images, "random", config.seed, train_fraction, val_fraction)
    with NyuMat(mat) as reader:
        write_shards(reader, splits, workdir / "shards", config.data.shard_size, {"source": "synthetic"})
    return workdir / "shards"


def machine() -> str:
    """One line naming what a table was measured on, and when: this host's speed drifts, so tables carry it."""
    cpu, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                cpu = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    bf16 = " ".join(f for f in ("avx512_bf16", "amx_bf16") if f in flags) or "no native bf16"
    return (
        f"{cpu} ({bf16}), {torch.get_num_threads()} threads, torch {torch.__version__},"
        f" {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def print_table(headers: list[str], rows: list[list]) -> None:
    """A GitHub-markdown table (tab-separated if tabulate is missing)."""
    try:
        from tabulate import tabulate
    except ImportError:
        print("\t".join(headers))
        print("\n".join("\t".join(str(x) for x in row) for row in rows))
    else:
        print(tabulate(rows, headers=headers, tablefmt="github"))
