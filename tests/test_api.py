"""Taking a model out of the repository: `from depthcore import load_model`, torch.hub's `densedepth` entry, and DVC's
model registry (`dvc artifacts get`).

The model is a small random DenseDepth of params.yaml's shape whose last convolution is scaled (as in
tests/test_predict.py) so that its depths vary over 2.6-4.9 m instead of sitting at the clamped 10 m.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from depthcore.api import DepthModel
from depthcore.inference import load_model as load_network
from depthcore.inference import save_model
from depthcore.model import DenseDepth, ModelSpec
from tests.helpers import ROOT, depthcore_status, import_closure, make_config
from tests.test_pipeline import commit, dvc, make_repo, run

CONV3_GAIN, CONV3_BIAS = 20.0, 3.0  # DepthNorm output about 3 +- 0.5: 10 m / 3 = 3.3 m, give or take
MAX_DEPTH_M, DEPTHNORM_RANGE = 10.0, (1.0, 100.0)  # params.yaml's loss: DepthNorm = 10 m / depth, 0.1-10 m
ARTIFACT = "densedepth"




@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = make_config()
    model = DenseDepth.from_spec(ModelSpec.from_config(config))
    with torch.no_grad():
        model.conv3.weight.mul_(CONV3_GAIN)
        model.conv3.bias.fill_(CONV3_BIAS)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(path, model, ModelSpec.from_config(config), config=config, epochs=0, origin="a test")
    return path


@pytest.fixture(scope="module")
def model(model_file) -> DepthModel:
    from depthcore import load_model  # the package-level name, imported lazily

    return load_model(model_file, device="cpu", precision="fp32")


def test_a_frame_sized_image_is_the_network_read_back_and_upsampled(model, model_file):
    """For a 480x640 photograph (no letterbox) the depth is, by hand: 10 m / clamp(net(rgb / 255), 1, 100), resized
    bilinearly with pixel centres aligned to 480x640."""
    rgb = np.array(Image.fromarray(skimage.data.chelsea()).resize((640, 480), Image.Resampling.BILINEAR))
    net, _, _ = load_network(model_file)
    with torch.no_grad():
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255  # (1, 3, 480, 640)
        metres = MAX_DEPTH_M / net(x).clamp(*DEPTHNORM_RANGE)  # (1, 1, 60, 80)
        expected = F.interpolate(metres, size=(480, 640), mode="bilinear", align_corners=False)[0, 0].numpy()
    depth = model.predict(rgb)
    assert depth.shape == (480, 640) and depth.dtype == np.float32
    assert depth.max() - depth.min() > 0.3  # varied depths, not the clamped 10 m
    np.testing.assert_allclose(depth, expected, atol=1e-5)


def test_a_path_a_pillow_image_and_an_array_give_the_same_depth(model, tmp_path, capsys):
    """At the photograph's own size (300x451), and the same as `depthcore predict`'s 16-bit PNG in millimetres."""
    rgb = skimage.data.chelsea()
    Image.fromarray(rgb).save(tmp_path / "cat.png")
    from_path = model.predict(tmp_path / "cat.png")
    assert from_path.shape == (300, 451)
    np.testing.assert_array_equal(model.predict(str(tmp_path / "cat.png")), from_path)
    np.testing.assert_array_equal(model.predict(Image.open(tmp_path / "cat.png")), from_path)
    np.testing.assert_array_equal(model.predict(rgb), from_path)

    assert depthcore_status("predict", tmp_path / "cat.png", "--model", model.path, "--out", tmp_path / "out",
                       "--device", "cpu", "--precision", "fp32") == 0
    mm = np.asarray(Image.open(tmp_path / "out" / "cat_depth.png")).astype(np.int64)
    assert np.abs(mm - np.rint(from_path * 1000)).max() <= 1  # rounding at the half millimetre aside


def test_what_predict_refuses(model):
    with pytest.raises(TypeError, match="expected a path, a Pillow image or an .* got list"):
        model.predict([[0, 0, 0]])
    with pytest.raises(ValueError, match=r"expected rgb of shape \(H, W, 3\), got \(4, 5\)"):
        model.predict(np.zeros((4, 5), np.uint8))



def test_a_pillow_image_is_read_as_its_file_would_be(model, tmp_path):
    """A 16-bit greyscale image: the API scales it onto 8 bits as `depthcore predict` reads its file."""
    wide = Image.fromarray(np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 21)
    wide.save(tmp_path / "wide.png")
    assert np.array_equal(model.predict(wide), model.predict(tmp_path / "wide.png"))


def test_load_model_refuses_an_unknown_device(model_file):
    from depthcore import load_model

    with pytest.raises(ValueError, match="expected device to be one of auto | cpu | cuda | mps, got 'tpu'"):
        load_model(model_file, device="tpu")


def test_the_package_imports_without_torch_until_load_model_is_used():
    code = ("import sys, depthcore; print('torch' in sys.modules); "
            "depthcore.load_model; print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"]


def test_torch_hub_loads_the_same_model_offline(model, model_file, tmp_path):
    hub = torch.hub.load(str(ROOT), "densedepth", source="local", weights=str(model_file), device="cpu",
                         precision="fp32")
    assert isinstance(hub, DepthModel)
    rgb = skimage.data.coffee()[::4, ::4].copy()  # (100, 150, 3)
    np.testing.assert_array_equal(hub.predict(rgb), model.predict(rgb))


def test_hubconf_dependencies_are_what_the_api_imports():
    """torch.hub checks `dependencies` before calling the entry point: they must be the third-party packages that
    depthcore.api's modules import when they load (imports inside functions, for .h5 or .onnx files, excepted)."""
    hubconf = ast.parse((ROOT / "hubconf.py").read_text())
    (declared,) = [ast.literal_eval(node.value) for node in hubconf.body
                   if isinstance(node, ast.Assign) and node.targets[0].id == "dependencies"]
    imported: set[str] = set()
    for module in import_closure(ROOT / "depthcore" / "api.py") | {"api"}:
        for node in ast.parse((ROOT / "depthcore" / f"{module}.py").read_text()).body:  # module level only
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported if name not in sys.stdlib_module_names} - {"depthcore", "__future__"}
    assert sorted(declared) == sorted(third_party)


