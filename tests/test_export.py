"""depthcore export: the ONNX graph in onnxruntime against PyTorch on a real photograph, for both decoders with and
without the input pooling, at another batch and image size than it was traced at; its metadata; `depthcore predict
--model x.onnx` against the model file it came from; and every refusal.

Each model is a small random DenseDepth whose last convolution is scaled (as in tests/test_predict.py) so that its
depths vary over 2.6-4.9 m instead of sitting at the clamped 10 m a fresh network gives.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import skimage.data
import torch
from PIL import Image

import depthcore.export as export_module
from depthcore.device import resolve_runtime
from depthcore.errors import DepthcoreError
from depthcore.export import export_onnx
from depthcore.frame import predict_images
from depthcore.inference import ModelFileError, load_model, load_predictor, save_model
from depthcore.model import DenseDepth, ModelSpec
from tests.helpers import TinyDepthNet, depthcore_status, make_config

# torch warns that its TorchScript-based exporter is deprecated: depthcore/export.py says why it uses it.
pytestmark = [pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export"),
              pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning")]

CONV3_GAIN, CONV3_BIAS = 20.0, 3.0  # DepthNorm output about 3 +- 0.5: 10 m / 3 = 3.3 m, give or take
MAX_DEPTH_M, DEPTHNORM_RANGE = 10.0, (1.0, 100.0)  # params.yaml's loss: DepthNorm = 10 m / depth, 0.1-10 m
TOLERANCE_M = 1e-4
#: (downsample, decoder) -> the photograph's size (H, W) in the test: multiples of 128 with the input pooling (its
#: smallest clean size), of 32 without; chelsea's 2:3 aspect; neither is the 480x640 the graph was traced at.
CASES = {(True, "half"): (256, 384), (True, "full"): (256, 384), (False, "half"): (64, 96), (False, "full"): (64, 96)}
DEFAULT = (True, "half")  # params.yaml's model
STRIDE = {True: 8, False: 2}  # input pixels per output pixel: MaxPool2d(4) and the decoder's x2 short of the input


def save_random_model(path: Path, downsample: bool, decoder: str) -> Path:
    torch.manual_seed(0)
    model = DenseDepth(downsample, decoder=decoder)
    with torch.no_grad():
        model.conv3.weight.mul_(CONV3_GAIN)
        model.conv3.bias.fill_(CONV3_BIAS)
    config = make_config(**{"model.downsample": downsample, "model.decoder": decoder})
    save_model(path, model, ModelSpec.from_config(config), config=config, epochs=0, origin="a test model")
    return path




@pytest.fixture(scope="module")
def exported(request, tmp_path_factory) -> tuple[Path, Path, tuple[bool, str]]:
    """(model file, the ONNX file `depthcore export` wrote from it, (downsample, decoder)) for the case a test is
    parametrized with (indirectly), written once for the module."""
    folder = tmp_path_factory.mktemp("export")
    model = save_random_model(folder / "model.pt", *request.param)
    assert depthcore_status("export", model, "--onnx", folder / "model.onnx") == 0
    return model, folder / "model.onnx", request.param


def photograph(height: int, width: int) -> np.ndarray:
    """scikit-image's chelsea (a real photograph, 300x451) resized to (height, width, 3) uint8."""
    return np.asarray(Image.fromarray(skimage.data.chelsea()).resize((width, height), Image.Resampling.BILINEAR))


EACH_CASE = pytest.mark.parametrize("exported", list(CASES), indirect=True, ids=lambda case: f"{case[0]}-{case[1]}")


@EACH_CASE
def test_onnxruntime_gives_pytorchs_metres_on_a_photograph(exported):
    """A batch of 2 (the photo and its mirror image) at a size other than the traced 480x640: the graph's output in
    onnxruntime against the saved network's, read back from DepthNorm by hand (10 m / clamp(y, 1, 100))."""
    model_file, onnx_file, (downsample, _) = exported
    height, width = CASES[exported[2]]
    rgb = photograph(height, width)
    x = torch.from_numpy(np.stack([rgb, rgb[:, ::-1]])).permute(0, 3, 1, 2).float() / 255  # (2, 3, H, W) in [0, 1]
    net, _, _ = load_model(model_file)
    with torch.no_grad():
        expected = (MAX_DEPTH_M / net(x).clamp(*DEPTHNORM_RANGE)).numpy()  # (2, 1, h, w) metres
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (got,) = session.run(["depth"], {"rgb": x.numpy()})
    s = STRIDE[downsample]
    assert got.shape == expected.shape == (2, 1, height // s, width // s)  # the network's resolution, not upsampled
    assert expected.max() - expected.min() > 0.3  # varied depths, not the clamped 10 m
    assert np.abs(got - expected).max() <= TOLERANCE_M


@EACH_CASE
def test_metadata_says_how_to_use_the_graph(exported):
    _, onnx_file, (downsample, decoder) = exported
    proto = onnx.load(str(onnx_file), load_external_data=False)
    meta = {prop.key: prop.value for prop in proto.metadata_props}
    s = STRIDE[downsample]
    assert meta["output_stride"] == str(s) and meta["output_size_for_480x640"] == f"{480 // s}x{640 // s}"
    assert meta["input_divisor"] == "255" and "[0, 1]" in meta["input"]
    assert (meta["min_depth"], meta["max_depth"]) == ("0.1", "10.0") and meta["target"].startswith("depthnorm")
    assert meta["upsampling"].startswith("none") and "align_corners=False" in meta["upsampling"]
    assert meta["origin"] == "a test model" and meta["input_normalization"] == "none"
    assert f'"decoder": "{decoder}"' in meta["depthcore_spec"]
    assert max(opset.version for opset in proto.opset_import if opset.domain in ("", "ai.onnx")) >= 17
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]


