"""The `depthcore` command (also `python -m depthcore`):

    depthcore predict IMAGE_OR_DIR... [--model models/model.pt] [--out predictions/] [options]
    depthcore import-keras NYU_H5 [--out init/released.pt] [--upsampling corners]
    depthcore evaluate --rgbd DIR [--model models/model.pt] [--out rgbd_eval.json] [--min-depth 0.1] [--max-depth 10]
    depthcore export MODEL --onnx model.onnx

Every subcommand shares what this module gives it: the argument parser, --model, --device and --precision where it
runs a network (`depthcore.device`), and the rule for errors: a `DepthcoreError` (the user's to fix: a bad file,
a bad argument) is one line on stderr and exit status 2 (`depthcore.errors.run_main`); anything else is a bug and
keeps its traceback. Each long step shows a progress bar on stderr.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from depthcore import export, predict, rgbd
from depthcore.device import PRECISIONS, Runtime, resolve_runtime
from depthcore.errors import DepthcoreError, run_main
from depthcore.inference import save_model
from depthcore.model import UPSAMPLING
from depthcore.paths import INIT_DIR

DEFAULT_MODEL = Path("models/model.pt")
DEFAULT_RELEASED = INIT_DIR / "released.pt"  # where model.init may name it
DEVICES = ("auto", "cpu", "cuda", "mps")
CHANNELS_LAST = True  # the memory format train.channels_last defaults to


@dataclass(frozen=True)
class Command:
    """One subcommand: its one-line summary, its own arguments, and what it runs (with a runtime when it runs a
    network, else None)."""

    summary: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Runtime | None], None]
    runs_a_network: bool


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("keras_file", type=Path, metavar="NYU_H5",
                        help="the authors' Keras model file (nyu.h5: Keras 2.2.4 / TensorFlow 1.13; Keras 3 files too)")
    parser.add_argument("--out", type=Path, default=DEFAULT_RELEASED,
                        help=f"the depthcore model file to write (default: {DEFAULT_RELEASED})")
    parser.add_argument("--upsampling", choices=UPSAMPLING, default="corners",
                        help="the decoder's bilinear upsampling the weights were trained with: corners "
                             "(align_corners=True, DenseDepth's released nyu.h5) or half_pixel (Keras 3 / TF2 resize)")


def run_import(args: argparse.Namespace, runtime: Runtime | None) -> None:
    """Convert the Keras file and write it as a depthcore model file; nothing is written unless it all converts."""
    from depthcore.keras_import import convert_keras  # h5py alone reads the file

    model, spec, info = convert_keras(args.keras_file, upsampling=args.upsampling)
    try:
        save_model(args.out, model, spec, config=None, epochs=0, origin=info.origin)
    except OSError as err:
        raise DepthcoreError(f"cannot write {args.out} ({err.strerror or err}): choose another --out") from None
    print(f"wrote {args.out}: {info.origin}; use it with `depthcore predict --model {args.out}` or model.init")


COMMANDS = {
    "predict": Command(predict.SUMMARY, predict.add_arguments, predict.run, runs_a_network=True),
    "import-keras": Command("convert the authors' Keras model (nyu.h5) into a depthcore model file",
                            add_import_arguments, run_import, runs_a_network=False),
    "evaluate": Command(rgbd.SUMMARY, rgbd.add_arguments, rgbd.run, runs_a_network=True),
    "export": Command(export.SUMMARY, export.add_arguments, export.run, runs_a_network=False),
}


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --device and --precision, for the subcommands that run a network."""
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help=f"a depthcore model file (default: {DEFAULT_MODEL}, written by `dvc repro`), the "
                             "authors' Keras .h5, or a .onnx from `depthcore export`")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="auto: cuda, then mps, then cpu")
    parser.add_argument("--precision", choices=("auto", *PRECISIONS), default="auto",
                        help="auto: bf16 where the hardware has it, fp16 on older CUDA, else fp32")


def runtime_from(args: argparse.Namespace) -> Runtime:
    """The runtime --device and --precision ask for; a device this machine lacks is refused in one line."""
    try:
        return resolve_runtime(args.device, args.precision, CHANNELS_LAST)
    except RuntimeError:
        raise DepthcoreError(f"--device {args.device}: no such device here; use --device auto or cpu") from None


def parser() -> argparse.ArgumentParser:
    """The `depthcore` argument parser, one subparser per COMMANDS entry."""
    summary = "DenseDepth monocular depth: predict, import, evaluate, export"
    top = argparse.ArgumentParser(prog="depthcore", description=summary)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.summary, description=command.summary)
        command.add_arguments(sub)
        if command.runs_a_network:
            add_runtime_arguments(sub)
    return top


def main(argv: Sequence[str] | None = None) -> None:
    """The `depthcore` console script (pyproject.toml) and `python -m depthcore`."""
    args = parser().parse_args(argv)
    command = COMMANDS[args.command]
    run_main(lambda: command.run(args, runtime_from(args) if command.runs_a_network else None))