def test_the_registry_labels_follow_the_params():
    artifact = yaml.safe_load((ROOT / "dvc.yaml").read_text())["artifacts"][ARTIFACT]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert artifact["path"] == "models/model.pt" and artifact["type"] == "model"
    labels = set(artifact["labels"])
    assert params["data"]["source"] in labels and f"{params['model']['decoder']}-decoder" in labels
    assert ("downsampled" in labels) == params["model"]["downsample"]


def test_dvc_artifacts_get_fetches_the_registered_model_from_a_remote(tmp_path):
    """A repository with this dvc.yaml and a small stand-in for models/model.pt, committed to dvc.lock by `dvc commit`
    (not trained), registered as version v0.1.0 (a GTO tag) and pushed to a local DVC remote; then its own cache and
    copy are deleted, so that `dvc artifacts get` from a bare clone (a git server) can only fetch it from the remote."""
    repo = make_repo(tmp_path / "repo", {})
    stand_in = b"not a real model: " + os.urandom(1024)
    outputs = {"models/model.pt": stand_in, "dvclive/metrics.json": b"{}", "dvclive/plots/images/val_grid.png": b"",
               "dvclive/plots/metrics/train_loss.tsv": b"", "data/shards/shard-00000.npz": b""}  # train's deps and outs
    for name, data in outputs.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(data)
    dvc("commit", "--force", "train", cwd=repo)
    dvc("remote", "add", "--default", "store", str(tmp_path / "remote"), cwd=repo)
    commit(repo, "a model")
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    get = [sys.executable, "-m", "dvc", "artifacts", "get"]
    unregistered = run([*get, str(repo), ARTIFACT], deploy, ok=False)
    assert unregistered.returncode != 0 and f"Unable to find artifact '{ARTIFACT}'" in unregistered.stderr

    run(["git", "tag", "--annotate", f"{ARTIFACT}@v0.1.0", "--message", "registered"], repo)
    dvc("push", "models/model.pt", cwd=repo)
    shutil.rmtree(repo / ".dvc" / "cache")
    (repo / "models/model.pt").unlink()
    server = tmp_path / "server.git"
    run(["git", "clone", "--quiet", "--bare", str(repo), str(server)], tmp_path)
    assert "Downloaded 1 file(s) to 'model.pt'" in dvc("artifacts", "get", str(server), ARTIFACT, cwd=deploy)
    assert (deploy / "model.pt").read_bytes() == stand_in
    dvc("artifacts", "get", str(server), ARTIFACT, "--rev", "v0.1.0", "--out", "v0.1.0.pt", cwd=deploy)
    assert (deploy / "v0.1.0.pt").read_bytes() == stand_in
