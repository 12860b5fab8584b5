"""`depthcore export`: a model as an ONNX file, to run where torch is not (onnxruntime, TensorRT, OpenVINO, ...).

    depthcore export MODEL --onnx model.onnx

MODEL is a depthcore model file or the authors' Keras .h5 (`depthcore.inference.load_any_model`). The graph:

    input   rgb    float32 (B, 3, H, W): RGB in [0, 1], 8-bit values / 255. Where the model normalises with
                   ImageNet's mean and std, that is inside the graph.
    output  depth  float32 (B, 1, H/s, W/s): metres in [min_depth, max_depth], at the network's own resolution (s, the
                   output stride, is 8 with the input pooling, 2 without). The network's training target is read back
                   as metres inside the graph (`depthcore.loss.to_metres`). Nothing is upsampled to the input's
                   size: resize bilinearly with pixel centres aligned (`align_corners=False`), as
                   `depthcore.inference.upsample` does for `depthcore predict`.

B, H and W are dynamic (the graph is traced on one image of the 480x640 frame the network was trained on). H and W
that are multiples of 128 with the input pooling, of 32 without, avoid rounding inside the network. The file's
metadata (`metadata_props`, shown by Netron or `onnx.load(path).metadata_props`) says all of this in words and
numbers, with the source model's origin; `depthcore predict --model model.onnx` reads its settings from there
(`depthcore.inference.load_onnx_predictor`).

ONNX opset OPSET, written by torch's TorchScript-based exporter (`dynamo=False`): torch's newer exporter (`dynamo=True`,
which needs the onnxscript package) also exports it with dynamic H and W, but took about 50 s a model here
against about 5 s. Before the file appears under its name, onnxruntime runs it on a seeded random 480x640 image and
its metres must agree with PyTorch's (fp32) within CHECK_TOLERANCE_M.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from depthcore.device import Runtime
from depthcore.errors import DepthcoreError
from depthcore.files import atomic_path
from depthcore.inference import (
    ONNX_DIVISOR_KEY,
    ONNX_FORMAT,
    ONNX_FORMAT_KEY,
    ONNX_INPUT,
    ONNX_OUTPUT,
    ONNX_SPEC_KEY,
    ONNX_SUFFIX,
    Predictor,
    import_extra,
    load_any_model,
    load_onnx_predictor,
)
from depthcore.loss import to_metres
from depthcore.model import ModelSpec, output_stride
from depthcore.nyu import HEIGHT, WIDTH

SUMMARY = "export a model as an ONNX file (metres out, dynamic batch and size) for onnxruntime and other runtimes"
OPSET = 17
#: How far onnxruntime's metres may be from PyTorch's on the check image before the export is refused as broken.
CHECK_TOLERANCE_M = 1e-3
INPUT_DIVISOR = 255  # 8-bit values / 255 = the input's [0, 1]
FP32 = Runtime(torch.device("cpu"), None, channels_last=False)  # what the export is traced and checked on


class MetresNet(nn.Module):
    """The exported computation: rgb (B, 3, H, W) in [0, 1] -> depth (B, 1, H/s, W/s) metres, the network's output
    read back from its training target."""

    def __init__(self, net: nn.Module, spec: ModelSpec) -> None:
        super().__init__()
        self.net, self.spec = net, spec

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return to_metres(self.net(rgb), self.spec.target, self.spec.min_depth, self.spec.max_depth)


def metadata(spec: ModelSpec, origin: str) -> dict[str, str]:
    """The file's `metadata_props`: what `load_onnx_predictor` reads (format, spec, input divisor) and, in words, what
    a user of the graph needs."""
    stride = output_stride(spec.downsample)
    return {
        ONNX_FORMAT_KEY: ONNX_FORMAT,
        ONNX_SPEC_KEY: json.dumps(dataclasses.asdict(spec)),
        ONNX_DIVISOR_KEY: str(INPUT_DIVISOR),
        "input": f"{ONNX_INPUT}: float32 (B, 3, H, W), RGB in [0, 1] (8-bit values / {INPUT_DIVISOR}); B, H, W "
                 f"dynamic; trained on {HEIGHT}x{WIDTH}",
        "input_normalization": "ImageNet mean and std, inside the graph" if spec.imagenet_normalize else "none",
        "output": f"{ONNX_OUTPUT}: float32 (B, 1, H/{stride}, W/{stride}), metres",
        "output_stride": str(stride),
        "output_size_for_480x640": f"{HEIGHT // stride}x{WIDTH // stride}",
        "min_depth": str(spec.min_depth),
        "max_depth": str(spec.max_depth),
        "target": f"{spec.target} (the network's training target), read back to metres inside the graph",
        "upsampling": f"none: the output is 1/{stride} of the input's size; resize it bilinearly with pixel centres "
                      "aligned (align_corners=False, half-pixel) to the input's size, as depthcore predict does",
        "origin": origin,
    }


def export_onnx(model: nn.Module, spec: ModelSpec, origin: str, out: Path) -> float:
    """Write `model` (eval mode, CPU, fp32) to `out` as ONNX with its `metadata`, atomically, after checking the file
    in onnxruntime against PyTorch; returns the largest difference on the check image, in metres."""
    onnx = import_extra("onnx", "depthcore export")
    import_extra("onnxruntime", "depthcore export")  # for the check, before the work
    graph = io.BytesIO()
    with warnings.catch_warnings():
        # DenseDepth.forward checks x.dim() and x.shape[1]: constants of the traced graph, as they are of any input.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(MetresNet(model, spec).eval(), (torch.zeros(1, 3, HEIGHT, WIDTH),), graph, dynamo=False,
                          opset_version=OPSET, input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                          dynamic_axes={ONNX_INPUT: {0: "batch", 2: "height", 3: "width"}, ONNX_OUTPUT: {0: "batch"}})
    proto = onnx.load_from_string(graph.getvalue())
    onnx.helper.set_model_props(proto, metadata(spec, origin))
    proto.producer_name, proto.doc_string = "depthcore", f"DenseDepth monocular depth in metres; {origin}"
    onnx.checker.check_model(proto)
    with atomic_path(out) as tmp:
        onnx.save(proto, tmp)
        error = check_export(model, spec, tmp)
        if error > CHECK_TOLERANCE_M:
            raise RuntimeError(f"the exported graph gives other depths than PyTorch: {error:.3g} m apart on the "
                               f"check image, expected at most {CHECK_TOLERANCE_M} m; {out} not written")
    return error


def check_export(model: nn.Module, spec: ModelSpec, path: Path) -> float:
    """max |onnxruntime - PyTorch fp32| in metres, both through their predictors, on a seeded random 480x640 image."""
    rgb = torch.randint(0, 256, (1, 3, HEIGHT, WIDTH), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    exported = load_onnx_predictor(path)(rgb)
    return (exported - Predictor(model, FP32, spec)(rgb)).abs().max().item()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL",
                        help="a depthcore model file (e.g. models/model.pt) or the authors' Keras .h5")
    parser.add_argument("--onnx", type=Path, required=True, metavar="OUT.onnx",
                        help="the ONNX file to write (ends in .onnx, as `depthcore predict --model` tells it by)")


def run(args: argparse.Namespace, runtime: Runtime | None) -> None:
    """`depthcore export` with parsed arguments (`depthcore.cli`)."""
    if args.onnx.suffix.lower() != ONNX_SUFFIX:
        raise DepthcoreError(f"expected --onnx to end in {ONNX_SUFFIX}, got {args.onnx}")
    model, spec, origin = load_any_model(args.model)
    try:
        error = export_onnx(model, spec, origin, args.onnx)
    except OSError as err:
        raise DepthcoreError(f"cannot write {args.onnx} ({err.strerror or err}): choose another --onnx") from None
    stride = output_stride(spec.downsample)
    print(f"wrote {args.onnx} ({args.onnx.stat().st_size / 2**20:.1f} MiB, opset {OPSET}): metres at 1/{stride} of "
          f"the input's size; onnxruntime within {error:.1e} m of PyTorch on a test image. Use it with "
          f"`depthcore predict --model {args.onnx}`")
