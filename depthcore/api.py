"""The Python API: a model as one object that turns an image into a depth map in metres.

    from depthcore import load_model

    model = load_model("models/model.pt")   # a depthcore model file, an exported .onnx or the authors' nyu.h5
    depth = model.predict("photo.jpg")      # (H, W) float32 metres, at the image's own size

`predict` takes a path, a Pillow image or an (H, W, 3) uint8 RGB array, and goes the way `depthcore predict` goes:
the file read by `depthcore.predict.read_rgb` (EXIF orientation applied, 16-bit greyscale scaled onto 8 bits), the
image letterboxed into the 480x640 frame and back (`depthcore.frame.predict_images`), the model loaded by
`depthcore.inference.load_predictor` on the device and precision asked for (auto: as the command chooses). A Pillow
image is read as its file would be (`depthcore.predict.upright_rgb`: EXIF orientation, 16-bit greyscale).
hubconf.py's `densedepth` entry (`torch.hub.load`) returns the same object.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from depthcore.checks import check_choice
from depthcore.cli import CHANNELS_LAST, DEVICES
from depthcore.device import PRECISIONS, resolve_runtime
from depthcore.errors import DepthcoreError
from depthcore.frame import predict_images
from depthcore.inference import OnnxPredictor, Predictor, load_predictor
from depthcore.model import ModelSpec
from depthcore.predict import read_rgb, upright_rgb

ImageLike = str | Path | Image.Image | np.ndarray


class DepthModel:
    """A loaded model: `predict(image)` -> (H, W) float32 metres. `spec` says what the network is (input pooling,
    decoder, training target and depth range); `predictor` is what `depthcore predict` would run."""

    def __init__(self, predictor: Predictor | OnnxPredictor, path: Path) -> None:
        self.predictor, self.path = predictor, path

    @property
    def spec(self) -> ModelSpec:
        return self.predictor.spec

    def predict(self, image: ImageLike) -> np.ndarray:
        """image (a path, a Pillow image or (H, W, 3) uint8 RGB) -> depth (H, W) float32 metres, the image's size."""
        (depth,) = predict_images(self.predictor, [_rgb(image)])
        return depth

    def __repr__(self) -> str:
        runtime = self.predictor.runtime
        return f"DepthModel({str(self.path)!r} on {runtime})"


def load_model(path: str | Path, *, device: str = "auto", precision: str = "auto") -> DepthModel:
    """The model at `path` (a depthcore model file, a `.onnx` from `depthcore export`, or the authors' Keras .h5) on
    `device` (auto: cuda, then mps, then cpu) in `precision` (auto: bf16 where the hardware has it, fp16 on older
    CUDA, else fp32). An exported .onnx runs in onnxruntime on the CPU, whatever they say."""
    check_choice("device", device, DEVICES)
    check_choice("precision", precision, ("auto", *PRECISIONS))
    try:
        runtime = resolve_runtime(device, precision, CHANNELS_LAST)
    except RuntimeError:
        raise DepthcoreError(f"device={device!r}: no such device here; use device='auto' or 'cpu'") from None
    return DepthModel(load_predictor(path, runtime), Path(path))


def _rgb(image: ImageLike) -> np.ndarray:
    """The (H, W, 3) uint8 RGB array of a path, a Pillow image or an array (which `predict_images` checks)."""
    if isinstance(image, (str, Path)):
        return read_rgb(Path(image))
    if isinstance(image, Image.Image):
        return np.asarray(upright_rgb(image))  # as `depthcore predict` reads a file: EXIF orientation, 16-bit grey
    if isinstance(image, np.ndarray):
        return image
    raise TypeError(f"expected a path, a Pillow image or an (H, W, 3) uint8 array, got {type(image).__name__}")
