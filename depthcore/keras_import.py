"""Import the DenseDepth authors' released Keras model (`nyu.h5`, ialhashim/DenseDepth) into `DenseDepth`.

The file is read with h5py alone (no Keras, no TensorFlow): the `model_weights` group of a model saved by Keras in HDF5
(or the root of a weights-only file) lists its layers in the `layer_names` attribute and each layer's arrays in its
`weight_names` attribute. Layers are matched BY NAME, never by order, in either naming:

- Keras 2 ("keras2"; Keras 2.2.4 wrote nyu.h5): the DenseNet stem is `conv1/conv`, `conv1/bn`, `conv1/relu`, and
  weights carry the TensorFlow suffix, `conv1/conv/kernel:0`;
- Keras 3 ("keras3"), which allows no slash in a name: `conv1_conv`, weights `conv1_conv/kernel`.

A weight is known by the last part of its name without `:0` (`kernel`, `bias`, `gamma`, `beta`, `moving_mean`,
`moving_variance`), so a prefix that TensorFlow made unique (`conv2_1/kernel:0`) does not matter. Keras layer
(Keras 3 spelling) -> module of `DenseDepth` (`encoder` is torchvision's `densenet169().features`):

    conv1_conv, conv1_bn                 encoder.conv0, encoder.norm0
    conv{b+1}_block{l}_0_bn, _1_conv     encoder.denseblock{b}.denselayer{l}.norm1, .conv1
    conv{b+1}_block{l}_1_bn, _2_conv     encoder.denseblock{b}.denselayer{l}.norm2, .conv2
    pool{t+1}_bn, pool{t+1}_conv         encoder.transition{t}.norm, encoder.transition{t}.conv
    bn                                   encoder.norm5
    conv2 (1x1, with bias)               conv2
    up{i+1}_convA, up{i+1}_convB         up[i].conv_a, up[i].conv_b
    conv3                                conv3

Convolution kernels are stored HWIO (height, width, in, out) and become OIHW; BatchNorm's gamma, beta, moving_mean,
moving_variance become weight, bias, running_mean, running_var (num_batches_tracked is set to 0; Keras keeps no such
count), with Keras DenseNet's epsilon, KERAS_BN_EPS. conv2's output width tells the decoder: 832 channels for the
half decoder of the authors' `create_model(is_halffeatures=True)`, 1664 for the full one. Every array in the file
must be used exactly once and every parameter and BatchNorm buffer set, with matching shapes; anything else is
refused with a `KerasImportError` naming the file and the layer.

Using the imported model as the authors did (DenseDepth's README and test code): the input is RGB `x / 255` in [0, 1]
with no ImageNet normalisation (its spec says `imagenet_normalize=False`); the output, at half the input's
size, is in DepthNorm units, 10 m / depth (their `predict` takes clip(1000 / y, 10, 1000) / 1000 * 10 to get metres in
[0.1, 10]). The decoder's bilinear upsampling must be the one the weights were trained with: "corners"
(`align_corners=True`, as DenseDepth's layers.py of 2019 called `tf.image.resize_images`) for the released nyu.h5;
"half_pixel" for a model trained with TensorFlow 2's `tf.image.resize` or Keras 3's UpSampling2D.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np
import torch
from torch import nn

from depthcore.checks import check_choice
from depthcore.errors import DepthcoreError
from depthcore.model import DECODER_CHANNELS, UPSAMPLING, DenseDepth, ModelSpec
from depthcore.nyu import MAX_DEPTH, MIN_DEPTH

#: The epsilon of every BatchNormalization in Keras's DenseNet (keras.applications densenet.py).
KERAS_BN_EPS = 1.001e-5
#: Layers per dense block (conv2_block* .. conv5_block*) of DenseNet-169, which DenseDepth's encoder is, and of
#: DenseNet-201, which the authors' `create_model(is_twohundred=True)` builds instead.
DENSENET169_BLOCKS = (6, 12, 32, 32)
DENSENET201_BLOCKS = (6, 12, 48, 32)
#: The decoder by conv2's output width.
DECODER_BY_WIDTH = {channels[0]: name for name, channels in DECODER_CHANNELS.items()}
#: Keras's weight names -> the attribute of the module they become, by module type.
CONV_WEIGHTS = {"kernel": "weight", "bias": "bias"}
BATCHNORM_WEIGHTS = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
# Modules whose Keras name follows from their own: torch name -> Keras 3 layer name.
_FIXED_NAMES = {
    "encoder.conv0": "conv1_conv", "encoder.norm0": "conv1_bn", "encoder.norm5": "bn", "conv2": "conv2",
    "conv3": "conv3",
}
_DENSE_LAYER_PARTS = {"norm1": "0_bn", "conv1": "1_conv", "norm2": "1_bn", "conv2": "2_conv"}
_DENSE_LAYER = re.compile(r"encoder\.denseblock(\d)\.denselayer(\d+)\.(norm1|conv1|norm2|conv2)")
_TRANSITION = re.compile(r"encoder\.transition(\d)\.(norm|conv)")
_UP = re.compile(r"up\.(\d)\.conv_([ab])")
_KERAS_BLOCK_LAYER = re.compile(r"conv(\d)_block(\d+)_.+")


class KerasImportError(DepthcoreError):
    """A Keras .h5 file that is not the authors' DenseDepth model (or not readable): one line, file and layer named."""


