"""depthcore.distributed and training under torchrun on the CPU (gloo): the launch detection and no-op collectives,
equal weights for 2 processes and for one process with twice the batch, a restart after a killed worker, torchrun as
PID 1 (a container's command), a flag seen by one process stopping all, and shards hashed once per machine."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from depthcore.config import ConfigError
from depthcore.distributed import Dist, launched, relaunch, resolve_nproc
from depthcore.shards import read_manifest
from depthcore.train import TrainFiles, fit
from tests.helpers import ROOT, built_once, tiny_model, tiny_train_config

WORKER = ROOT / "tests" / "ddp_worker.py"


def test_one_process_is_a_no_op(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    info = launched()
    assert info == Dist() and info.is_main and not info.active
    assert info.sum([1.5, 2.0]) == [1.5, 2.0]
    assert info.any(True) is True and info.any(False) is False
    info.barrier()  # returns at once: no process group exists


def test_a_torchrun_environment_is_read(monkeypatch):
    for key, value in {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    assert launched() == Dist(rank=3, world_size=4, local_rank=1, local_world_size=2)
    assert not launched().is_main and launched().active


def test_nproc_auto_is_every_gpu_or_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert resolve_nproc("auto") == 1
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert resolve_nproc("auto") == 4 and resolve_nproc(2) == 2
    for bad in (0, True, "two"):
        with pytest.raises(ConfigError, match="train.nproc: expected an integer >= 1 or auto"):
            resolve_nproc(bad)


def test_more_cuda_processes_than_gpus_are_refused_in_one_line(monkeypatch):
    """Each CUDA process takes a GPU of its own ("invalid device ordinal" otherwise); gloo on the CPU has no limit."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_nproc(2, "cuda") == 2 and resolve_nproc(8, "cpu") == 8
    with pytest.raises(ConfigError, match=r"^train.nproc: expected at most the 2 GPU\(s\) visible here, one a process, "
                                          r"got 3; lower it or use auto$"):
        resolve_nproc(3, "cuda")


def test_relaunch_starts_torchrun_only_for_several_processes(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(os, "execv", lambda path, argv: calls.append((path, argv)))
    monkeypatch.delenv("RANK", raising=False)
    relaunch(1, "stages/train.py")
    assert calls == []  # one process: this one
    relaunch(2, "stages/train.py")
    assert calls == [(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                       "--nproc-per-node=2", "stages/train.py"])]  # fmt: skip
    assert "starting 2 processes: torchrun --standalone --nproc-per-node=2 stages/train.py" in capsys.readouterr().out
    monkeypatch.setenv("RANK", "0")
    relaunch(2, "stages/train.py")
    assert len(calls) == 1  # a process of a launch is never relaunched


def torchrun(nproc: int, args: list, *extra: str, launcher: tuple[str, ...] = ()) -> subprocess.Popen:
    """tests/ddp_worker.py with `args` under torchrun, itself started by `launcher` (a command prefix) if given."""
    command = [*launcher, sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               *extra, str(WORKER), *map(str, args)]  # fmt: skip
    # torchrun gives each of several processes 1 thread; one process keeps this one's threads, so it computes alike
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen) -> str:
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-3000:]
    return output


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


EPOCHS = 4  # 2 steps per epoch per process on the 4 tiny training images


@pytest.fixture(scope="session")
def two_processes(tiny_shards) -> Path:
    """The folder of an uninterrupted run of 2 gloo processes of batch 1 for EPOCHS epochs under torchrun, which both
    tests below compare against: run once for the whole test run (tests/helpers.built_once)."""
    return built_once("two-processes", lambda folder: finish(torchrun(2, [tiny_shards, folder, 1, EPOCHS])))


@pytest.mark.slow
def test_two_processes_train_as_one_with_twice_the_batch(tmp_path, tiny_shards, two_processes):
    """2 processes of batch 1 against one process of batch 2 (no BatchNorm in the tiny network, so nothing but the
    gradient average couples the processes); and torchrun with 1 process is a plain run."""
    single = tmp_path / "single"
    config = tiny_train_config(**{"train.batch_size": 2, "train.epochs": EPOCHS})
    fit(config, TrainFiles(tiny_shards, single / "model.pt", single / "checkpoint.pt"), lambda r, g: None,
        build=tiny_model)
    ddp, one = weights(two_processes / "model.pt"), weights(single / "model.pt")
    assert all((ddp[k] - one[k]).abs().max() < 1e-5 for k in one)

    finish(torchrun(1, [tiny_shards, tmp_path / "torchrun1", 2, EPOCHS]))
    assert (tmp_path / "torchrun1" / "model.pt").read_bytes() == (single / "model.pt").read_bytes()


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_the_run_ends_as_an_uninterrupted_one(tmp_path, tiny_shards, two_processes):
    step_seconds = 0.4  # about a second an epoch
    out = tmp_path / "killed"
    proc = torchrun(2, [tiny_shards, out, 1, EPOCHS, step_seconds], "--max-restarts=1")
    checkpoint, deadline = out / "checkpoint.pt", time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert checkpoint.exists() and proc.poll() is None, "the run ended before its first checkpoint"
    os.kill(int((out / "pids" / "rank1.attempt0").read_text()), signal.SIGKILL)
    output = finish(proc)
    assert (out / "pids" / "rank1.attempt1").exists(), "torchrun did not restart the workers"
    assert "resuming from" in output  # the restarted workers went on from the checkpoint
    resumed = torch.load(checkpoint, weights_only=True)["history"]
    assert len(resumed) == EPOCHS
    whole, again = weights(two_processes / "model.pt"), weights(out / "model.pt")
    assert all(torch.equal(whole[k], again[k]) for k in whole)


