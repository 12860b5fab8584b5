"""depthcore.model: Table 1 shapes, both downsample modes, both upsampling modes by hand, BatchNorm epsilon, frozen
encoder, pretrained loading and its error."""

from __future__ import annotations

import re
import socket

import pytest
import torch
from torchvision.models import densenet169

import depthcore.model as model_module
from depthcore.files import sha256_file
from depthcore.model import (
    DenseDepth,
    ModelSpec,
    PretrainedWeightsUnavailable,
    UpBlock,
    output_stride,
    pretrained_weights_path,
)
from tests.helpers import make_config

# Report Table 1 at a 480x640 input with downsampling: (channels, height, width).
TABLE1 = {
    "DOWNSAMPLE": (3, 120, 160),
    "CONV1": (64, 60, 80),
    "POOL1": (64, 30, 40),
    "POOL2": (128, 15, 20),
    "POOL3": (256, 7, 10),
    "CONV2": (1664, 3, 5),
    "CONCAT1": (1920, 7, 10),
    "UP1": (832, 7, 10),
    "CONCAT2": (960, 15, 20),
    "UP2": (416, 15, 20),
    "CONCAT3": (480, 30, 40),
    "UP3": (208, 30, 40),
    "CONCAT4": (272, 60, 80),
    "UP4": (104, 60, 80),
    "CONV3": (1, 60, 80),
}
# The half decoder of the authors' Keras code (decode_filters = 1664 / 2, then / 2 per block), by hand: every map
# after CONV2 has half Table 1's channels, and each concatenation adds the same skip.
HALF = {
    **TABLE1,
    "CONV2": (832, 3, 5),
    "CONCAT1": (832 + 256, 7, 10),
    "UP1": (416, 7, 10),
    "CONCAT2": (416 + 128, 15, 20),
    "UP2": (208, 15, 20),
    "CONCAT3": (208 + 64, 30, 40),
    "UP3": (104, 30, 40),
    "CONCAT4": (104 + 64, 60, 80),
    "UP4": (52, 60, 80),
}


@pytest.fixture(scope="module")
def model() -> DenseDepth:
    torch.manual_seed(0)
    return DenseDepth(downsample=True).eval()


@pytest.mark.parametrize("decoder, table", [("full", TABLE1), ("half", HALF)])
def test_every_table1_shape_at_480x640(decoder, table):
    model = DenseDepth(downsample=True, decoder=decoder).eval()
    seen = {}

    def output_hook(name):
        return lambda module, inputs, output: seen.__setitem__(name, tuple(output.shape[1:]))

    def input_hook(name):
        return lambda module, inputs: seen.__setitem__(name, tuple(inputs[0].shape[1:]))

    enc = model.encoder
    handles = [
        enc.conv0.register_forward_pre_hook(input_hook("DOWNSAMPLE")),
        enc.relu0.register_forward_hook(output_hook("CONV1")),
        enc.pool0.register_forward_hook(output_hook("POOL1")),
        enc.transition1.register_forward_hook(output_hook("POOL2")),
        enc.transition2.register_forward_hook(output_hook("POOL3")),
        model.conv2.register_forward_hook(output_hook("CONV2")),
        model.conv3.register_forward_hook(output_hook("CONV3")),
    ]
    for i, block in enumerate(model.up, start=1):
        handles.append(block.conv_a.register_forward_pre_hook(input_hook(f"CONCAT{i}")))
        handles.append(block.register_forward_hook(output_hook(f"UP{i}")))
    with torch.no_grad():
        out = model(torch.rand(1, 3, 480, 640))
    for handle in handles:
        handle.remove()
    assert seen == table
    assert out.shape == (1, 1, 60, 80)


def test_rejects_an_unknown_decoder():
    with pytest.raises(ValueError, match=re.escape("expected decoder to be one of full | half, got 'wide'")):
        DenseDepth(decoder="wide")


def test_output_is_half_resolution_without_downsampling():
    model = DenseDepth(downsample=False).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 96, 128))
    assert out.shape == (2, 1, 48, 64)


