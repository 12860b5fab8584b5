"""Multi-process training on PyTorch's own engine: detect a torchrun launch, set up and tear down, rank-0 helpers.

`torchrun --nproc-per-node=N stages/train.py` starts N processes with RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT in their environment; `setup()` turns that into a process group (nccl on CUDA, gloo otherwise) and
returns a `Dist`. Without torchrun, or with a world of one process, it is a no-op: `Dist()` is rank 0 of 1, its
collectives return their input, and nothing is initialised, so a one-process run is exactly a plain run.

Restarts (`torchrun --max-restarts`): each attempt's processes meet in their own namespace of the rendezvous store
(prefix `attempt<TORCHELASTIC_RESTART_COUNT>`), since a gloo group set up again on the keys of a failed attempt
fails intermittently.

The train stage is a plain `python stages/train.py`: `relaunch` starts it again under torchrun when `train.nproc`
means more than one process here (`resolve_nproc`: the integer itself, or for `auto` every visible CUDA device, 1 on
a machine without one; torchrun's own `auto` would mean every CPU core), so that one process, the CPU's case, pays
for no launcher.

A process that fails alone must not leave the others waiting in a collective: a decision that one process may reach
on its own (a non-finite loss, a bad shard) goes through `Dist.any`, so that every process takes it at the same step,
and every collective gives up after COLLECTIVE_TIMEOUT rather than PyTorch's 30 minutes for gloo.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from depthcore.config import ConfigError

#: How long a process waits in a collective (barrier, all-reduce) or for the rendezvous store before it fails. The
#: longest legitimate wait is for work one process does while the others wait: hashing every shard on local rank 0
#: before the first step (4.1 GB for DenseDepth's data: under a minute at 100 MB/s), rank 0 writing a checkpoint and
#: the validation grid (seconds), unequal compile or cuDNN benchmark times (seconds to a minute). 10 minutes covers
#: these several times over and is PyTorch's default for nccl; gloo's default, 30 minutes, is what a stuck run waited.
COLLECTIVE_TIMEOUT = timedelta(minutes=10)
_PR_SET_PDEATHSIG = 1  # Linux prctl option: the signal this process gets when its parent dies


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: `rank` of `world_size` processes, `local_rank` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes logs, checkpoints and the model."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """More than one process, so a process group exists."""
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.active:
            dist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over all processes (float64, so counts and totals stay exact)."""
        if not self.active:
            return list(values)
        return _all_reduce(torch.tensor(values, dtype=torch.float64), dist.ReduceOp.SUM).tolist()

    def any(self, flag: bool) -> bool:
        """True on every process when `flag` is True on any of them (one process: `flag`). Every process must call
        it, like any collective: it is also a barrier."""
        if not self.active:
            return bool(flag)
        return bool(_all_reduce(torch.tensor([int(bool(flag))]), dist.ReduceOp.MAX).item())


def _all_reduce(tensor: torch.Tensor, op: dist.ReduceOp) -> torch.Tensor:
    """`tensor` reduced with `op` over all processes, on the CPU (nccl reduces on the process's CUDA device)."""
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=op)
    return tensor.cpu()


def launched() -> Dist:
    """The `Dist` the environment describes (torchrun sets RANK and friends); one process when it says nothing."""
    if "RANK" not in os.environ:
        return Dist()
    env = {key: int(os.environ[key]) for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    return Dist(env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], env["LOCAL_WORLD_SIZE"])


def setup(device_type: str) -> Dist:
    """Join the process group of a torchrun launch (nccl on CUDA, gloo otherwise); a no-op for one process.

    On CUDA each process takes the device of its local rank.
    """
    info = launched()
    if "RANK" in os.environ:
        _die_with_launcher()
    if not info.active:
        return info
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # torchrun's agent hosts the store
    store = dist.TCPStore(
        host, port, info.world_size, is_master=info.is_main and not agent_store, timeout=COLLECTIVE_TIMEOUT,
        wait_for_workers=False,
    )  # fmt: skip
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    dist.init_process_group(
        "nccl" if device_type == "cuda" else "gloo",
        store=dist.PrefixStore(f"depthcore/attempt{attempt}", store),
        rank=info.rank,
        world_size=info.world_size,
        timeout=COLLECTIVE_TIMEOUT,
    )
    return info


def _die_with_launcher() -> None:
    """End this process when torchrun does. torchrun starts its workers in sessions of their own, so killing the
    launcher's process group (`kill -9` of `dvc repro`, an out-of-memory kill) would leave a worker training on and
    writing checkpoints beside the rerun. A launcher that died before prctl took effect shows as a new parent (the
    reaper this process was handed to), compared with the parent read just before, not with PID 1: torchrun may be
    PID 1 itself, as the command of a container. Linux only (prctl); elsewhere nothing changes."""
    if not sys.platform.startswith("linux"):
        return
    launcher = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != launcher:  # the launcher died before prctl took effect: this process was handed on
        os._exit(1)


def teardown(info: Dist) -> None:
    """Leave the process group, if one was joined."""
    if info.active and dist.is_initialized():
        dist.destroy_process_group()


def resolve_nproc(value: int | str, device_type: str = "cpu") -> int:
    """`train.nproc` as a number of processes: an integer >= 1, or `auto` = every visible CUDA device (1 without).
    On `device_type` cuda each process takes a GPU of its own, so more processes than visible GPUs are refused."""
    if value == "auto":
        return max(torch.cuda.device_count(), 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:  # not check_int: `auto` is allowed too
        raise ConfigError(f"train.nproc: expected an integer >= 1 or auto, got {value!r}")
    if device_type == "cuda" and value > torch.cuda.device_count():
        raise ConfigError(f"train.nproc: expected at most the {torch.cuda.device_count()} GPU(s) visible here, one a "
                          f"process, got {value}; lower it or use auto")
    return value


def relaunch(nproc: int | str, script: str | Path, device_type: str = "cpu") -> None:
    """Replace this process with `torchrun --standalone --nproc-per-node=N script` when `nproc` (`train.nproc`) means
    N > 1 processes here (on `device_type`, `resolve_nproc`) and this process is not already one of a launch;
    otherwise return at once.

    The command is printed first. The process is replaced (exec), not wrapped: whoever started it (DVC) waits for
    torchrun and gets its exit status, and a kill reaches torchrun.
    """
    if "RANK" in os.environ:
        return
    count = resolve_nproc(nproc, device_type)
    if count == 1:
        return
    args = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={count}", str(script)]
    print(f"starting {count} processes: {shlex.join(['torchrun', *args[2:]])}", flush=True)
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *args])
