"""depthcore.keras_import against Keras 3 itself (torch backend, no TensorFlow).

The authors' architecture (ialhashim/DenseDepth model.py: keras.applications DenseNet169 without its top, then conv2,
up1..up4, conv3) is rebuilt in Keras with random weights, BatchNorm statistics included, saved as legacy HDF5 and
converted; the converted model must give Keras's own output on a real photograph. The same file rewritten in Keras 2's
naming must give the same state dict, and edited copies of it must be refused with a one-line message.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import skimage.data
import skimage.transform
import torch
from PIL import Image

from depthcore.keras_import import KERAS_BN_EPS, KerasImportError, convert_keras
from tests.helpers import depthcore_status

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported: Keras 3 on PyTorch, no TensorFlow
import keras  # noqa: E402

pytestmark = [
    pytest.mark.slow,  # builds, saves and runs real DenseNet-169 models in Keras (a module fixture) and in PyTorch
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]

H, W = 128, 192  # chelsea's aspect, multiples of 32: every UpSampling2D x2 meets its skip's size exactly
SKIPS = ("pool3_pool", "pool2_pool", "pool1", "conv1_relu")  # the skips in decoder order, Keras 3 names
TOLERANCE = 1e-4  # DepthNorm units, fp32
KERAS2_STEM = {"conv1_conv": "conv1/conv", "conv1_bn": "conv1/bn", "conv1_relu": "conv1/relu"}  # Keras 2.2.4's names


def corner_aligned_matrix(n: int) -> np.ndarray:
    """(2n, n): bilinear x2 with corners aligned; output i reads input position p = i (n - 1) / (2n - 1), weighting
    its neighbours floor(p) and floor(p) + 1 by 1 - frac(p) and frac(p)."""
    out = 2 * n
    pos = np.arange(out) * (n - 1) / (out - 1)
    low = np.floor(pos).astype(int)
    high = np.minimum(low + 1, n - 1)
    matrix = np.zeros((out, n), dtype=np.float32)
    np.add.at(matrix, (np.arange(out), low), 1 - (pos - low))
    np.add.at(matrix, (np.arange(out), high), pos - low)
    return matrix


class CornerAlignedUpSampling2D(keras.layers.Layer):
    """Bilinear x2 with corners aligned, as the authors' layer of 2019 (tf.image.resize_images(align_corners=True)),
    written as two matrix products so that it shares no code with PyTorch's interpolate."""

    def call(self, x):  # (B, h, w, C) -> (B, 2h, 2w, C)
        rows = keras.ops.convert_to_tensor(corner_aligned_matrix(x.shape[1]))  # (2h, h)
        cols = keras.ops.convert_to_tensor(corner_aligned_matrix(x.shape[2]))  # (2w, w)
        x = keras.ops.einsum("ih,bhwc->biwc", rows, x)  # (B, 2h, w, C)
        return keras.ops.einsum("jw,biwc->bijc", cols, x)


