"""depthcore.config: the committed params.yaml builds, and every kind of mistake names its dotted key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from depthcore.config import Config, ConfigError, build, load_config

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def raw_params() -> dict:
    return yaml.safe_load(PARAMS.read_text())


def test_committed_params_build():
    config = load_config(PARAMS)
    assert isinstance(config, Config)
    assert config.data.source == "synthetic"
    assert config.model.downsample is True
    assert config.train.batch_size == 8


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("model", "downsample", "maybe", "model.downsample: expected a boolean"),
        ("train", "epochs", 2.5, "train.epochs: expected an integer"),
        ("train", "epochs", True, "train.epochs: expected an integer"),
        ("data", "source", "imagenet", "data.source: expected one of synthetic | nyuv2"),
        ("loss", "w_ssim", "heavy", "loss.w_ssim: expected a number"),
        ("eval", "protocols", "report", "eval.protocols: expected a list"),
    ],
)
def test_ill_typed_value_names_key_expected_and_found(section, key, value, expected):
    raw = raw_params()
    raw[section][key] = value
    with pytest.raises(ConfigError) as info:
        build(Config, raw)
    assert expected in str(info.value)
    assert repr(value) in str(info.value)


def test_unknown_key_is_named_with_its_path():
    raw = raw_params()
    raw["data"]["split"]["colour"] = 1
    with pytest.raises(ConfigError, match=r"data\.split\.colour: unknown config key"):
        build(Config, raw)


def test_missing_key_is_named_with_its_path():
    raw = raw_params()
    del raw["train"]["lr"]
    with pytest.raises(ConfigError, match=r"train\.lr: missing config key"):
        build(Config, raw)


def test_section_that_is_not_a_mapping():
    raw = raw_params()
    raw["model"] = "densenet"
    with pytest.raises(ConfigError, match=r"model: expected a mapping"):
        build(Config, raw)


def test_exponent_without_dot_is_read_as_a_number():
    # PyYAML reads `1e-4` as a string; `dvc exp run -S train.lr=1e-4` writes exactly that.
    raw = raw_params()
    raw["train"]["lr"] = yaml.safe_load("lr: 1e-4")["lr"]
    assert isinstance(raw["train"]["lr"], str)
    assert build(Config, raw).train.lr == pytest.approx(0.0001)


def test_missing_file_says_where_it_looked(tmp_path):
    with pytest.raises(ConfigError, match="params file"):
        load_config(tmp_path / "params.yaml")