@dataclass(frozen=True)
class KerasModelInfo:
    """What `convert_keras` found in the file."""

    decoder: str  # "half" | "full", from conv2's output width
    naming: str  # "keras2" (`conv1/conv`, `kernel:0`) | "keras3" (`conv1_conv`, `kernel`), from the layer names
    keras_version: str | None  # the `keras_version` attribute the file records, if any
    num_weights: int  # arrays read from the file, every one of them used once
    file_name: str  # the file's name, for the model file's origin

    @property
    def origin(self) -> str:
        """One line for the model file: where the weights came from."""
        version = f"Keras {self.keras_version}" if self.keras_version else "Keras"
        return f"imported from {self.file_name} ({version}, {self.decoder} decoder, {self.num_weights} weight arrays)"


class _Layer(NamedTuple):
    """One Keras layer with weights: its name as the file spells it and its arrays by short name (`kernel`, ...)."""

    name: str
    weights: dict[str, np.ndarray]


def convert_keras(
    path: str | Path, *, upsampling: str = "corners"
) -> tuple[DenseDepth, ModelSpec, KerasModelInfo]:
    """The Keras DenseDepth model in the HDF5 file `path` as a `DenseDepth` (eval mode, CPU, fp32), its spec, and what
    was found.

    The spec (`keras_spec`): no input pooling, the decoder found in the file, `upsampling`, KERAS_BN_EPS, no ImageNet
    normalisation: input (B, 3, H, W) RGB / 255, output (B, 1, H/2, W/2) in DepthNorm units (10 m / depth, clamped to
    [0.1, 10] m as the authors' predict does). `upsampling` is one of UPSAMPLING ("corners" for the released nyu.h5;
    module docstring). Reads the file, writes nothing. Raises `KerasImportError` for a file that is not readable
    HDF5 or not this architecture.
    """
    path = Path(path)
    check_choice("upsampling", upsampling, UPSAMPLING)
    layers, keras_version = _read_layers(path)
    by_name = _by_keras3_name(path, layers)
    _check_dense_blocks(path, by_name)
    decoder = _detect_decoder(path, by_name, layers)
    spec = keras_spec(decoder, upsampling)
    model = DenseDepth.from_spec(spec)
    model.load_state_dict(_state_dict(path, by_name, model))  # strict: every parameter and buffer set
    naming = "keras2" if any("/" in layer.name for layer in layers) else "keras3"
    num_weights = sum(len(layer.weights) for layer in layers)
    return model.eval(), spec, KerasModelInfo(decoder, naming, keras_version, num_weights, path.name)


def keras_spec(decoder: str, upsampling: str) -> ModelSpec:
    """What the authors' Keras model is, as a depthcore model spec (their model.py and train.py)."""
    return ModelSpec(downsample=False, decoder=decoder, upsampling=upsampling, imagenet_normalize=False,
                     bn_eps=KERAS_BN_EPS, target="depthnorm", min_depth=MIN_DEPTH, max_depth=MAX_DEPTH)