#: A new PID namespace in which the command is PID 1, as a container's command is (util-linux unshare; needs root or
#: user namespaces).
AS_PID_1 = ("unshare", "--pid", "--fork", "--mount-proc")


@pytest.mark.slow
def test_torchrun_as_pid_1_trains_as_usual(tmp_path, tiny_shards, two_processes):
    """torchrun as PID 1: its workers' parent is PID 1 from the start, which must not read as a dead launcher."""
    probe = subprocess.run([*AS_PID_1, "true"], capture_output=True, text=True) if shutil.which("unshare") else None
    if probe is None or probe.returncode != 0:
        reason = "no unshare command" if probe is None else probe.stderr.strip()
        pytest.skip(f"cannot start a process as PID 1 of a new PID namespace here: {reason}")
    out = tmp_path / "pid1"
    finish(torchrun(2, [tiny_shards, out, 1, EPOCHS], launcher=AS_PID_1))
    assert [(out / "pids" / f"rank{rank}.parent").read_text() for rank in range(2)] == ["1", "1"]  # torchrun was PID 1
    whole, again = weights(two_processes / "model.pt"), weights(out / "model.pt")
    assert all(torch.equal(whole[k], again[k]) for k in whole)


@pytest.mark.slow
def test_a_non_finite_loss_on_one_process_stops_every_process_at_once(tmp_path, tiny_shards):
    """Rank 1 alone sees a NaN loss, at the last step of the first epoch, where the loop looks: both processes stop
    there with the same one-line error (exit status 2), instead of rank 0 waiting for rank 1 in the next collective."""
    proc = torchrun(2, [tiny_shards, tmp_path / "nan", 1, EPOCHS, 0, 1])
    try:
        output, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()  # the workers die with torchrun
        output, _ = proc.communicate()
        raise AssertionError(f"a process was left waiting:\n{output[-3000:]}") from None
    assert proc.returncode != 0
    message = "error: training loss is not finite in epoch 1, steps 1-2; lower train.lr"
    assert output.count(message) == 2, output[-3000:]
    assert "NonFiniteLoss" not in output, output[-3000:]  # one line each, no traceback
    assert not (tmp_path / "nan" / "checkpoint.pt").exists()


@pytest.mark.slow
def test_one_process_stopping_stops_all_each_machine_hashes_once_and_batchnorm_syncs(tmp_path, tiny_shards):
    """2 processes on one machine: local rank 0 alone hashes each shard of every split, once; a truncated validation
    shard stops both before training (the one that hashed names it); a flag on one process is seen by both."""
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_shards, corrupt)
    val = corrupt / "val" / "val-00000.npz"
    size = val.stat().st_size
    val.write_bytes(val.read_bytes()[: size // 2])
    out = tmp_path / "out"
    out.mkdir()
    finish(torchrun(2, ["collectives", tiny_shards, corrupt, out, 1]))
    records = [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(2)]
    every_shard = sorted(entry["file"] for split in read_manifest(tiny_shards)["shards"].values() for entry in split)
    assert len(every_shard) == 4 and {file.split("/")[0] for file in every_shard} == {"train", "val", "test"}
    assert [r["local_rank"] for r in records] == [0, 1]
    assert sorted(records[0]["hashed"]) == every_shard and records[1]["hashed"] == []
    assert records[0]["corrupt_error"] == (
        f"shard {val}: expected {size} bytes, found {size // 2}; the shards are stale or corrupt: rerun "
        "`dvc repro -f shard`, or delete data/shards and rerun it"
    )
    assert "failed verification on another process (local rank 0 of a machine)" in records[1]["corrupt_error"]
    assert all("\n" not in r["corrupt_error"] for r in records)
    assert [r["any_flagged"] for r in records] == [True, True]  # only rank 1 raised it
    assert [r["any_none"] for r in records] == [False, False]
    # validation sees rank 0's BatchNorm statistics everywhere (each had its own: mean rank + 1, var 10 (rank + 1))
    rank0 = {"mean": [1.0, 1.0], "var": [10.0, 10.0], "batches": [5]}
    assert [r["batchnorm_after_sync"] for r in records] == [rank0, rank0]
