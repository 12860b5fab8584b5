"""Where and in which precision the model runs: device, autocast dtype and memory format, decided once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

#: /proc/cpuinfo flags of CPUs that compute bf16 natively (AVX512-BF16, AMX).
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Runtime:
    """The resolved device and autocast dtype (None: plain fp32), whether inputs go channels_last, and a note for the
    log on how the precision was chosen where the hardware decided it ("" when there is nothing to say)."""

    device: torch.device
    dtype: torch.dtype | None
    channels_last: bool
    note: str = ""

    @property
    def precision(self) -> str:
        return next(name for name, dtype in PRECISIONS.items() if dtype == self.dtype)

    def __str__(self) -> str:
        """How logs name it: "cpu (bf16)", with the note after a semicolon when there is one."""
        return f"{self.device} ({self.precision}{'; ' + self.note if self.note else ''})"

    def autocast(self) -> torch.autocast:
        """Autocast to `dtype` on this device; for fp32, autocast switched off (also inside an enclosing region)."""
        if self.dtype is None:
            return torch.autocast(device_type=self.device.type, enabled=False)
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A loss scaler, enabled only for fp16 (bf16 has fp32's range and needs none)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """A (B, C, H, W) batch on the device as float32 in [0, 1], in the model's memory format.

        uint8 batches (what the loader delivers: a quarter of float32's bytes to move) are converted on the device,
        value / 255; float batches are taken as already in [0, 1].
        """
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        x = x.to(self.device, non_blocking=True)
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        return x.to(memory_format=fmt)


def resolve_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; a named device must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if name not in available:
        raise ValueError(f"expected train.device to be auto, cpu, cuda or mps, got {name!r}")
    if not available[name]:
        raise RuntimeError(f"train.device={name} but no {name} device is available here; use train.device=auto or cpu")
    return torch.device(name)


def cpu_has_native_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """True when the CPU flags list AVX512-BF16 or AMX-BF16."""
    try:
        flags = cpuinfo.read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in CPU_BF16_FLAGS)


def cuda_bf16() -> str:
    """How the current CUDA device computes bf16: "native" (compute capability 8.0 on, Ampere and later; ROCm),
    "emulated" (older GPUs such as the V100 and T4: bf16 tensors work, computed slowly in fp32, and cuDNN has no bf16
    convolutions there) or "none".

    `torch.cuda.is_bf16_supported()` counts emulation as support unless called with `including_emulation=False`
    (torch 2.4 on, the oldest this package installs with).
    """
    if torch.cuda.is_bf16_supported(including_emulation=False):
        return "native"
    return "emulated" if torch.cuda.is_bf16_supported(including_emulation=True) else "none"


def resolve_precision(precision: str, device: torch.device, cpuinfo: Path = CPUINFO) -> torch.dtype | None:
    """`auto`: bf16 on CUDA devices that compute it natively (`cuda_bf16`; else fp16, with a loss scaler) and on CPUs
    with native bf16; else fp32 (mps too).

    Returns the autocast dtype, None for fp32; `cpuinfo` is the file whose flags tell a CPU's bf16 support.
    """
    if precision != "auto":
        if precision not in PRECISIONS:
            raise ValueError(f"expected train.precision auto, fp32, bf16 or fp16, got {precision!r}")
        return PRECISIONS[precision]
    if device.type == "cuda":
        return torch.bfloat16 if cuda_bf16() == "native" else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16(cpuinfo):
        return torch.bfloat16
    return None


def precision_note(precision: str, device: torch.device) -> str:
    """What the log should say about `train.precision` on `device`: on a CUDA device that only emulates bf16, why
    `auto` chose fp16, or that an explicit bf16 will be slow; "" otherwise."""
    if device.type != "cuda" or precision not in ("auto", "bf16") or cuda_bf16() != "emulated":
        return ""
    if precision == "auto":
        return "fp16 with a loss scaler: this GPU only emulates bf16 (compute capability below 8.0)"
    return "bf16 is only emulated on this GPU (compute capability below 8.0), which is slow; auto would use fp16"


def resolve_runtime(device: str, precision: str, channels_last: bool) -> Runtime:
    """Resolve the `train.device`, `train.precision` and `train.channels_last` params."""
    resolved = resolve_device(device)
    note = precision_note(precision, resolved)
    return Runtime(resolved, resolve_precision(precision, resolved), channels_last, note)