def _read_layers(path: Path) -> tuple[list[_Layer], str | None]:
    """The layers with weights in a Keras HDF5 file, in the file's order, and the Keras version it records."""
    if not path.is_file():
        raise KerasImportError(f"{path}: expected a Keras .h5 file, found no file there")
    try:
        file = h5py.File(path, "r")
    except OSError as err:
        raise KerasImportError(
            f"{path}: expected an HDF5 file saved by Keras, found one that h5py cannot open (not HDF5, truncated or "
            f"corrupt): {_one_line(err)}"
        ) from err
    with file:
        group = file["model_weights"] if "model_weights" in file else file
        if "layer_names" not in group.attrs:
            raise KerasImportError(
                f"{path}: expected a Keras model (a 'model_weights' group with a 'layer_names' attribute), found "
                f"top-level entries {sorted(file)}"
            )
        version = group.attrs.get("keras_version", file.attrs.get("keras_version"))
        layers = [_read_layer(path, group, name) for name in map(_text, group.attrs["layer_names"])]
    return [layer for layer in layers if layer.weights], None if version is None else _text(version)


def _read_layer(path: Path, group: h5py.Group, name: str) -> _Layer:
    """The arrays that layer `name` lists in its `weight_names` attribute, as float32, by short name."""
    weights = {}
    try:
        layer = group[name]
        for weight_name in map(_text, layer.attrs.get("weight_names", [])):
            short = weight_name.rsplit("/", 1)[-1].removesuffix(":0")
            if short in weights:
                raise KerasImportError(
                    f"{path}: layer '{name}': expected one weight named '{short}', found a second, '{weight_name}'"
                )
            weights[short] = np.asarray(layer[weight_name][()], dtype=np.float32)
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise KerasImportError(
            f"{path}: layer '{name}': expected the weights its attributes list, found them unreadable (truncated or "
            f"corrupt file?): {_one_line(err)}"
        ) from err
    return _Layer(name, weights)


def _by_keras3_name(path: Path, layers: list[_Layer]) -> dict[str, _Layer]:
    """The layers by their Keras 3 name (`conv1/conv` -> `conv1_conv`); two that become one name are refused."""
    by_name = {}
    for layer in layers:
        name = layer.name.replace("/", "_")
        if name in by_name:
            raise KerasImportError(
                f"{path}: layer '{layer.name}': expected one layer named {name} in either Keras naming, found a "
                f"second one, '{by_name[name].name}'"
            )
        by_name[name] = layer
    return by_name


def _check_dense_blocks(path: Path, by_name: dict[str, _Layer]) -> None:
    """Refuse an encoder whose dense blocks are not DenseNet-169's (DenseNet-201 said by name)."""
    sizes: dict[int, int] = {}
    for name in by_name:
        if match := _KERAS_BLOCK_LAYER.fullmatch(name):
            block, layer = int(match[1]), int(match[2])
            sizes[block] = max(sizes.get(block, 0), layer)
    found = tuple(sizes.get(block, 0) for block in range(2, 2 + len(DENSENET169_BLOCKS)))
    if found == DENSENET169_BLOCKS:
        return
    block = 2 + next(i for i, (a, b) in enumerate(zip(found, DENSENET169_BLOCKS)) if a != b)
    last = found[block - 2]
    named = f"layer 'conv{block}_block{last}_*'" if last else f"no layer 'conv{block}_block1_*'"
    if found == DENSENET201_BLOCKS:
        what = "a DenseNet-201 encoder (the authors' is_twohundred), which is not supported"
    else:
        what = "an encoder that is not DenseNet-169"
    raise KerasImportError(
        f"{path}: {named}: expected DenseNet-169's dense blocks of {_sizes(DENSENET169_BLOCKS)} layers, found "
        f"{_sizes(found)}: {what}"
    )