# A (2, 3) map x[r, c] = 3r + c upsampled to (4, 6). Bilinear interpolation of a linear map is exact, so output (i, j)
# is 3 * row + col at the source position it samples. Corners: row i (2 - 1) / (4 - 1) = i / 3, col j (3 - 1) / (6 - 1)
# = 0.4 j. Half pixel: (i + 0.5) * 2 / 4 - 0.5 = i / 2 - 0.25, col j / 2 - 0.25, each clamped to the map
# ([0, 1] and [0, 2]): rows 0, 0.25, 0.75, 1 and cols 0, 0.25, 0.75, 1.25, 1.75, 2.
UPSAMPLED_BY_HAND = {
    "corners": [
        [0.0, 0.4, 0.8, 1.2, 1.6, 2.0],
        [1.0, 1.4, 1.8, 2.2, 2.6, 3.0],
        [2.0, 2.4, 2.8, 3.2, 3.6, 4.0],
        [3.0, 3.4, 3.8, 4.2, 4.6, 5.0],
    ],
    "half_pixel": [
        [0.0, 0.25, 0.75, 1.25, 1.75, 2.0],
        [0.75, 1.0, 1.5, 2.0, 2.5, 2.75],
        [2.25, 2.5, 3.0, 3.5, 4.0, 4.25],
        [3.0, 3.25, 3.75, 4.25, 4.75, 5.0],
    ],
}


@pytest.mark.parametrize("upsampling", UPSAMPLED_BY_HAND)
def test_up_block_upsamples_as_computed_by_hand(upsampling):
    block = UpBlock(1, 1, 1, upsampling=upsampling)
    seen = []
    block.conv_a.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))
    x = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]).view(1, 1, 2, 3)
    skip = torch.full((1, 1, 4, 6), 7.0)
    with torch.no_grad():
        block(x, skip)
    upsampled, concatenated = seen[0][0, 0], seen[0][0, 1]  # (4, 6) each: the upsampled x, then the skip
    assert torch.allclose(upsampled, torch.tensor(UPSAMPLED_BY_HAND[upsampling]), atol=1e-6)
    assert torch.equal(concatenated, skip[0, 0])


