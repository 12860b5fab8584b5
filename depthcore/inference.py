"""Inference: the model file, and predicting metres at the input's resolution.

The one place that training (its validation grid), evaluation, `depthcore predict` and the importer share:

- The model file (`models/model.pt`, or any file `depthcore import-keras` writes) holds the weights and the
  `ModelSpec` that says how to use them: architecture (input pooling, decoder width, decoder upsampling, BatchNorm
  epsilon), input scaling (x / 255, then ImageNet's mean and std or not), output resolution (1/8 or 1/2 of the input,
  from the input pooling) and target (DepthNorm or metres, with its depth range). It also holds the resolved config
  the weights were trained with (None for imported weights), the number of epochs and where the weights came from.
  `load_model` rebuilds the network from the spec alone (no params.yaml, no ImageNet file); files of the first
  format (`depthcore-model-v1`, a config and no spec) still load, their spec read from their config.
- `load_any_model`: a model file, or the authors' Keras `.h5` converted on the fly (`depthcore.keras_import`).
- `Predictor`: rgb (B, 3, H, W) -> depth (B, 1, H, W) in metres: the network's output, read back from its
  training target (`depthcore.loss.to_metres`), then upsampled to the input's size by `upsample`.
- An exported model (`depthcore export`, a `.onnx` file) loads as an `OnnxPredictor` with `Predictor`'s contract: the
  forward pass runs in onnxruntime (an optional package, the `onnx` extra), its settings read from the file's
  metadata (the ONNX_* keys).
- `upsample`: bilinear with pixel centres aligned (`align_corners=False`): output pixel x samples the input at
  (x + 0.5) * h / H - 0.5, so a block of 8x8 pixels maps onto the one output pixel that was computed from it.
  (`align_corners=True` would stretch the corners instead, shifting pixels by up to 3.5 at 1/8 resolution.)
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pickle
import struct
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F

from depthcore.checkpoint import save_atomic
from depthcore.config import Config, as_dict
from depthcore.device import Runtime
from depthcore.errors import DepthcoreError
from depthcore.loss import to_metres
from depthcore.model import TORCHVISION_BN_EPS, DenseDepth, ModelSpec

MODEL_FORMAT = "depthcore-model-v2"
V1_FORMAT = "depthcore-model-v1"  # weights, config and epochs; no spec
KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")
ONNX_SUFFIX = ".onnx"
ONNX_FORMAT = "depthcore-onnx-v1"
#: The exported graph's input, (B, 3, H, W) float32 RGB in [0, 1], and output, (B, 1, H/s, W/s) float32 metres.
ONNX_INPUT, ONNX_OUTPUT = "rgb", "depth"
#: The metadata (`metadata_props`) keys an `OnnxPredictor` reads: the format, the `ModelSpec` as JSON, and what 8-bit
#: values are divided by to give the input's [0, 1]. `depthcore.export` writes them with the others a user reads.
ONNX_FORMAT_KEY, ONNX_SPEC_KEY, ONNX_DIVISOR_KEY = "depthcore_format", "depthcore_spec", "input_divisor"
ONNX_EXTRA = "pip install 'depthcore[onnx]'"  # the optional dependencies of exported models


class ModelFileError(DepthcoreError):
    """A model file is missing, not one of ours, or was trained under other settings than asked."""


def upsample(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, h, w) -> (B, 1, H, W) float32, bilinear on pixel centres (align_corners=False)."""
    return F.interpolate(pred.float(), size=tuple(size), mode="bilinear", align_corners=False)


def save_model(
    path: str | Path, model: torch.nn.Module, spec: ModelSpec, *, config: Config | None, epochs: int, origin: str
) -> None:
    """Write the model file atomically: weights, their spec, the config they were trained with (None: imported),
    the epochs trained and a one-line `origin` (e.g. "trained by dvc repro", "imported from nyu.h5")."""
    record = {"format": MODEL_FORMAT, "model": model.state_dict(), "spec": dataclasses.asdict(spec),
              "config": None if config is None else as_dict(config), "epochs": epochs, "origin": origin}
    save_atomic(record, Path(path))


