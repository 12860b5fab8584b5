"""depthcore.inference: pixel-centre upsampling, the model file and its refusals, and the predictor's metres."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from depthcore.config import as_dict
from depthcore.device import resolve_runtime
from depthcore.inference import MODEL_FORMAT, ModelFileError, Predictor, load_model, save_model, upsample
from depthcore.metrics import depth_errors
from depthcore.model import DenseDepth, ModelSpec
from tests.helpers import make_config

CPU = resolve_runtime("cpu", "fp32", False)


def test_a_perfect_low_resolution_ramp_scores_rel_under_half_a_percent():
    """A smooth depth ramp, area-pooled to 1/8 (a perfect 60x80 prediction) and upsampled back, is within
    rel 0.005 of the truth; corner-aligned upsampling, which shifts pixels by up to 3.5, is not."""
    rows = torch.linspace(0, 1, 480)[:, None]
    cols = torch.linspace(0, 1, 640)[None, :]
    ramp = (1.0 + 4.0 * rows + 3.0 * cols**2)[None, None]  # (1, 1, 480, 640), 1 m to 8 m, curved across
    small = F.adaptive_avg_pool2d(ramp, (60, 80))
    assert depth_errors(upsample(small, (480, 640)), ramp)["rel"] < 0.005
    shifted = F.interpolate(small, size=(480, 640), mode="bilinear", align_corners=True)
    assert depth_errors(shifted, ramp)["rel"] > depth_errors(upsample(small, (480, 640)), ramp)["rel"]


def _saved(tmp_path, **overrides):
    config = make_config(**overrides)
    torch.manual_seed(0)
    spec = ModelSpec.from_config(config)
    model = DenseDepth.from_spec(spec)
    save_model(tmp_path / "model.pt", model, spec, config=config, epochs=3, origin="a test")
    return tmp_path / "model.pt", model, config


def test_model_file_round_trip(tmp_path):
    path, model, config = _saved(tmp_path, **{"model.upsampling": "half_pixel"})
    loaded, spec, record = load_model(path, expect=config)
    assert record["config"] == as_dict(config) and record["epochs"] == 3 and record["origin"] == "a test"
    assert spec == ModelSpec.from_config(config) and spec.upsampling == "half_pixel" and not loaded.training
    assert not loaded.up[0].align_corners  # the structure comes from the spec, not from defaults
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert torch.load(path, weights_only=True)["format"] == MODEL_FORMAT


def test_a_first_format_file_loads_with_the_spec_its_config_implies(tmp_path):
    """Files written before the model spec existed: a config and weights; the oldest have no model.decoder (the
    full decoder was the only one)."""
    config = as_dict(make_config(**{"model.decoder": "full"}))
    del config["model"]["decoder"], config["model"]["upsampling"], config["model"]["init"]
    torch.manual_seed(0)
    model = DenseDepth(True, decoder="full")
    torch.save({"format": "depthcore-model-v1", "model": model.state_dict(), "config": config, "epochs": 2},
               tmp_path / "old.pt")
    loaded, spec, _ = load_model(tmp_path / "old.pt")
    assert (spec.decoder, spec.upsampling, spec.downsample, spec.bn_eps) == ("full", "corners", True, 1e-5)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_model_trained_under_other_settings_is_refused_naming_both_values(tmp_path):
    path, _, _ = _saved(tmp_path)
    with pytest.raises(ModelFileError, match=r"loss.target: trained with 'depthnorm', params.yaml says 'metres'"):
        load_model(path, expect=make_config(**{"loss.target": "metres"}))
    with pytest.raises(ModelFileError, match=r"loss.max_depth: trained with 10.0, params.yaml says 8.0.*dvc repro"):
        load_model(path, expect=make_config(**{"loss.max_depth": 8.0}))
    with pytest.raises(ModelFileError, match=r"model.downsample: trained with True, params.yaml says False"):
        load_model(path, expect=make_config(**{"model.downsample": False}))
    load_model(path, expect=make_config(**{"loss.w_ssim": 0.5}))  # a loss weight does not change what outputs mean


def test_missing_and_foreign_model_files_are_refused(tmp_path):
    with pytest.raises(ModelFileError, match=r"no model file at .*missing.pt: run `dvc repro`.*--model"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not a model")
    with pytest.raises(ModelFileError, match=r"text.pt is not a depthcore model file \(not a readable torch archive"):
        load_model(tmp_path / "text.pt")
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ModelFileError) as refused:
        load_model(tmp_path / "random.pt")
    assert "weights_only" not in str(refused.value) and "\n" not in str(refused.value)  # no torch advice, one line
    (tmp_path / "words.pt").write_text("this is not a model\n" * 10)
    with pytest.raises(ModelFileError, match=r"words.pt is not a depthcore model file \(not a readable torch archive"):
        load_model(tmp_path / "words.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"empty.pt is empty \(0 bytes\)"):
        load_model(tmp_path / "empty.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match=r"other.pt is not a depthcore model file: expected format"):
        load_model(tmp_path / "other.pt")


class Constant(torch.nn.Module):
    """(B, 3, H, W) -> (B, 1, H/8, W/8) filled with `value` (a DepthNorm target)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1, x.shape[2] // 8, x.shape[3] // 8), self.value)


def test_predictor_reads_targets_back_as_metres_at_the_input_size():
    loss = ModelSpec.from_config(make_config(**{"loss.target": "depthnorm", "loss.max_depth": 10.0}))
    rgb = torch.randint(0, 256, (2, 3, 64, 96), dtype=torch.uint8)
    depth = Predictor(Constant(4.0), CPU, loss)(rgb)
    assert depth.shape == (2, 1, 64, 96) and depth.device.type == "cpu"
    assert torch.allclose(depth, torch.full_like(depth, 10.0 / 4.0))  # DepthNorm: 10 m / 4 = 2.5 m
    clamped = Predictor(Constant(0.01), CPU, loss)(rgb)  # below the target range: the far clamp, 10 m
    assert torch.allclose(clamped, torch.full_like(clamped, 10.0))