def test_upsampling_and_batchnorm_epsilon_reach_every_layer(model):
    """Defaults: corners and torchvision's 1e-5; both settings reach every block and every BatchNorm, and a
    DenseNet-169 has 169 of them: norm0, two in each of 6 + 12 + 32 + 32 dense layers, three transitions, norm5."""
    keras_like = DenseDepth(downsample=False, upsampling="half_pixel", bn_eps=1.001e-5)
    for built, align_corners, eps in ((model, True, 1e-5), (keras_like, False, 1.001e-5)):
        assert [block.align_corners for block in built.up] == [align_corners] * 4
        norms = [m.eps for m in built.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert norms == [eps] * (1 + 2 * (6 + 12 + 32 + 32) + 3 + 1)


def test_rejects_an_unknown_upsampling_or_a_bad_epsilon():
    with pytest.raises(ValueError, match=re.escape("expected upsampling to be one of corners | half_pixel, got 'x'")):
        DenseDepth(upsampling="x")
    with pytest.raises(ValueError, match=re.escape("expected bn_eps to be a number in (0.0, inf), got 0.0")):
        DenseDepth(bn_eps=0)


def test_rejects_input_that_is_not_rgb_batch(model):
    with pytest.raises(ValueError, match=r"expected an input of shape \(B, 3, H, W\), got \(1, 1, 64, 64\)"):
        model(torch.rand(1, 1, 64, 64))


def _bn_stats(module: torch.nn.Module) -> list[torch.Tensor]:
    return [m.running_mean.clone() for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def _one_step(model: DenseDepth) -> None:
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss = model(torch.rand(2, 3, 256, 320)).abs().mean()
    loss.backward()
    optimizer.step()


def test_frozen_encoder_gets_no_gradient_and_builds_no_graph():
    model = DenseDepth(freeze_encoder=True)
    skips = []
    model.encoder.transition1.register_forward_hook(lambda m, i, o: skips.append(o))
    model.train()
    model(torch.rand(2, 3, 256, 320)).mean().backward()
    assert skips[0].grad_fn is None and not skips[0].requires_grad
    assert all(p.grad is None for p in model.encoder.parameters())
    decoder = [model.conv2, model.conv3, *model.up]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for m in decoder for p in m.parameters())


def test_unfrozen_encoder_gets_gradient():
    model = DenseDepth(freeze_encoder=False)
    model(torch.rand(2, 3, 256, 320)).mean().backward()
    assert model.encoder.conv0.weight.grad is not None
    assert model.encoder.conv0.weight.grad.abs().sum() > 0


def test_frozen_batchnorm_statistics_do_not_move():
    frozen = DenseDepth(freeze_encoder=True)
    before = _bn_stats(frozen.encoder)
    _one_step(frozen)
    assert not frozen.encoder.training
    assert all(torch.equal(a, b) for a, b in zip(before, _bn_stats(frozen.encoder)))
    # The same step on a trainable encoder does move them, so the check above can fail.
    trainable = DenseDepth(freeze_encoder=False)
    before = _bn_stats(trainable.encoder)
    _one_step(trainable)
    assert not all(torch.equal(a, b) for a, b in zip(before, _bn_stats(trainable.encoder)))


def _legacy_name(key: str) -> str:
    """Rename 'denselayerN.norm1.weight' to the ImageNet file's old 'denselayerN.norm.1.weight'."""
    for part in ("norm", "relu", "conv"):
        for idx in ("1", "2"):
            key = key.replace(f".{part}{idx}.", f".{part}.{idx}.")
    return key


def _fake_weights_file(tmp_path, monkeypatch) -> dict:
    """A random DenseNet-169 state in the cache under the ImageNet file's name (old key names); returns the state."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(123)
    reference = densenet169(weights=None).state_dict()
    path = pretrained_weights_path()
    assert path.name == "densenet169-b2777c0a.pth" and path.parent == tmp_path / "hub" / "checkpoints"
    path.parent.mkdir(parents=True)
    torch.save({_legacy_name(k): v for k, v in reference.items()}, path)
    return reference


def test_pretrained_loads_exactly_the_cached_file(tmp_path, monkeypatch):
    reference = _fake_weights_file(tmp_path, monkeypatch)
    # the real file's SHA-256 begins with b2777c0a; this stand-in passes the same check with its own prefix
    monkeypatch.setattr(model_module, "PRETRAINED_SHA256_PREFIX", sha256_file(pretrained_weights_path())[:8])
    torch.manual_seed(999)  # a different random init, so equality below comes from the file
    model = DenseDepth(pretrained=True)
    loaded = model.encoder.state_dict()
    expected = {k.removeprefix("features."): v for k, v in reference.items() if k.startswith("features.")}
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_missing_weights_without_network_says_what_to_do(tmp_path, monkeypatch):
    with socket.socket() as sock:  # a local port with nothing listening: every proxied connection is refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        DenseDepth(pretrained=True)
    message = str(info.value)
    assert "densenet169-b2777c0a.pth" in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "model.pretrained=false" in message
    assert not pretrained_weights_path().exists()


def test_weights_file_with_another_hash_is_refused(tmp_path, monkeypatch):
    _fake_weights_file(tmp_path, monkeypatch)
    assert model_module.PRETRAINED_SHA256_PREFIX == "b2777c0a"  # from torchvision's file name
    with pytest.raises(PretrainedWeightsUnavailable, match=r"densenet169-b2777c0a.pth is not torchvision's .* SHA-256 "
                       r"is [0-9a-f]{64}, expected one beginning with b2777c0a\. Delete it"):
        DenseDepth(pretrained=True)


def test_imagenet_normalisation_only_with_pretrained_weights(tmp_path, monkeypatch):
    """The buffers exist (and are saved) only for ImageNet weights; the input is (x - mean) / std per channel."""
    assert DenseDepth().input_mean is None and "input_mean" not in DenseDepth().state_dict()
    _fake_weights_file(tmp_path, monkeypatch)
    monkeypatch.setattr(model_module, "PRETRAINED_SHA256_PREFIX", sha256_file(pretrained_weights_path())[:8])
    for freeze in (False, True):
        model = DenseDepth(pretrained=True, freeze_encoder=freeze)
        assert torch.allclose(model.input_mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
        assert torch.allclose(model.input_std.flatten(), torch.tensor([0.229, 0.224, 0.225]))
        assert {"input_mean", "input_std"} <= set(model.state_dict())
    spec = ModelSpec.from_config(make_config(**{"model.pretrained": True}))
    rebuilt = DenseDepth.from_spec(spec)  # a saved pretrained model, rebuilt without the ImageNet file
    seen = []
    rebuilt.encoder.conv0.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))
    x = torch.full((1, 3, 256, 256), 0.5)
    with torch.no_grad():
        rebuilt.eval()(x)
    expected = (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])  # by hand
    assert torch.allclose(seen[0][0, :, 0, 0], expected, atol=1e-6)


def test_output_stride():
    assert output_stride(True) == 8 and output_stride(False) == 2


def test_the_last_convolution_runs_in_fp32_under_bf16_autocast():
    """bf16 would round the output to 0.4 % steps (8 bits of mantissa); CONV3 sees the decoder's features in fp32."""
    torch.manual_seed(0)
    model = DenseDepth(downsample=True).eval()
    features = []
    model.conv3.register_forward_pre_hook(lambda module, inputs: features.append(inputs[0]))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.rand(1, 3, 128, 128))
    assert out.dtype == torch.float32 and features[0].dtype == torch.float32
    expected = torch.nn.functional.conv2d(features[0], model.conv3.weight, model.conv3.bias, padding=1)  # by hand
    assert torch.equal(out, expected)