def load_model(path: str | Path, expect: Config | None = None) -> tuple[DenseDepth, ModelSpec, dict[str, Any]]:
    """The network saved at `path` (eval mode, CPU), its spec and the whole record (config, epochs, origin).

    With `expect`, what the params say of the model and its output (`ModelSpec.differences`) must match the spec;
    otherwise `ModelFileError` names each differing key with both values.
    """
    path = Path(path)
    record = _read_record(path)
    spec = _spec_of(path, record)
    _check_expected(path, spec, expect)
    model = DenseDepth.from_spec(spec)
    try:
        model.load_state_dict(record["model"])
    except (RuntimeError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0]
        raise ModelFileError(f"{path}: its weights do not fit the network its spec describes ({first})") from None
    return model.eval(), spec, record


def load_any_model(path: str | Path) -> tuple[DenseDepth, ModelSpec, str]:
    """A depthcore model file, or the authors' Keras file (by its suffix, KERAS_SUFFIXES) converted in memory:
    (network in eval mode, its spec, a one-line origin)."""
    path = Path(path)
    if path.suffix.lower() in KERAS_SUFFIXES:
        from depthcore.keras_import import convert_keras  # h5py reads it; only Keras files need this module

        model, spec, info = convert_keras(path)
        return model, spec, info.origin
    model, spec, record = load_model(path)
    return model, spec, record.get("origin", f"trained, {record['epochs']} epochs")


def _check_expected(path: Path, spec: ModelSpec, expect: Config | None) -> None:
    """`ModelFileError` naming each key of `spec` that params (`expect`, None: no check) say otherwise of."""
    differ = [] if expect is None else spec.differences(expect)
    if differ:
        raise ModelFileError(f"{path} does not match params.yaml ({'; '.join(differ)}); run `dvc repro`")


def _read_record(path: Path) -> dict[str, Any]:
    """The dict in the model file at `path`, refusing in one line a file that is missing or not ours."""
    if not path.is_file():
        raise ModelFileError(
            f"no model file at {path}: run `dvc repro` to train one, or pass the path of a trained model (--model)"
        )
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path} is empty (0 bytes), not a depthcore model file: train or copy it again")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, OSError, IndexError,
            KeyError, struct.error):  # what torch raises on bytes that are not its archive
        raise ModelFileError(
            f"{path} is not a depthcore model file (not a readable torch archive): expected a file written by "
            "`dvc repro` or `depthcore import-keras`; a truncated copy is copied or trained again"
        ) from None
    found = record.get("format") if isinstance(record, dict) else type(record).__name__
    if found not in (MODEL_FORMAT, V1_FORMAT):
        raise ModelFileError(
            f"{path} is not a depthcore model file: expected format {MODEL_FORMAT!r}, got {found!r}; "
            "train one with `dvc repro`, or convert the authors' Keras file with `depthcore import-keras`"
        )
    return record


def _spec_of(path: Path, record: dict[str, Any]) -> ModelSpec:
    """The spec of a model file's record; for the first format, read from the config it was trained with (its
    first files, from before the half decoder existed, have the full decoder)."""
    if record["format"] == MODEL_FORMAT:
        return ModelSpec(**record["spec"])
    m, loss = record["config"]["model"], record["config"]["loss"]
    return ModelSpec(downsample=m["downsample"], decoder=m.get("decoder", "full"), upsampling="corners",
                     imagenet_normalize=m["pretrained"], bn_eps=TORCHVISION_BN_EPS, target=loss["target"],
                     min_depth=loss["min_depth"], max_depth=loss["max_depth"])


class Predictor:
    """A network on its runtime: rgb (B, 3, H, W) -> depth (B, 1, H, W) float32 metres, on the CPU.

    rgb is uint8 or float in [0, 1], any H and W the network accepts (multiples of 32, or of 128 downsampled, avoid
    rounding inside it); `spec` says what the outputs mean.
    """

    def __init__(self, net: torch.nn.Module, runtime: Runtime, spec: ModelSpec) -> None:
        self.net, self.runtime, self.spec = net, runtime, spec

    @torch.no_grad()
    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        self.net.eval()
        with self.runtime.autocast():
            pred = self.net(self.runtime.images(rgb))  # (B, 1, h, w) target space
        metres = to_metres(pred.float(), self.spec.target, self.spec.min_depth, self.spec.max_depth)
        return upsample(metres, rgb.shape[-2:]).cpu()


