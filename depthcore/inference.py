"""Inference: the trained-model file, and predicting metres at the input's resolution.

The one place that training (its validation grid), evaluation and `depthcore predict` share:

- `save_model` / `load_model`: the model file (`models/model.pt`) holds the weights, the resolved config they were
  trained with and the number of epochs, under a format tag; loading checks the tag, so a file that is not one of
  ours is refused by name, and rebuilds the network from the saved config alone (no params.yaml, no ImageNet file).
- `Predictor`: rgb (B, 3, H, W) -> depth (B, 1, H, W) in metres: the network's output, read back from its
  training target (`depthcore.loss.to_metres`), then upsampled to the input's size by `upsample`.
- `upsample`: bilinear with pixel centres aligned (`align_corners=False`): output pixel x samples the input at
  (x + 0.5) * h / H - 0.5, so a block of 8x8 pixels maps onto the one output pixel that was computed from it.
  (`align_corners=True` would stretch the corners instead, shifting pixels by up to 3.5 at 1/8 resolution.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from depthcore.config import Config, as_dict
from depthcore.device import Runtime
from depthcore.errors import DepthcoreError
from depthcore.files import atomic_path
from depthcore.loss import to_metres
from depthcore.model import DenseDepth
from depthcore.visualize import depth_grid

MODEL_FORMAT = "depthcore-model-v1"
#: Loss params that say how network outputs read back as metres: a model is only usable with the ones it had.
OUTPUT_PARAMS = ("target", "min_depth", "max_depth")


class ModelFileError(DepthcoreError):
    """A model file is missing, not one of ours, or was trained under other settings than asked."""


def upsample(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, h, w) -> (B, 1, H, W) float32, bilinear on pixel centres (align_corners=False)."""
    return F.interpolate(pred.float(), size=tuple(size), mode="bilinear", align_corners=False)


def save_model(path: str | Path, model: torch.nn.Module, config: Config, epochs: int) -> None:
    """Write the model file atomically: weights, the resolved config and the number of epochs trained."""
    atomic_save({"format": MODEL_FORMAT, "model": model.state_dict(), "config": as_dict(config), "epochs": epochs},
                Path(path))


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save that leaves either the complete new file or the old one; equal objects give equal bytes.

    torch.save names the archive inside the file after the file it is given, here a randomly named temporary file;
    through an open file object it is always "archive", so a rerun writes the same bytes (and DVC the same hash).
    """
    with atomic_path(path) as tmp, tmp.open("wb") as file:
        torch.save(obj, file)


def load_model(path: str | Path, expect: Config | None = None) -> tuple[DenseDepth, dict[str, Any]]:
    """The network saved at `path` (eval mode, CPU) and the config it was trained with.

    With `expect`, the saved model params and the loss params that decode its output (OUTPUT_PARAMS) must equal
    `expect`'s; otherwise `ModelFileError` names each differing key with both values.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(
            f"no model file at {path}: run `dvc repro` to train one, or pass the path of a trained model (--model)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for files that are not its archives
        raise ModelFileError(f"{path} is not a depthcore model file (torch cannot read it: {err})") from None
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ModelFileError(
            f"{path} is not a depthcore model file: expected format {MODEL_FORMAT!r}, got {found!r}; "
            "train one with `dvc repro`"
        )
    saved = state["config"]
    if expect is not None:
        _check_compatible(path, saved, as_dict(expect))
    m = saved["model"]
    # The structure of the saved network; its weights come from the file, not ImageNet.
    model = DenseDepth(m["downsample"], decoder=m["decoder"], imagenet_normalize=m["pretrained"])
    model.load_state_dict(state["model"])
    return model.eval(), saved


def _check_compatible(path: Path, saved: dict[str, Any], expected: dict[str, Any]) -> None:
    """Raise `ModelFileError` when the saved model params or OUTPUT_PARAMS differ from `expected`'s."""
    keys = [("model", key) for key in expected["model"]] + [("loss", key) for key in OUTPUT_PARAMS]
    differ = [
        f"{section}.{key}: trained with {saved[section].get(key)!r}, params.yaml says {expected[section][key]!r}"
        for section, key in keys
        if saved[section].get(key) != expected[section][key]
    ]
    if differ:
        raise ModelFileError(f"{path} does not match params.yaml ({'; '.join(differ)}); run `dvc repro` to retrain")


class Predictor:
    """A trained network on its runtime: rgb (B, 3, H, W) -> depth (B, 1, H, W) float32 metres, on the CPU.

    rgb is uint8 or float in [0, 1], any H and W the network accepts (multiples of 32, or of 128 downsampled, avoid
    rounding inside it); `loss` is the config's loss section (as a dict), which says what the outputs mean.
    """

    def __init__(self, net: torch.nn.Module, runtime: Runtime, loss: dict[str, Any]) -> None:
        self.net, self.runtime = net, runtime
        self.target, self.min_depth, self.max_depth = (loss[key] for key in OUTPUT_PARAMS)

    @torch.no_grad()
    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        self.net.eval()
        with self.runtime.autocast():
            pred = self.net(self.runtime.images(rgb))  # (B, 1, h, w) target space
        metres = to_metres(pred.float(), self.target, self.min_depth, self.max_depth)
        return upsample(metres, rgb.shape[-2:]).cpu()


def prepare(model: torch.nn.Module, runtime: Runtime, compile_model: bool = False) -> torch.nn.Module:
    """Move `model` to the runtime's device and memory format; returns the module to call (compiled or not)."""
    fmt = torch.channels_last if runtime.channels_last else torch.contiguous_format
    model.to(runtime.device, memory_format=fmt)
    return torch.compile(model) if compile_model else model


def load_predictor(path: str | Path, runtime: Runtime, expect: Config | None = None) -> Predictor:
    """`load_model` on `runtime`, as a `Predictor`."""
    model, saved = load_model(path, expect)
    return Predictor(prepare(model, runtime), runtime, saved["loss"])


def prediction_grid(predict: Predictor, dataset: Any, num: int, with_error: bool = False) -> np.ndarray:
    """The first `num` items of `dataset` (dicts of `rgb` (3, H, W) uint8, `depth` (1, H, W) metres) as a picture:
    image | ground truth | prediction (| error) per row, (h, w, 3) uint8 (`depthcore.visualize.depth_grid`)."""
    items = [dataset[i] for i in range(min(num, len(dataset)))]
    rgb = torch.stack([item["rgb"] for item in items])  # (N, 3, H, W) uint8
    pred = predict(rgb)[:, 0].numpy()  # (N, H, W) metres
    gt = torch.stack([item["depth"][0] for item in items]).numpy()  # (N, H, W) metres
    return depth_grid(rgb.permute(0, 2, 3, 1).numpy(), gt, pred, with_error)
