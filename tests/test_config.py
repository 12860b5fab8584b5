"""depthcore.config: the committed params.yaml builds, and every kind of mistake, of type or of range, names its dotted
key."""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from depthcore import splits
from depthcore.config import (
    Config,
    ConfigError,
    ProtocolName,
    build,
    load_config,
    per_process_batch,
)
from depthcore.metrics import PROTOCOLS
from tests.helpers import make_config, split_config

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


# (dotted overrides, the dotted key the message must start with): one case per rule, the user review's probes first
OUT_OF_RANGE = [
    ({"train.batch_size": 0}, "train.batch_size"),
    ({"train.num_workers": -3}, "train.num_workers"),
    ({"data.split.train_fraction": 1.5}, "data.split.train_fraction"),
    ({"data.shard_size": 0}, "data.shard_size"),
    ({"train.lr": -1}, "train.lr"),
    ({"train.ema_decay": 1.5}, "train.ema_decay"),
    ({"eval.protocols": ["nope"]}, "eval.protocols[0]"),
    ({"data.synthetic.num_images": 2}, "data.synthetic.num_images"),
    ({"train.checkpoint_every": 0}, "train.checkpoint_every"),
    ({"train.epochs": 0}, "train.epochs"),
    ({"train.epochs": -1}, "train.epochs"),
    ({"train.warmup_fraction": 2}, "train.warmup_fraction"),
    ({"train.grad_clip": -1}, "train.grad_clip"),
    ({"train.ema_decay": 1.0}, "train.ema_decay"),
    # every other rule
    ({"seed": -1}, "seed"),
    ({"data.seed": -1}, "data.seed"),
    ({"data.nyuv2.size": 0}, "data.nyuv2.size"),
    ({"data.nyuv2.sha256": "2d724b0c"}, "data.nyuv2.sha256"),
    ({"data.nyuv2.sha256": ""}, "data.nyuv2.sha256"),
    ({"data.densedepth.sha256": "z" * 64}, "data.densedepth.sha256"),
    ({"data.densedepth.val_fraction": 0}, "data.densedepth.val_fraction"),
    ({"data.densedepth.val_fraction": 1}, "data.densedepth.val_fraction"),
    ({"data.split.train_fraction": 0}, "data.split.train_fraction"),
    ({"data.split.val_fraction": 1.0}, "data.split.val_fraction"),
    ({"data.split.train_fraction": 0.9, "data.split.val_fraction": 0.1}, "data.split.val_fraction"),
    ({"data.split.official_val_fraction": 0}, "data.split.official_val_fraction"),
    ({"augment.flip_p": 1.5}, "augment.flip_p"),
    ({"augment.channel_swap_p": -0.1}, "augment.channel_swap_p"),
    ({"model.upsampling": "bilinear"}, "model.upsampling"),
    ({"loss.min_depth": 0}, "loss.min_depth"),
    ({"loss.max_depth": 0.1}, "loss.max_depth"),  # not above min_depth 0.1
    ({"loss.w_grad": -1}, "loss.w_grad"),
    ({"loss.w_depth": 0, "loss.w_grad": 0, "loss.w_ssim": 0}, "loss.w_depth, loss.w_grad, loss.w_ssim"),
    ({"train.global_batch_size": 0}, "train.global_batch_size"),
    ({"train.global_batch_size": 9, "train.nproc": 2}, "train.global_batch_size"),
    ({"train.lr": "nan"}, "train.lr"),
    ({"train.lr": float("inf")}, "train.lr"),
    ({"train.weight_decay": -0.01}, "train.weight_decay"),
    ({"train.warmup_fraction": 1.0}, "train.warmup_fraction"),
    ({"train.nproc": 0}, "train.nproc"),
    ({"train.num_vis": 0}, "train.num_vis"),
    ({"eval.protocols": []}, "eval.protocols"),
    ({"eval.protocols": ["report", "eigen", "report"]}, "eval.protocols"),
    ({"eval.edge_threshold": 0}, "eval.edge_threshold"),
    ({"eval.batch_size": 0}, "eval.batch_size"),
    ({"eval.num_vis": 0}, "eval.num_vis"),
    # enough images for every split: 9 at 0.8 / 0.1 -> floor(7.2) = 7 / floor(0.9) = 0 / 2
    ({"data.synthetic.num_images": 9}, "data.synthetic.num_images"),
    # NYU's 1,449 images at train_fraction 0.0005 -> floor(0.72) = 0 for training
    ({"data.source": "nyuv2", "data.split.train_fraction": 0.0005}, "data.split.train_fraction"),
    # the official split needs NYU's 1,449 images, not 600 rendered ones
    ({"data.split.method": "official"}, "data.split.method"),
    # 0.0005 of NYU's 795 official training images -> floor(0.3975 + 0.5) = 0 held out
    ({"data.source": "nyuv2", "data.split.method": "official", "data.split.official_val_fraction": 0.0005},
     "data.split.official_val_fraction"),
]