def prepare(model: torch.nn.Module, runtime: Runtime, compile_model: bool = False) -> torch.nn.Module:
    """Move `model` to the runtime's device and memory format; returns the module to call (compiled or not)."""
    fmt = torch.channels_last if runtime.channels_last else torch.contiguous_format
    model.to(runtime.device, memory_format=fmt)
    return torch.compile(model) if compile_model else model


class OnnxPredictor:
    """An exported model in onnxruntime on the CPU, with `Predictor`'s contract: rgb (B, 3, H, W) uint8, or float in
    [0, 1] -> depth (B, 1, H, W) float32 metres on the CPU. The graph gives metres at its output stride; `upsample`
    brings them to the input's size, as `Predictor` does. The forward pass needs no torch.

    `runtime` says where it runs (CPU, fp32: the graph's own precision), whatever runtime it was loaded for.
    """

    runtime = Runtime(torch.device("cpu"), None, channels_last=False, note="onnxruntime, CPUExecutionProvider")

    def __init__(self, session: Any, spec: ModelSpec, input_divisor: float) -> None:
        self.session, self.spec, self.input_divisor = session, spec, input_divisor

    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        x = rgb.float() / self.input_divisor if rgb.dtype == torch.uint8 else rgb.float()  # (B, 3, H, W) in [0, 1]
        (metres,) = self.session.run([ONNX_OUTPUT], {ONNX_INPUT: x.cpu().contiguous().numpy()})  # (B, 1, h, w)
        return upsample(torch.from_numpy(metres), rgb.shape[-2:])


def import_extra(module: str, needed_for: str) -> ModuleType:
    """The optional package `module` (the `onnx` extra); a one-line `DepthcoreError` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DepthcoreError(f"{needed_for} needs the {module} package, not installed here: {ONNX_EXTRA}") from None


def load_onnx_predictor(path: str | Path, expect: Config | None = None, threads: int = 0) -> OnnxPredictor:
    """The model `depthcore export` wrote at `path`, in onnxruntime (CPU) with `threads` threads (0: onnxruntime's
    default, one per physical core), as an `OnnxPredictor`; its spec and input scaling come from the file's metadata.
    With `expect`, the spec must match params as in `load_model`."""
    path = Path(path)
    onnxruntime = import_extra("onnxruntime", f"an ONNX model ({path})")
    if not path.is_file():
        raise ModelFileError(f"no ONNX model at {path}: write one with `depthcore export MODEL --onnx {path}`")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's errors (InvalidProtobuf, Fail, ...) derive from Exception alone
        first = str(err).strip().partition("\n")[0]
        raise ModelFileError(f"{path} is not an ONNX model onnxruntime can load ({first})") from None
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get(ONNX_FORMAT_KEY) != ONNX_FORMAT:
        raise ModelFileError(
            f"{path} is not a model written by `depthcore export`: expected metadata {ONNX_FORMAT_KEY}="
            f"{ONNX_FORMAT!r}, got {meta.get(ONNX_FORMAT_KEY)!r}; export a depthcore model file again"
        )
    spec = ModelSpec(**json.loads(meta[ONNX_SPEC_KEY]))
    _check_expected(path, spec, expect)
    return OnnxPredictor(session, spec, float(meta[ONNX_DIVISOR_KEY]))


def load_predictor(
    path: str | Path, runtime: Runtime, expect: Config | None = None
) -> Predictor | OnnxPredictor:
    """The model at `path` on `runtime`: a `.onnx` file as an `OnnxPredictor` (onnxruntime, CPU, whatever `runtime`
    says), any other as a `Predictor` (`load_model`, or `load_any_model` without `expect`)."""
    if Path(path).suffix.lower() == ONNX_SUFFIX:
        return load_onnx_predictor(path, expect)
    if expect is None:
        model, spec, _ = load_any_model(path)
    else:
        model, spec, _ = load_model(path, expect)
    return Predictor(prepare(model, runtime), runtime, spec)
