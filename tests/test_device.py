"""depthcore.device: device and precision resolution, the grad scaler, and fp32 / bf16 training parity."""

from __future__ import annotations

import shutil

import pytest
import torch

from depthcore.device import (
    Runtime,
    cpu_has_native_bf16,
    cuda_bf16,
    resolve_device,
    resolve_precision,
    resolve_runtime,
)
from depthcore.train import TrainFiles, fit
from tests.helpers import tiny_train_config

CPU = torch.device("cpu")
FLAGS_WITHOUT_BF16 = "fpu vme sse sse2 avx avx2 avx512f avx512bw avx512_vnni"


@pytest.fixture
def cpuinfo(tmp_path):
    """Write a fake /proc/cpuinfo whose flags line holds the given flags; returns its path."""

    def write(flags: str):
        path = tmp_path / "cpuinfo"
        path.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n\n")
        return path

    return write


@pytest.mark.parametrize("extra", ["avx512_bf16", "amx_bf16 amx_tile"])
def test_auto_picks_bf16_on_a_cpu_with_native_bf16(cpuinfo, extra):
    path = cpuinfo(f"{FLAGS_WITHOUT_BF16} {extra}")
    assert cpu_has_native_bf16(path)
    assert resolve_precision("auto", CPU, cpuinfo=path) is torch.bfloat16


def test_auto_picks_fp32_on_a_cpu_without_native_bf16(cpuinfo, tmp_path):
    path = cpuinfo(f"{FLAGS_WITHOUT_BF16} avx512_bf16x")  # a longer flag that merely contains the name
    assert not cpu_has_native_bf16(path)
    assert resolve_precision("auto", CPU, cpuinfo=path) is None
    assert resolve_precision("auto", CPU, cpuinfo=tmp_path / "missing") is None  # unreadable: no bf16


# Stand-ins for torch.cuda.is_bf16_supported(including_emulation=True) with its real signature and default: by
# default it also counts GPUs that only emulate bf16 (compute capability below 8.0: a V100, a T4).
def ampere_or_later(including_emulation: bool = True) -> bool:
    return True


def emulating_gpu(including_emulation: bool = True) -> bool:
    return including_emulation


def without_bf16(including_emulation: bool = True) -> bool:
    return False


@pytest.mark.parametrize(
    ("gpu", "support", "dtype"),
    [(ampere_or_later, "native", torch.bfloat16), (emulating_gpu, "emulated", torch.float16),
     (without_bf16, "none", torch.float16)],
)  # fmt: skip
def test_auto_on_cuda_picks_bf16_only_where_the_gpu_computes_it(monkeypatch, gpu, support, dtype):
    """A GPU that only emulates bf16 gets fp16 with a loss scaler, not bf16 (slow there, no cuDNN convolutions)."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", gpu)
    assert cuda_bf16() == support
    assert resolve_precision("auto", torch.device("cuda")) is dtype
    assert resolve_precision("bf16", torch.device("cuda")) is torch.bfloat16  # asked for: taken as is


def test_the_runtime_says_when_a_gpu_only_emulates_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", emulating_gpu)
    auto = resolve_runtime("cuda", "auto", channels_last=True)
    assert auto.dtype is torch.float16 and auto.grad_scaler().is_enabled()
    assert auto.note == "fp16 with a loss scaler: this GPU only emulates bf16 (compute capability below 8.0)"
    assert resolve_runtime("cuda", "bf16", True).note.startswith("bf16 is only emulated on this GPU")
    assert resolve_runtime("cuda", "fp32", True).note == ""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", ampere_or_later)
    assert resolve_runtime("cuda", "auto", True).note == resolve_runtime("cuda", "bf16", True).note == ""
    assert resolve_runtime("cpu", "auto", True).note == ""


def test_auto_on_mps_is_fp32():
    assert resolve_precision("auto", torch.device("mps")) is None


@pytest.mark.parametrize(("name", "dtype"), [("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_explicit_precision_is_taken_as_is(cpuinfo, name, dtype):
    path = cpuinfo(FLAGS_WITHOUT_BF16)  # the CPU's flags do not matter once a precision is named
    assert resolve_precision(name, CPU, cpuinfo=path) is dtype
    assert Runtime(CPU, dtype, False).precision == name


@pytest.mark.parametrize("name", ["float32", "BF16", "half", ""])
def test_bad_precision_name_is_rejected(name):
    with pytest.raises(ValueError, match=r"expected train.precision auto, fp32, bf16 or fp16, got"):
        resolve_precision(name, CPU)


def test_auto_device_order(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == CPU
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_bad_or_missing_device_is_rejected(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == CPU
    with pytest.raises(ValueError, match=r"expected train.device to be auto, cpu, cuda or mps, got 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(RuntimeError, match=r"train.device=cuda but no cuda device is available"):
        resolve_device("cuda")


@pytest.mark.parametrize(("dtype", "enabled"), [(None, False), (torch.bfloat16, False), (torch.float16, True)])
def test_grad_scaler_is_enabled_only_for_fp16(dtype, enabled):
    assert Runtime(CPU, dtype, False).grad_scaler().is_enabled() is enabled


@pytest.mark.parametrize(("precision", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_autocast_runs_convolutions_in_the_runtime_dtype(precision, dtype):
    runtime = resolve_runtime("cpu", precision, channels_last=False)
    conv = torch.nn.Conv2d(3, 4, kernel_size=3)
    # inside an outer bf16 region, so that fp32 must switch autocast off rather than merely not switch it on
    with torch.autocast("cpu", dtype=torch.bfloat16), runtime.autocast():
        out = conv(torch.rand(1, 3, 8, 8))
        assert torch.is_autocast_enabled("cpu") is (dtype is not torch.float32)
    assert out.dtype is dtype
    assert conv.weight.dtype is torch.float32  # autocast casts copies; the parameters stay fp32


@pytest.mark.parametrize("channels_last", [False, True])
def test_images_take_the_runtime_memory_format(channels_last):
    x = torch.rand(2, 3, 4, 5)  # (B, C, H, W), contiguous
    moved = Runtime(CPU, None, channels_last).images(x)
    assert moved.is_contiguous(memory_format=torch.channels_last) is channels_last
    assert moved.stride() == ((60, 1, 15, 3) if channels_last else (60, 20, 5, 1))
    assert torch.equal(moved, x)


@pytest.mark.slow
def test_bf16_training_ends_within_2_percent_of_fp32(tmp_path, tiny_shards):
    """Same seed, data and steps: the validation loss after 2 epochs differs by under 2 % between fp32 and bf16."""
    final = {}
    for precision, channels_last in (("fp32", False), ("bf16", True)):
        out = tmp_path / precision
        config = tiny_train_config(**{"train.precision": precision, "train.channels_last": channels_last})
        files = TrainFiles(tiny_shards, out / "model.pt", out / "checkpoint.pt")
        history = fit(config, files, lambda record, grid: None)
        assert len(history) == 2
        final[precision] = history[-1]["val_loss"]
        shutil.rmtree(out)  # ~650 MB of weights and checkpoint
    assert final["bf16"] != final["fp32"]  # bf16 really ran
    assert abs(final["bf16"] - final["fp32"]) / final["fp32"] < 0.02


def test_a_runtime_names_itself_as_the_logs_do():
    assert str(Runtime(torch.device("cpu"), torch.bfloat16, True)) == "cpu (bf16)"
    assert str(Runtime(torch.device("cpu"), None, False, note="onnxruntime")) == "cpu (fp32; onnxruntime)"
