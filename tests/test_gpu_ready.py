"""benchmarks/gpu.sh and the clocks of benchmarks/epoch.py: the GPU benchmark runs end to end at a tiny size on the
CPU (2 gloo processes against 1), and every clock is read once the device has finished its queued work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from tests.helpers import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmark scripts import their `common` from beside them
import common  # noqa: E402
import epoch  # noqa: E402


@pytest.mark.slow
def test_gpu_benchmark_runs_end_to_end_on_the_cpu(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    done = subprocess.run(["bash", "benchmarks/gpu.sh", "--device", "cpu", "--tiny"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    for title in ("Training: downsample true, half decoder", "Projected from these rates", "The evaluate stage"):
        assert title in done.stdout, done.stdout
    record = json.loads((tmp_path / "paper.json").read_text())
    assert [row["processes"] for row in record["rows"]] == [1, 2]
    for row in record["rows"]:
        assert row["steps"] == 1 and row["img_s"] > 0 and 0 <= row["wait_share"] < 1 and row["val_s_per_image"] > 0
        assert row["device"] == "cpu" and row["peak_device_mib"] is None
    assert record["evaluation"]["images"] == 2 and record["evaluation"]["seconds"] > 0
    assert record["counts"]["test"] == 2 and record["counts"]["val"] == 4  # 1 of the 2 rooms of 4 frames held out


class Events:
    """A log of the device waits, clock reads and calls of one timed block, with a fake clock that ticks by 1."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.clock = SimpleNamespace(perf_counter=self.tick)

    def tick(self) -> float:
        self.log.append("clock")
        return float(len(self.log))

    def sync(self) -> None:
        self.log.append("sync")


def test_every_clock_is_read_after_the_device_is_done(monkeypatch):
    events = Events()
    monkeypatch.setattr(epoch, "synchronize", events.sync)
    monkeypatch.setattr(epoch, "time", events.clock)
    seconds: list[float] = []
    assert epoch.timed(lambda x: events.log.append("step") or x, seconds)(3) == 3
    assert events.log == ["sync", "clock", "step", "sync", "clock"] and seconds == [3.0]  # clock 5 - clock 2

    events.log.clear()

    class Loader(list):  # what make_loader returns, as far as TimedLoader needs it
        sampler, dataset = SimpleNamespace(epoch=0), None

        def __iter__(self):
            for item in super().__iter__():
                events.log.append("batch")
                yield item

    waits: list[list[float]] = []
    loader = epoch.TimedLoader(lambda: Loader([1, 2, 3]), (), {}, False, waits, limit=2)
    assert len(loader) == 2 and list(loader) == [1, 2]  # a pass ends after `limit` batches
    assert events.log == ["sync", "clock", "batch", "clock"] * 2 and waits == [[2.0, 2.0]]


def test_synchronize_waits_for_cuda_once_it_runs(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: calls.append("cuda"))
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    common.synchronize()  # a CPU run: nothing to wait for
    assert calls == []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    common.synchronize()
    assert calls == ["cuda"]