def decoder_layers(filters: int) -> dict[str, keras.layers.Layer]:
    """The decoder's convolutions of the authors' model.py: conv2 1x1 to `filters`, up{i} with filters / 2^i, conv3."""
    layers = {"conv2": keras.layers.Conv2D(filters, 1, padding="same", name="conv2")}
    for i in range(1, len(SKIPS) + 1):
        for name in (f"up{i}_convA", f"up{i}_convB"):
            layers[name] = keras.layers.Conv2D(filters // 2**i, 3, padding="same", name=name)
    layers["conv3"] = keras.layers.Conv2D(1, 3, padding="same", name="conv3")
    return layers


def densedepth(base: keras.Model, layers: dict, upsampling: Callable[[str], keras.layers.Layer], name: str):
    """The authors' model: encoder `base`, then decoder `layers`, upsampling with the layers `upsampling` makes."""
    x = layers["conv2"](base.output)
    for i, skip in enumerate(SKIPS, start=1):
        x = upsampling(f"up{i}_upsampling2d")(x)
        x = keras.layers.Concatenate(name=f"up{i}_concat")([x, base.get_layer(skip).output])
        for part in ("A", "B"):
            x = keras.layers.LeakyReLU(negative_slope=0.2)(layers[f"up{i}_conv{part}"](x))
    return keras.Model(base.input, layers["conv3"](x), name=name)


def half_pixel(name: str) -> keras.layers.Layer:
    return keras.layers.UpSampling2D(2, interpolation="bilinear", name=name)


def randomize(models: list[keras.Model], rng: np.random.Generator) -> None:
    """Random weights of a realistic scale for every variable, BatchNorm's moving mean and variance included; a
    variable that several models share is set once."""
    for variable in {id(v): v for model in models for v in model.weights}.values():
        shape = tuple(variable.shape)
        if variable.name == "kernel":  # He scale: activations keep their size through 169 layers
            value = rng.standard_normal(shape, np.float32) * np.sqrt(2 / np.prod(shape[:-1]))
        elif variable.name == "gamma":
            value = rng.uniform(0.5, 1.5, shape)
        elif variable.name == "moving_variance":
            value = rng.uniform(0.5, 2.0, shape)
        else:  # bias, beta, moving_mean
            value = rng.normal(size=shape) * 0.1
        variable.assign(value.astype(np.float32))


@dataclass(frozen=True)
class Built:
    half: Path  # the half decoder (832 channels after conv2) as legacy .h5
    full: Path  # the full decoder (1664)
    image: np.ndarray  # (H, W, 3) float32 in [0, 1]: a real photograph / 255
    keras_out: dict[str, np.ndarray]  # Keras's outputs (H/2, W/2) on `image`: "half", "half_corners", "full"
    num_weights: dict[str, int]  # arrays in each Keras model: "half", "full"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    assert keras.backend.backend() == "torch"  # not a Keras another module imported first on another backend
    folder = tmp_path_factory.mktemp("keras")
    image = skimage.transform.resize(skimage.data.chelsea(), (H, W), anti_aliasing=True).astype(np.float32)
    with torch.random.fork_rng():  # Keras may seed torch's generator: leave other tests' as it was
        base = keras.applications.DenseNet169(include_top=False, weights=None, input_shape=(H, W, 3))
        half, full = decoder_layers(1664 // 2), decoder_layers(1664)
        models = {
            "half": densedepth(base, half, half_pixel, "half"),
            "half_corners": densedepth(base, half, lambda name: CornerAlignedUpSampling2D(name=name), "corners"),
            "full": densedepth(base, full, half_pixel, "full"),
        }
        randomize(list(models.values()), np.random.default_rng(0))
        keras_out = {}
        with torch.no_grad():
            for name, model in models.items():
                keras_out[name] = keras.ops.convert_to_numpy(model(image[None], training=False))[0, :, :, 0]
    for name in ("half", "full"):
        models[name].save(folder / f"{name}.h5")
    num_weights = {name: len(models[name].weights) for name in ("half", "full")}
    return Built(folder / "half.h5", folder / "full.h5", image, keras_out, num_weights)


def run(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """image (H, W, 3) -> the model's output (H/2, W/2)."""
    with torch.no_grad():
        return model(torch.from_numpy(image).permute(2, 0, 1)[None])[0, 0].numpy()  # (1, 3, H, W) in


@pytest.fixture(scope="module")
def converted_half(built):
    return convert_keras(built.half, upsampling="half_pixel")


def test_half_decoder_matches_keras(built, converted_half):
    model, spec, info = converted_half
    assert info.decoder == "half" and info.naming == "keras3" and info.keras_version == keras.__version__
    assert info.num_weights == built.num_weights["half"]
    assert (spec.downsample, spec.decoder, spec.upsampling, spec.imagenet_normalize, spec.bn_eps, spec.target) == (
        False, "half", "half_pixel", False, 1.001e-5, "depthnorm"
    )
    assert not model.training and next(model.parameters()).dtype == torch.float32 and model.input_mean is None
    assert {m.eps for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {KERAS_BN_EPS}
    expected = built.keras_out["half"]
    assert expected.shape == (H // 2, W // 2) and expected.std() > 0.1  # a non-trivial output to compare
    difference = np.abs(run(model, built.image) - expected).max()
    assert difference < TOLERANCE, f"max |PyTorch - Keras| = {difference:.3g}"


def test_corners_mode_matches_a_corner_aligned_keras_layer(built, converted_half):
    model, spec, _ = convert_keras(built.half, upsampling="corners")
    assert spec.upsampling == "corners"
    assert all(block.align_corners for block in model.up)
    out = run(model, built.image)
    difference = np.abs(out - built.keras_out["half_corners"]).max()
    assert difference < TOLERANCE, f"max |PyTorch - Keras| = {difference:.3g}"
    assert np.abs(out - run(converted_half[0], built.image)).max() > 100 * TOLERANCE  # the two modes differ


def test_full_decoder_matches_keras(built):
    model, spec, info = convert_keras(built.full, upsampling="half_pixel")
    assert info.decoder == spec.decoder == "full" and info.num_weights == built.num_weights["full"]
    assert model.conv2.out_channels == 1664
    difference = np.abs(run(model, built.image) - built.keras_out["full"]).max()
    assert difference < TOLERANCE, f"max |PyTorch - Keras| = {difference:.3g}"


def _names(node: h5py.Group, attribute: str) -> list[str]:
    return [name.decode() if isinstance(name, bytes) else str(name) for name in node.attrs[attribute]]


def _set_names(node: h5py.Group, attribute: str, names: list[str]) -> None:
    node.attrs[attribute] = np.array([name.encode() for name in names])


def _to_keras2(weights: h5py.Group) -> None:
    """Keras 2.2.4's layout: the stem's names with slashes, and every weight named '<layer>/<weight>:0'."""
    names = _names(weights, "layer_names")
    for name in names:
        renamed = KERAS2_STEM.get(name, name)
        if renamed != name:
            weights.move(name, renamed)
        layer = weights[renamed]
        old = _names(layer, "weight_names")
        new = [f"{renamed}/{weight.rsplit('/', 1)[-1]}:0" for weight in old]
        for old_name, new_name in zip(old, new):
            data = layer[old_name][()]
            del layer[old_name]
            layer.create_dataset(new_name, data=data)
        if new:
            _set_names(layer, "weight_names", new)
    _set_names(weights, "layer_names", [KERAS2_STEM.get(name, name) for name in names])
    weights.attrs["keras_version"] = weights.file.attrs["keras_version"] = "2.2.4"


def edited(built: Built, tmp_path: Path, edit: Callable[[h5py.Group], None]) -> Path:
    """A copy of the half model's file with `edit` applied to its `model_weights` group."""
    path = tmp_path / "edited.h5"
    shutil.copyfile(built.half, path)
    with h5py.File(path, "r+") as file:
        edit(file["model_weights"])
    return path


def test_keras2_names_give_the_same_state_dict(built, converted_half, tmp_path):
    path = edited(built, tmp_path, _to_keras2)
    with h5py.File(path) as file:  # the rewrite did what Keras 2.2.4 does
        assert file["model_weights/conv1/conv"].attrs["weight_names"][0] == b"conv1/conv/kernel:0"
        assert "model_weights/conv1/conv/conv1/conv/kernel:0" in file
    model, spec, info = convert_keras(path, upsampling="half_pixel")
    assert (info.naming, info.keras_version, info.decoder) == ("keras2", "2.2.4", "half")
    assert info.num_weights == converted_half[2].num_weights and spec == converted_half[1]
    state, expected = model.state_dict(), converted_half[0].state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[key], expected[key]) for key in expected)


def test_a_weights_only_file_gives_the_same_state_dict(built, converted_half, tmp_path):
    """Keras's save_weights in HDF5 puts `layer_names` and the layers at the file's root, not in `model_weights`."""
    path = tmp_path / "weights.h5"
    with h5py.File(built.half) as source, h5py.File(path, "w") as target:
        weights = source["model_weights"]
        for name in weights:
            source.copy(weights[name], target, name)
        target.attrs.update(weights.attrs)
    model, spec, info = convert_keras(path, upsampling="half_pixel")
    assert spec == converted_half[1] and info.num_weights == converted_half[2].num_weights
    state, expected = model.state_dict(), converted_half[0].state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[key], expected[key]) for key in expected)


def _classifier(weights: h5py.Group) -> None:
    """DenseNet169(include_top=True)'s layers: the encoder, then avg_pool and the 1000-way `predictions`."""
    names = _names(weights, "layer_names")
    predictions = weights.create_group("predictions")
    predictions.create_dataset("predictions/kernel", data=np.zeros((1664, 1000), np.float32))
    predictions.create_dataset("predictions/bias", data=np.zeros(1000, np.float32))
    _set_names(predictions, "weight_names", ["predictions/kernel", "predictions/bias"])
    weights.create_group("avg_pool")
    _set_names(weights, "layer_names", names[: names.index("relu") + 1] + ["avg_pool", "predictions"])


def _densenet201(weights: h5py.Group) -> None:
    """DenseNet-201's dense block conv4 of 48 layers (conv4_block33 .. 48 copied from conv4_block32)."""
    names = _names(weights, "layer_names")
    added = []
    for layer in range(33, 49):
        for part in ("0_bn", "0_relu", "1_conv", "1_bn", "1_relu", "2_conv", "concat"):
            weights.copy(weights[f"conv4_block32_{part}"], f"conv4_block{layer}_{part}")
            added.append(f"conv4_block{layer}_{part}")
    end = names.index("conv4_block32_concat") + 1
    _set_names(weights, "layer_names", names[:end] + added + names[end:])


def _with_weight(layer_name: str, weight: str, shape: tuple[int, ...]) -> Callable[[h5py.Group], None]:
    """An edit that stores `weight` of `layer_name` with `shape` (replacing it, or adding it to the layer's list)."""

    def edit(weights: h5py.Group) -> None:
        layer = weights.require_group(layer_name)
        names = _names(layer, "weight_names") if "weight_names" in layer.attrs else []
        full = f"{layer_name}/{weight}"
        if full in layer:
            del layer[full]
        layer.create_dataset(full, data=np.zeros(shape, np.float32))
        if full not in names:
            _set_names(layer, "weight_names", names + [full])
        if layer_name not in _names(weights, "layer_names"):
            _set_names(weights, "layer_names", _names(weights, "layer_names") + [layer_name])

    return edit


def _without_weight(layer_name: str, weight: str) -> Callable[[h5py.Group], None]:
    def edit(weights: h5py.Group) -> None:
        layer = weights[layer_name]
        _set_names(layer, "weight_names", [w for w in _names(layer, "weight_names") if w != f"{layer_name}/{weight}"])

    return edit


CONV2_BLOCK3_IN = 64 + 2 * 32  # conv1's 64 channels and two dense layers of growth 32
REFUSED = {
    "classifier": (_classifier, "layer 'conv2' not found: expected DenseDepth's decoder", "is 'predictions'"),
    "densenet201": (
        _densenet201,
        "layer 'conv4_block48_*': expected DenseNet-169's dense blocks of 6, 12, 32, 32 layers, found 6, 12, 48, 32",
        "DenseNet-201 encoder (the authors' is_twohundred), which is not supported",
    ),
    "shape": (
        _with_weight("conv2_block3_1_conv", "kernel", (1, 1, CONV2_BLOCK3_IN, 64)),
        f"layer 'conv2_block3_1_conv' weight 'kernel': expected shape (1, 1, {CONV2_BLOCK3_IN}, 128)",
        f"found (1, 1, {CONV2_BLOCK3_IN}, 64)",
    ),
    "extra weight": (
        _with_weight("conv1_conv", "extra", (3,)),
        "layer 'conv1_conv': expected weights kernel for encoder.conv0, found an unused one, 'extra'",
        "",
    ),
    "extra layer": (
        _with_weight("dense_extra", "kernel", (4, 4)),
        "layer 'dense_extra' (weights kernel): expected only DenseNet-169 and DenseDepth decoder layers",
        "no place in DenseDepth",
    ),
    "missing weight": (
        _without_weight("pool2_bn", "moving_variance"),
        "layer 'pool2_bn': expected weights gamma, beta, moving_mean, moving_variance for encoder.transition1.norm",
        "found no 'moving_variance'",
    ),
}


@pytest.mark.parametrize("case", REFUSED)
def test_refuses_a_file_that_is_not_the_authors_model(built, tmp_path, case):
    edit, *parts = REFUSED[case]
    path = edited(built, tmp_path, edit)
    with pytest.raises(KerasImportError) as info:
        convert_keras(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert all(part in message for part in parts), message


NOT_HDF5 = "expected an HDF5 file saved by Keras, found one that h5py cannot open (not HDF5, truncated or corrupt)"
UNREADABLE = {
    "truncated": (lambda data: data[: len(data) // 2], NOT_HDF5, "truncated file"),  # the second: HDF5's own reason
    "text": (lambda data: b"not an HDF5 file\n", NOT_HDF5, "file signature not found"),
    "missing": (None, "expected a Keras .h5 file, found no file there", ""),
}


@pytest.mark.parametrize("case", UNREADABLE)
def test_refuses_a_file_that_is_not_readable_hdf5(built, tmp_path, case):
    content, *parts = UNREADABLE[case]
    path = tmp_path / "nyu.h5"
    if content is not None:
        path.write_bytes(content(built.half.read_bytes()))
    with pytest.raises(KerasImportError) as info:
        convert_keras(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {parts[0]}") and parts[1] in message and "\n" not in message, message


def test_refuses_an_hdf5_file_that_is_not_a_keras_model(tmp_path):
    path = tmp_path / "nyu_depth_v2_labeled.mat"  # MATLAB v7.3 files are HDF5 too
    with h5py.File(path, "w") as file:
        file.create_dataset("depths", data=np.zeros((2, 4, 4), np.float32))
    with pytest.raises(KerasImportError, match=re.escape(
        f"{path}: expected a Keras model (a 'model_weights' group with a 'layer_names' attribute), found top-level "
        "entries ['depths']"
    )):
        convert_keras(path)


def test_rejects_an_unknown_upsampling(built):
    expected = "expected upsampling to be one of corners | half_pixel, got 'nearest'"
    with pytest.raises(ValueError, match=re.escape(expected)):
        convert_keras(built.half, upsampling="nearest")




def test_import_keras_then_predict_at_the_photos_own_size(built, tmp_path, capsys):
    """A Keras 2-named file through `depthcore import-keras`, then `depthcore predict --model` on a photograph of
    another size than the network's input: the depth map comes back at the photograph's size."""
    keras2 = edited(built, tmp_path, _to_keras2)
    out = tmp_path / "released.pt"
    assert depthcore_status("import-keras", keras2, "--out", out) == 0
    assert f"wrote {out}: imported from edited.h5 (Keras 2.2.4, half decoder" in capsys.readouterr().out
    record = torch.load(out, weights_only=True)
    assert record["config"] is None and record["spec"]["upsampling"] == "corners" and record["epochs"] == 0
    photo = (skimage.data.coffee()[::4, ::4]).copy()  # (100, 150, 3): a real photograph, neither 480x640 nor 4:3
    Image.fromarray(photo).save(tmp_path / "coffee.png")
    predicted = depthcore_status("predict", tmp_path / "coffee.png", "--model", out, "--out", tmp_path / "pred",
                                 "--device", "cpu")
    assert predicted == 0
    depth = np.asarray(Image.open(tmp_path / "pred" / "coffee_depth.png"))
    assert depth.shape == photo.shape[:2] and depth.dtype == np.uint16
    assert 100 <= depth.min() and depth.max() <= 10_000  # millimetres within DepthNorm's clamp, [0.1, 10] m


def test_import_keras_refusal_is_one_line_and_writes_nothing(built, tmp_path, capsys):
    classifier = edited(built, tmp_path, _classifier)
    out = tmp_path / "models" / "released.pt"
    assert depthcore_status("import-keras", classifier, "--out", out) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "conv2" in err
    assert not out.parent.exists()
