from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_msssim import ssim
from torch.overrides import TorchFunctionMode

import depthcore.loss as loss_module
from depthcore.loss import (
    DepthLoss,
    depth_l1,
    gaussian_window,
    gradient_loss,
    ssim_loss,
    target_range,
    to_metres,
    to_target,
)


def _map(values) -> torch.Tensor:
    """Nested list (H, W) -> (1, 1, H, W) float32."""
    return torch.tensor(values, dtype=torch.float32)[None, None]


def _const(value: float, size: int = 16) -> torch.Tensor:
    return torch.full((1, 1, size, size), value)


# --- target space ------------------------------------------------------------------------------------------------


def test_depthnorm_hand_values():
    # The paper: 1000 cm / depth in cm, clamped to [10, 1000] cm. 10 m -> 1, 2 m -> 5, 0.1 m -> 100; 0.05 m and 0 m
    # clamp to 0.1 m -> 100, 20 m clamps to 10 m -> 1.
    depth = torch.tensor([10.0, 2.0, 0.1, 0.05, 0.0, 20.0])
    expected = torch.tensor([1.0, 5.0, 100.0, 100.0, 100.0, 1.0])
    torch.testing.assert_close(to_target(depth, "depthnorm"), expected)
    torch.testing.assert_close(to_target(depth, "metres"), torch.tensor([10.0, 2.0, 0.1, 0.1, 0.1, 10.0]))


@pytest.mark.parametrize("target", ["depthnorm", "metres"])
def test_round_trip_to_metres(target):
    depth = torch.linspace(0.1, 10.0, 101, dtype=torch.float64)
    torch.testing.assert_close(to_metres(to_target(depth, target), target), depth)


def test_to_metres_is_safe_on_raw_outputs():
    # depthnorm targets live in [1, 100]: 0 and -5 clamp to 1 -> 10 m; 1e6 clamps to 100 -> 0.1 m; 4 -> 2.5 m.
    raw = torch.tensor([0.0, -5.0, 1e6, 4.0])
    torch.testing.assert_close(to_metres(raw, "depthnorm"), torch.tensor([10.0, 10.0, 0.1, 2.5]))
    torch.testing.assert_close(to_metres(raw, "metres"), torch.tensor([0.1, 0.1, 10.0, 4.0]))
    assert target_range("depthnorm") == (1.0, 100.0)
    assert target_range("metres", 0.5, 8.0) == (0.5, 8.0)


def test_bad_target_and_range():
    with pytest.raises(ValueError, match=r"expected target to be one of depthnorm \| metres, got 'disparity'"):
        to_target(torch.ones(1), "disparity")
    with pytest.raises(ValueError, match=r"expected 0 < min_depth < max_depth, got min_depth=10"):
        to_metres(torch.ones(1), "metres", min_depth=10.0, max_depth=1.0)


# --- the three terms -----------------------------------------------------------------------------------------------


def test_depth_l1_hand_value():
    # |1| + |2| + |3| + |4| over 4 pixels = 2.5
    assert depth_l1(_map([[1, 2], [3, 4]]), _map([[0, 0], [0, 0]])).item() == pytest.approx(2.5)


def test_gradient_loss_hand_values():
    # [[0, 1], [0, 1]]: horizontal differences [[1], [1]] (mean 1), vertical [[0, 0]] (mean 0) -> 1.
    assert gradient_loss(_map([[0, 1], [0, 1]]), _map([[0, 0], [0, 0]])).item() == pytest.approx(1.0)
    # [[0, 0], [2, 2]]: vertical differences [[2, 2]] (mean 2), horizontal 0 -> 2.
    assert gradient_loss(_map([[0, 0], [2, 2]]), _map([[0, 0], [0, 0]])).item() == pytest.approx(2.0)
    # 3x3 [[0, 1, 3], ...] against zeros: horizontal |1|, |2| per row -> mean 1.5; vertical 0 -> 1.5.
    assert gradient_loss(_map([[0, 1, 3]] * 3), _map([[0, 0, 0]] * 3)).item() == pytest.approx(1.5)
    # A constant offset has no gradient.
    x = torch.rand(2, 1, 5, 7)
    assert gradient_loss(x + 3.0, x).item() == pytest.approx(0.0, abs=1e-6)