@pytest.mark.parametrize(("overrides", "key"), OUT_OF_RANGE, ids=[repr(o) for o, _ in OUT_OF_RANGE])
def test_out_of_range_value_is_refused_naming_its_dotted_key(overrides, key):
    with pytest.raises(ConfigError) as info:
        make_config(**overrides)
    message = str(info.value)
    assert message.startswith(key + ":"), message
    assert "expected" in message and "got" in message
    assert "\n" not in message


EPOCHS = "an integer >= 1 (0 only with model.init, to evaluate that model as it is)"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train.batch_size": 0}, "train.batch_size: expected an integer >= 1, got 0"),
        ({"train.num_workers": -3}, "train.num_workers: expected an integer >= 0 or auto, got -3"),
        ({"train.global_batch_size": 0}, "train.global_batch_size: expected an integer >= 1 or null, got 0"),
        ({"train.ema_decay": 1}, "train.ema_decay: expected a number in [0, 1), got 1.0"),
        ({"augment.flip_p": 2}, "augment.flip_p: expected a number in [0, 1], got 2.0"),
        ({"data.split.train_fraction": 1.5}, "data.split.train_fraction: expected a number in (0, 1), got 1.5"),
        ({"train.lr": -1}, "train.lr: expected a number > 0, got -1.0"),
        ({"train.grad_clip": -1}, "train.grad_clip: expected a number >= 0, got -1.0"),
        ({"train.lr": float("nan")}, "train.lr: expected a finite number, got nan (float)"),
        ({"train.lr": "-inf"}, "train.lr: expected a finite number, got '-inf' (str)"),
        ({"eval.protocols": ["nope"]}, "eval.protocols[0]: expected one of report | densedepth | eigen, got 'nope'"),
        ({"train.epochs": -1}, f"train.epochs: expected {EPOCHS}, got -1"),
        ({"train.epochs": 0}, f"train.epochs: expected {EPOCHS}, got 0"),
        ({"loss.w_depth": 0, "loss.w_grad": 0, "loss.w_ssim": 0},
         "loss.w_depth, loss.w_grad, loss.w_ssim: expected at least one > 0, got all three 0"),
        ({"data.synthetic.num_images": 2},
         "data.synthetic.num_images: expected at least one image in every split, got 1 train / 0 val / 1 test of 2"),
    ],
)
def test_refusal_says_what_was_expected_and_what_was_found(overrides, message):
    with pytest.raises(ConfigError) as info:
        make_config(**overrides)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    "overrides",
    [
        {"train.num_workers": 0},
        {"train.num_workers": "auto"},
        {"train.nproc": "auto"},
        {"train.nproc": 2, "train.global_batch_size": 16},
        {"train.nproc": "auto", "train.global_batch_size": 7},  # checked where the number of processes is known
        {"train.ema_decay": 0.0, "train.warmup_fraction": 0.0, "train.grad_clip": 0.0, "train.weight_decay": 0.0},
        {"train.ema_decay": 0.999, "train.warmup_fraction": 0.99},
        {"augment.flip_p": 0.0, "augment.channel_swap_p": 1},
        {"loss.w_depth": 0, "loss.w_grad": 0, "loss.w_ssim": 1},
        {"eval.protocols": ["eigen"]},
        {"data.synthetic.num_images": 10},  # 8 / 1 / 1
        {"data.synthetic.num_images": 1449, "data.split.method": "official"},
        {"data.source": "densedepth", "data.synthetic.num_images": 1},  # the zip brings its own splits
        {"data.nyuv2.sha256": "2D724B0C0AB358AA1CE5DF855E5BD14A2279AB7202EFE22F32A30D612DCB86AA"},
        {"model.upsampling": "half_pixel"},
    ],
    ids=repr,
)
def test_values_at_the_edges_of_their_range_are_accepted(overrides):
    config = make_config(**overrides)
    for dotted, value in overrides.items():
        node = config
        for name in dotted.split("."):
            node = getattr(node, name)
        assert node == value


def test_epochs_zero_is_accepted_with_a_model_to_evaluate():
    config = make_config(**{"train.epochs": 0, "model.init": "init/nyu.h5"})
    assert (config.train.epochs, config.model.init) == (0, "init/nyu.h5")