def _detect_decoder(path: Path, by_name: dict[str, _Layer], layers: list[_Layer]) -> str:
    """"half" or "full" from conv2's output width; a file without conv2 (a classifier, a bare encoder) is refused."""
    conv2 = by_name.get("conv2")
    if conv2 is None or "kernel" not in conv2.weights:
        raise KerasImportError(
            f"{path}: layer 'conv2' not found: expected DenseDepth's decoder (conv2, up1_convA .. up4_convB, conv3) "
            f"after the DenseNet-169 encoder, found a model whose last layer with weights is '{layers[-1].name}' "
            "(a classifier or a bare encoder?)"
        )
    shape = conv2.weights["kernel"].shape
    if shape[-1] not in DECODER_BY_WIDTH:
        widths = " or ".join(f"{width} ({name} decoder)" for width, name in DECODER_BY_WIDTH.items())
        raise KerasImportError(f"{path}: layer 'conv2': expected {widths} output channels, found kernel shape {shape}")
    return DECODER_BY_WIDTH[shape[-1]]


def _keras_layer_name(module_name: str) -> str:
    """The Keras 3 layer name of a convolution or BatchNorm of `DenseDepth` (module docstring's table)."""
    if match := _DENSE_LAYER.fullmatch(module_name):
        return f"conv{int(match[1]) + 1}_block{match[2]}_{_DENSE_LAYER_PARTS[match[3]]}"
    if match := _TRANSITION.fullmatch(module_name):
        return f"pool{int(match[1]) + 1}_{'bn' if match[2] == 'norm' else 'conv'}"
    if match := _UP.fullmatch(module_name):
        return f"up{int(match[1]) + 1}_conv{match[2].upper()}"
    return _FIXED_NAMES[module_name]


def _state_dict(path: Path, by_name: dict[str, _Layer], model: DenseDepth) -> dict[str, torch.Tensor]:
    """The model's state dict from the file's layers: each module from its layer, each layer used by one module."""
    modules = {
        _keras_layer_name(name): (name, module)
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d))
    }
    for name, layer in by_name.items():
        if name not in modules:
            raise KerasImportError(
                f"{path}: layer '{layer.name}' (weights {', '.join(layer.weights)}): expected only DenseNet-169 and "
                "DenseDepth decoder layers, found one with no place in DenseDepth"
            )
    state = {}
    for keras_name, (module_name, module) in modules.items():
        if keras_name not in by_name:
            raise KerasImportError(
                f"{path}: layer '{keras_name}' not found: expected it for DenseDepth's {module_name}"
            )
        state.update(_module_state(path, by_name[keras_name], module_name, module))
    return state


def _module_state(path: Path, layer: _Layer, module_name: str, module: nn.Module) -> dict[str, torch.Tensor]:
    """The state of one Conv2d or BatchNorm2d from its Keras layer, shapes checked."""
    spec = BATCHNORM_WEIGHTS if isinstance(module, nn.BatchNorm2d) else CONV_WEIGHTS
    expected = [short for short, attr in spec.items() if getattr(module, attr) is not None]
    for short in layer.weights:
        if short not in expected:
            raise KerasImportError(
                f"{path}: layer '{layer.name}': expected weights {', '.join(expected)} for {module_name}, found an "
                f"unused one, '{short}'"
            )
    state = {}
    for short in expected:
        if short not in layer.weights:
            raise KerasImportError(
                f"{path}: layer '{layer.name}': expected weights {', '.join(expected)} for {module_name}, found no "
                f"'{short}'"
            )
        target = getattr(module, spec[short])
        found = layer.weights[short]
        keras_shape = tuple(target.permute(2, 3, 1, 0).shape) if target.dim() == 4 else tuple(target.shape)
        if found.shape != keras_shape:
            raise KerasImportError(
                f"{path}: layer '{layer.name}' weight '{short}': expected shape {keras_shape} (for {module_name}), "
                f"found {found.shape}"
            )
        array = found.transpose(3, 2, 0, 1) if found.ndim == 4 else found  # HWIO -> OIHW
        state[f"{module_name}.{spec[short]}"] = torch.from_numpy(np.ascontiguousarray(array))
    if isinstance(module, nn.BatchNorm2d):
        state[f"{module_name}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return state


def _text(value: bytes | str | np.bytes_) -> str:
    """An HDF5 attribute string, which Keras writes as bytes or str."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _sizes(blocks: tuple[int, ...]) -> str:
    return ", ".join(map(str, blocks))