def test_ssim_loss_hand_value_on_constant_maps():
    # Constant maps a, b: sigma = 0, so SSIM = (2ab + C1) / (a^2 + b^2 + C1) * C2 / C2, C1 = (0.01 * L)^2.
    for data_range in (10.0, 100.0):
        c1 = (0.01 * data_range) ** 2
        ssim = (2 * 2 * 4 + c1) / (2**2 + 4**2 + c1)
        value = ssim_loss(_const(2.0), _const(4.0), data_range).item()
        assert value == pytest.approx((1 - ssim) / 2, rel=1e-5)
    x = torch.rand(2, 1, 16, 16) * 10
    assert ssim_loss(x, x, 10.0).item() == pytest.approx(0.0, abs=1e-6)


def test_gaussian_window_hand_values():
    # w_k proportional to exp(-(k - 5)^2 / (2 * 1.5^2)), k = 0..10, summing to 1; computed here in float64.
    expected = [math.exp(-((k - 5) ** 2) / 4.5) for k in range(11)]
    expected = torch.tensor([w / sum(expected) for w in expected], dtype=torch.float32)
    window = gaussian_window()
    assert window.shape == (1, 1, 1, 11) and window.dtype == torch.float32
    torch.testing.assert_close(window.flatten(), expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("target", ["depthnorm", "metres"])
def test_ssim_with_the_kept_window_is_pytorch_msssims_default_to_the_bit(target):
    """The loss with its window made once equals, bit for bit, pytorch_msssim building its own window each call."""
    generator = torch.Generator().manual_seed(3)
    gt = 0.5 + 9.0 * torch.rand(4, 1, 48, 64, generator=generator)  # metres, at twice pred's size
    pred = to_target(0.5 + 9.0 * torch.rand(4, 1, 24, 32, generator=generator), target)
    loss = DepthLoss(target=target)
    total, parts = loss(pred, gt)
    small = to_target(torch.nn.functional.adaptive_avg_pool2d(gt, (24, 32)), target)
    data_range = target_range(target)[1]
    default = ((1 - ssim(pred, small, data_range=data_range, size_average=True)) / 2).clamp(0, 1)
    assert torch.equal(parts["ssim"], default)
    assert torch.equal(ssim_loss(pred, small, data_range, gaussian_window()), ssim_loss(pred, small, data_range))
    old_total = loss.w_depth * depth_l1(pred, small) + loss.w_grad * gradient_loss(pred, small) + loss.w_ssim * default
    assert torch.equal(total, old_total)


class FunctionNames(TorchFunctionMode):
    """Records the name of every torch function called inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


def test_the_ssim_window_is_made_once_and_kept_out_of_the_state_dict(monkeypatch):
    """Each call smooths with the module's own window (moved with it by .to(device)), builds no new one (a CPU tensor
    copied to the device every step), and old state dicts, without the window, still load."""
    loss = DepthLoss()
    windows = []

    def recording_ssim(*args, **kwargs):
        windows.append(kwargs.get("win"))
        return ssim(*args, **kwargs)

    monkeypatch.setattr(loss_module, "ssim", recording_ssim)
    gt = 1.0 + 8.0 * torch.rand(2, 1, 32, 32)
    pred = 1.0 + 99.0 * torch.rand(2, 1, 16, 16)
    with FunctionNames() as calls:
        for _ in range(2):
            loss(pred, gt)
    assert len(windows) == 2 and all(window is loss.ssim_window for window in windows)
    assert "conv2d" in calls.names  # the recorder sees the smoothing...
    assert "arange" not in calls.names and "exp" not in calls.names  # ...but no Gaussian built per call
    assert "ssim_window" in dict(loss.named_buffers()) and loss.state_dict() == {}
    loss.load_state_dict({})


def test_terms_reject_bad_shapes():
    with pytest.raises(ValueError, match=r"expected pred of shape \(B, 1, H, W\), got \(1, 3, 4, 4\)"):
        depth_l1(torch.ones(1, 3, 4, 4), torch.ones(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"expected target of pred's shape \(1, 1, 4, 4\), got \(1, 1, 4, 5\)"):
        gradient_loss(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 4, 5))
    with pytest.raises(ValueError, match=r"expected data_range > 0, got 0"):
        ssim_loss(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 4, 4), 0)


# --- the module ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["depthnorm", "metres"])
def test_loss_zero_for_identical_inputs(target):
    gt = 1.0 + 8.0 * torch.rand(2, 1, 16, 16)
    total, parts = DepthLoss(target=target)(to_target(gt, target), gt)
    assert total.item() == pytest.approx(0.0, abs=1e-6)
    assert all(value.item() == pytest.approx(0.0, abs=1e-6) for value in parts.values())


def test_loss_positive_with_finite_gradients():
    torch.manual_seed(0)
    gt = 1.0 + 8.0 * torch.rand(2, 1, 32, 32)
    pred = (1.0 + 99.0 * torch.rand(2, 1, 16, 16)).requires_grad_()
    total, parts = DepthLoss()(pred, gt)
    total.backward()
    assert total.item() > 0 and all(value.item() > 0 for value in parts.values())
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert not any(value.requires_grad for value in parts.values())


@pytest.mark.parametrize("target, data_range", [("depthnorm", 100.0), ("metres", 10.0)])
def test_module_equals_weighted_sum_of_functions(target, data_range):
    torch.manual_seed(1)
    gt = 1.0 + 8.0 * torch.rand(3, 1, 16, 16)  # already at pred's size: no resizing
    pred = to_target(1.0 + 8.0 * torch.rand(3, 1, 16, 16), target)
    tgt = to_target(gt, target)
    total, parts = DepthLoss(w_depth=0.3, w_grad=2.0, w_ssim=0.5, target=target)(pred, gt)
    expected = {
        "depth": depth_l1(pred, tgt),
        "grad": gradient_loss(pred, tgt),
        "ssim": ssim_loss(pred, tgt, data_range),  # data range stated here, not read from the module
    }
    for name, value in expected.items():
        torch.testing.assert_close(parts[name], value)
    torch.testing.assert_close(total, 0.3 * expected["depth"] + 2.0 * expected["grad"] + 0.5 * expected["ssim"])


def test_gt_is_area_averaged_in_metres_before_conversion():
    rng = np.random.default_rng(2)
    gt = rng.uniform(0.5, 9.5, size=(1, 1, 32, 48))
    # Independent resize: mean of each 2x2 block in metres, then DepthNorm 10 / depth.
    blocks = gt.reshape(1, 1, 16, 2, 24, 2).mean(axis=(3, 5))
    pred = torch.from_numpy(10.0 / blocks).float()
    total, _ = DepthLoss()(pred, torch.from_numpy(gt).float())
    assert total.item() == pytest.approx(0.0, abs=1e-5)
    # Averaging DepthNorm values instead (harmonic mean of depth) is a different target: positive loss.
    wrong = torch.from_numpy((10.0 / gt).reshape(1, 1, 16, 2, 24, 2).mean(axis=(3, 5))).float()
    assert DepthLoss()(wrong, torch.from_numpy(gt).float())[0].item() > 1e-3


def test_low_precision_input_computes_in_fp32():
    gt = 1.0 + 8.0 * torch.rand(2, 1, 16, 16)
    pred = to_target(gt, "depthnorm").bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, parts = DepthLoss()(pred, gt)
    total.backward()
    assert total.dtype == torch.float32 and all(value.dtype == torch.float32 for value in parts.values())
    assert torch.isfinite(total) and torch.isfinite(pred.grad.float()).all()


def test_module_rejects_bad_input():
    with pytest.raises(ValueError, match=r"expected pred of shape \(B, 1, h, w\), got \(2, 16, 16\)"):
        DepthLoss()(torch.ones(2, 16, 16), torch.ones(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"expected gt_m of shape \(2, 1, H, W\), got \(3, 1, 32, 32\)"):
        DepthLoss()(torch.ones(2, 1, 16, 16), torch.ones(3, 1, 32, 32))
    with pytest.raises(ValueError, match=r"expected target to be one of depthnorm \| metres, got 'log'"):
        DepthLoss(target="log")
    with pytest.raises(ValueError, match=r"expected non-negative weights, got w_depth=-1"):
        DepthLoss(w_depth=-1)


@pytest.mark.parametrize("term", ["depth_l1", "gradient_loss", "ssim_loss"])
def test_analytic_gradients_match_finite_differences(term):
    """float64 gradcheck of each term with respect to the prediction (random maps, so no |x| kink is hit)."""
    generator = torch.Generator().manual_seed(0)
    pred = (torch.rand(1, 1, 12, 12, generator=generator, dtype=torch.float64) * 4 + 1).requires_grad_()
    target = torch.rand(1, 1, 12, 12, generator=generator, dtype=torch.float64) * 4 + 1
    functions = {
        "depth_l1": lambda p: depth_l1(p, target),
        "gradient_loss": lambda p: gradient_loss(p, target),
        "ssim_loss": lambda p: ssim_loss(p, target, data_range=10.0),
    }
    assert torch.autograd.gradcheck(functions[term], (pred,), eps=1e-6, atol=1e-5)