@pytest.mark.parametrize("outside", ["/data/nyu.h5", "models/nyu.h5", "init/../nyu.h5", "init"])
def test_model_init_names_a_file_in_the_folder_dvc_hashes(outside):
    with pytest.raises(ConfigError, match=r'^model.init: expected "" or a file under init/ \(the folder DVC hashes'):
        make_config(**{"model.init": outside})


@pytest.mark.parametrize("num_images", range(1, 41))
@pytest.mark.parametrize(("train_fraction", "val_fraction"), [(0.8, 0.1), (0.5, 0.25), (0.29, 0.3), (0.6, 0.39)])
def test_enough_images_agrees_with_the_split_itself(num_images, train_fraction, val_fraction):
    """The config accepts a synthetic random split exactly when make_splits can make it."""
    overrides = {"data.synthetic.num_images": num_images, "data.split.train_fraction": train_fraction,
                 "data.split.val_fraction": val_fraction}
    try:
        split = split_config("random", train_fraction=train_fraction, val_fraction=val_fraction)
        splits.make_splits(num_images, split, 0)
    except ValueError:
        with pytest.raises(ConfigError, match=r"^data\.synthetic\.num_images: expected at least one image"):
            make_config(**overrides)
    else:
        make_config(**overrides)


def test_global_batch_size_null_means_batch_size_in_every_process():
    train = make_config(**{"train.batch_size": 5}).train
    assert train.global_batch_size is None
    assert [per_process_batch(train, world) for world in (1, 2, 3)] == [5, 5, 5]


def test_global_batch_size_is_split_evenly_over_the_processes():
    train = make_config(**{"train.global_batch_size": 24}).train
    assert [per_process_batch(train, world) for world in (1, 2, 3, 4, 8)] == [24, 12, 8, 6, 3]


def test_global_batch_size_that_does_not_divide_is_refused():
    train = make_config(**{"train.global_batch_size": 12}).train
    with pytest.raises(ConfigError) as info:
        per_process_batch(train, 8)
    assert str(info.value) == "train.global_batch_size: expected a multiple of the 8 processes, got 12"


def test_global_batch_size_is_read_from_yaml_null():
    raw = raw_params()
    raw["train"]["global_batch_size"] = yaml.safe_load("g: null")["g"]
    assert build(Config, raw).train.global_batch_size is None
    raw["train"]["global_batch_size"] = "16"
    with pytest.raises(ConfigError, match=r"^train\.global_batch_size: expected an integer or null, got '16'"):
        build(Config, raw)


def test_load_config_refuses_the_file_before_anything_else(tmp_path):
    """What `dvc exp run -S train.checkpoint_every=0` writes is refused when the file is read."""
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.read_text().replace("checkpoint_every: 1 ", "checkpoint_every: 0 "))
    with pytest.raises(ConfigError, match=r"^train\.checkpoint_every: expected an integer >= 1, got 0$"):
        load_config(params)


@pytest.mark.parametrize(
    ("fraction", "held_out"),
    [(0.0005, 0), (0.0007, 1), (0.1, 80), (0.9993, 794), (0.9994, 795)],  # floor(fraction * 795 + 0.5)
)
def test_official_validation_share_agrees_with_the_split_itself(fraction, held_out):
    """NYU's 795 official training images: the config accepts a validation share exactly when make_splits can make
    that split, which is when it holds out 1 to 794 of them."""
    overrides = {"data.source": "nyuv2", "data.split.method": "official",
                 "data.split.official_val_fraction": fraction}
    official_file = PARAMS.parent / raw_params()["data"]["split"]["official_file"]
    official = split_config("official", official_file=official_file, official_val_fraction=fraction)
    if held_out in (0, 795):
        with pytest.raises(ValueError):
            splits.make_splits(1449, official, 0)
        refusal = rf"^data\.split\.official_val_fraction: .*, got {fraction} \(holds out {held_out}\)$"
        with pytest.raises(ConfigError, match=refusal):
            make_config(**overrides)
    else:
        parts = splits.make_splits(1449, official, 0)
        assert len(parts["val"]) == held_out
        assert make_config(**overrides).data.split.official_val_fraction == fraction


def test_the_protocol_names_are_the_protocol_tables():
    assert typing.get_args(ProtocolName) == tuple(PROTOCOLS)


def test_config_loads_without_torch_or_numpy():
    """Every stage reads params first: refusing them must not wait for torch, numpy or h5py to import."""
    code = "import sys, depthcore.config; print(sorted({'torch', 'numpy', 'h5py', 'scipy'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