@pytest.mark.parametrize("exported", [DEFAULT], indirect=True, ids=lambda case: f"{case[0]}-{case[1]}")
def test_predict_through_onnx_equals_predict_through_the_model_file(exported, tmp_path, capsys):
    """The same photograph at its own size (letterboxed into 480x640 and back): onnxruntime against PyTorch fp32 on
    the CPU, through `predict_images`; and the `depthcore predict` command's 16-bit depth PNGs (millimetres)."""
    model_file, onnx_file, _ = exported
    rgb = skimage.data.chelsea()  # (300, 451, 3)
    fp32 = resolve_runtime("cpu", "fp32", True)
    (through_onnx,) = predict_images(load_predictor(onnx_file, fp32), [rgb])
    (through_torch,) = predict_images(load_predictor(model_file, fp32), [rgb])
    assert through_onnx.shape == through_torch.shape == (300, 451)
    assert np.abs(through_onnx - through_torch).max() <= TOLERANCE_M

    Image.fromarray(rgb).save(tmp_path / "cat.png")
    for model, out in ((onnx_file, "onnx"), (model_file, "torch")):
        assert depthcore_status("predict", tmp_path / "cat.png", "--model", model, "--out", tmp_path / out,
                    "--device", "cpu", "--precision", "fp32") == 0
    mm = [np.asarray(Image.open(tmp_path / out / "cat_depth.png")).astype(int) for out in ("onnx", "torch")]
    assert np.abs(mm[0] - mm[1]).max() <= 1  # the same metres, rounded to millimetres
    assert "predicted 1 of 1 images" in capsys.readouterr().out


def _error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1]


def test_export_refuses_an_output_without_the_onnx_suffix(tmp_path, capsys):
    assert depthcore_status("export", tmp_path / "any.pt", "--onnx", tmp_path / "model.pt") == 2
    assert _error(capsys) == f"error: expected --onnx to end in .onnx, got {tmp_path / 'model.pt'}"


def test_export_of_a_missing_model_writes_nothing(tmp_path, capsys):
    assert depthcore_status("export", tmp_path / "none.pt", "--onnx", tmp_path / "model.onnx") == 2
    assert _error(capsys).startswith(f"error: no model file at {tmp_path / 'none.pt'}")
    assert list(tmp_path.iterdir()) == []


def test_predictor_refuses_onnx_files_not_ours(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf")
    with pytest.raises(ModelFileError, match="is not an ONNX model onnxruntime can load"):
        load_predictor(garbage, resolve_runtime("cpu", "fp32", True))

    x = onnx.helper.make_tensor_value_info("rgb", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    y = onnx.helper.make_tensor_value_info("depth", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["rgb"], ["depth"])], "other", [x], [y])
    onnx.save(onnx.helper.make_model(graph), tmp_path / "other.onnx")
    with pytest.raises(ModelFileError, match="is not a model written by `depthcore export`.*got None"):
        load_predictor(tmp_path / "other.onnx", resolve_runtime("cpu", "fp32", True))

    with pytest.raises(ModelFileError, match="no ONNX model at .*: write one with `depthcore export"):
        load_predictor(tmp_path / "none.onnx", resolve_runtime("cpu", "fp32", True))


def test_a_missing_onnxruntime_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    with pytest.raises(DepthcoreError) as info:
        load_predictor(tmp_path / "model.onnx", resolve_runtime("cpu", "fp32", True))
    assert str(info.value) == (f"an ONNX model ({tmp_path / 'model.onnx'}) needs the onnxruntime package, not "
                               "installed here: pip install 'depthcore[onnx]'")


def test_an_export_that_disagrees_with_pytorch_writes_nothing(tmp_path, monkeypatch):
    """A graph whose metres are off (here: the check made to say so) is refused, and no file is left behind."""
    monkeypatch.setattr(export_module, "check_export", lambda model, spec, path: 0.5)
    spec = ModelSpec.from_config(make_config())
    with pytest.raises(RuntimeError, match="0.5 m apart on the check image, expected at most 0.001 m"):
        export_onnx(TinyDepthNet().eval(), spec, "a test", tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


def test_export_without_the_onnx_package_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    spec = ModelSpec.from_config(make_config())
    with pytest.raises(DepthcoreError, match=r"^depthcore export needs the onnx package, not installed here: pip "):
        export_onnx(TinyDepthNet().eval(), spec, "a test", tmp_path / "model.onnx")
