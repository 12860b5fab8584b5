"""End to end: the real `dvc repro` on a tiny synthetic dataset in a temporary git clone of the working tree,
then `dvc exp run -S model.downsample=false` and `dvc metrics diff`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from depthcore.metrics import METRIC_KEYS, PROTOCOLS
from tests.helpers import ROOT

TINY = {
    ("data", "synthetic", "num_images"): 10,  # split 8 / 1 / 1
    ("data", "shard_size"): 4,
    ("train", "epochs"): 1,
    ("train", "batch_size"): 4,
    ("train", "num_workers"): 0,
    ("train", "num_vis"): 1,
    ("eval", "batch_size"): 1,
    ("eval", "num_vis"): 1,
}


def run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def dvc(*args: str, cwd: Path) -> str:
    return run([sys.executable, "-m", "dvc", *args], cwd)


def make_repo(dest: Path, overrides: dict) -> Path:
    """The working tree's tracked and not-ignored files, committed in a new git repository at `dest`, with `overrides`
    applied to params.yaml."""
    listed = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], ROOT).splitlines()
    for name in listed:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for path, value in overrides.items():
        node = params
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny"]):
        run(["git", *args], dest)
    return dest


def test_repro_then_variant_then_metrics_diff(tmp_path):
    repo = make_repo(tmp_path / "repo", TINY)
    dvc("repro", cwd=repo)
    evaluation = json.loads((repo / "metrics/eval.json").read_text())
    assert evaluation["provenance"]["source"] == "synthetic"
    assert evaluation["provenance"]["num_test_images"] == 1
    for name in PROTOCOLS:
        assert set(METRIC_KEYS) <= set(evaluation[name])
        assert 0 <= evaluation[name]["delta1"] <= 1 and evaluation[name]["rms"] > 0
        assert "synthetic" in evaluation["notes"][name]
    baselines = json.loads((repo / "metrics/baselines.json").read_text())
    assert set(baselines) == {"provenance", "random", "mean_depth"}
    table = pd.read_csv(repo / "metrics/comparison.csv")
    published = pd.read_csv(repo / "references/published_nyuv2.csv")
    assert len(table) == len(PROTOCOLS) * 3 + len(published)  # this run and two baselines per protocol
    assert set(published["method"]) <= set(table["method"])
    assert "not comparable" in (repo / "metrics/comparison.md").read_text()
    per_image = pd.read_csv(repo / "metrics/per_image.csv")
    assert sorted(per_image["protocol"]) == sorted(PROTOCOLS)
    assert (repo / "plots/eval/test_grid.png").stat().st_size > 0
    train_log = json.loads((repo / "dvclive/metrics.json").read_text())
    assert train_log["step"] == 0 and "loss" in train_log["val"]
    assert "Data and pipelines are up to date" in dvc("status", cwd=repo)

    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline run"], repo)
    dvc("exp", "run", "-S", "model.downsample=false", cwd=repo)
    assert yaml.safe_load((repo / "params.yaml").read_text())["model"]["downsample"] is False
    diff = json.loads(dvc("metrics", "diff", "--json", cwd=repo))
    changed = diff["metrics/eval.json"]
    assert changed["report.rms"]["old"] != changed["report.rms"]["new"]
    assert "metrics/baselines.json" not in diff  # the baselines do not depend on the model


def test_training_killed_mid_epoch_resumes_to_the_same_metrics(tmp_path):
    settings = {**TINY, ("train", "epochs"): 2}
    whole = make_repo(tmp_path / "whole", settings)  # 8 train images in batches of 4: 2 steps per epoch
    dvc("repro", cwd=whole)
    expected = (whole / "metrics/eval.json").read_text()
    shutil.rmtree(whole)  # ~1 GB of weights, checkpoint and DVC cache, not needed for the comparison

    killed = make_repo(tmp_path / "killed", settings)
    dvc("repro", "shard", cwd=killed)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=killed,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = killed / "models/checkpoint.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert checkpoint.exists() and proc.poll() is None, "training ended before its first checkpoint could be seen"
    os.killpg(proc.pid, signal.SIGKILL)  # epoch 1 saved, epoch 2 (at least 1 s of work) under way
    proc.wait()
    assert not (killed / "models/model.pt").exists()

    log = dvc("repro", cwd=killed)
    assert "resuming from models/checkpoint.pt after epoch 1" in log
    assert (killed / "metrics/eval.json").read_text() == expected
