"""End to end: the real `dvc repro` on a tiny synthetic dataset in temporary git repositories made from the working
tree, and what users do next: a variant with `dvc metrics diff`, a killed run resumed, a team's DVC remote, a queued
sweep, two processes under torchrun, DenseDepth's zip layout, and a bad param.

One repository (`pipeline`) runs the default pipeline once for the whole test run, whichever pytest-xdist worker asks
first (tests/helpers.built_once); the tests that use it clone it and share its DVC cache, so that what it computed is
not computed again. Only the first test runs DVC in the repository itself.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from depthcore.config import Config, build
from depthcore.inference import save_model
from depthcore.keras_import import keras_spec
from depthcore.metrics import METRIC_KEYS, PROTOCOLS
from depthcore.model import DenseDepth
from depthcore.report import params_hash
from tests.helpers import ROOT, built_once

pytestmark = pytest.mark.slow

TINY = {
    ("data", "synthetic", "num_images"): 10,  # split 8 / 1 / 1
    ("data", "shard_size"): 4,
    ("train", "epochs"): 2,
    ("train", "batch_size"): 4,
    ("train", "num_workers"): 0,
    ("train", "num_vis"): 1,
    ("eval", "batch_size"): 1,
    ("eval", "num_vis"): 1,
}
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def run(args: list[str], cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True)
    if ok:
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def dvc(*args: str, cwd: Path) -> str:
    return run([sys.executable, "-m", "dvc", *args], cwd).stdout


def commit(repo: Path, message: str) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], repo)


def make_repo(dest: Path, overrides: dict) -> Path:
    """The working tree's tracked and not-ignored files, committed in a new git repository at `dest`, with `overrides`
    applied to params.yaml."""
    listed = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], ROOT).stdout.splitlines()
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
    run(["git", "init", "-q"], dest)
    commit(dest, "tiny")
    return dest


def clone(source: Path, dest: Path) -> Path:
    """A git clone of `source` that shares its DVC cache (and so its run cache), with the outputs checked out."""
    run(["git", "clone", "-q", str(source), str(dest)], source.parent)
    dvc("cache", "dir", "--local", str(source / ".dvc" / "cache"), cwd=dest)
    dvc("checkout", "-q", cwd=dest)
    return dest


@pytest.fixture(scope="session")
def pipeline() -> Path:
    """The default pipeline, run on TINY params and committed with its dvc.lock and metrics."""

    def run_default(folder: Path) -> None:
        repo = make_repo(folder / "repo", TINY)
        dvc("repro", cwd=repo)
        commit(repo, "baseline run")

    return built_once("pipeline", run_default) / "repo"


def test_repro_writes_numbers_only_metrics_with_their_provenance_beside(pipeline):
    evaluation = json.loads((pipeline / "metrics/eval.json").read_text())
    info = json.loads((pipeline / "metrics/eval_info.json").read_text())
    assert info["provenance"]["source"] == "synthetic" and info["provenance"]["num_test_images"] == 1
    for name in PROTOCOLS:
        assert list(evaluation[name])[:3] == ["delta1", "rel", "rms"] and set(METRIC_KEYS) <= set(evaluation[name])
        assert all(v is None or isinstance(v, (int, float)) for v in evaluation[name].values())
        assert 0 <= evaluation[name]["delta1"] <= 1 and evaluation[name]["rms"] > 0
        assert "synthetic" in info["notes"][name]
    baselines = json.loads((pipeline / "metrics/baselines.json").read_text())
    assert set(baselines) == {"random", "mean_depth", "oracle"}
    table = pd.read_csv(pipeline / "metrics/comparison.csv")
    published = pd.read_csv(pipeline / "references/published_nyuv2.csv")
    assert len(table) == len(PROTOCOLS) * 4 + len(published)  # this run and three baselines per protocol
    assert set(published["method"]) <= set(table["method"])
    assert "not comparable" in (pipeline / "metrics/comparison.md").read_text()
    per_image = pd.read_csv(pipeline / "metrics/per_image.csv")
    assert sorted(per_image["protocol"]) == sorted(PROTOCOLS)
    for picture in ("plots/eval/test_grid.png", "dvclive/plots/images/val_grid.png",
                    "dvclive/plots/images/loss_curves.png"):  # fmt: skip
        assert Image.open(pipeline / picture).width <= 1600, picture
    train_log = json.loads((pipeline / "dvclive/metrics.json").read_text())
    assert train_log["step"] == 1 and set(train_log) == {"step", "train_loss", "val_loss"}
    assert "Data and pipelines are up to date" in dvc("status", cwd=pipeline)
    dvc("plots", "show", cwd=pipeline)
    assert (pipeline / "dvc_plots/index.html").is_file()
    assert run(["git", "status", "--porcelain"], pipeline).stdout == ""  # dvc_plots/ is ignored


def test_a_variant_shows_in_metrics_diff(pipeline, tmp_path):
    repo = clone(pipeline, tmp_path / "variant")
    dvc("exp", "run", "-S", "model.downsample=false", "-S", "train.epochs=1", cwd=repo)
    assert yaml.safe_load((repo / "params.yaml").read_text())["model"]["downsample"] is False
    diff = json.loads(dvc("metrics", "diff", "--json", cwd=repo))
    changed = diff["metrics/eval.json"]
    assert changed["report.rms"]["old"] != changed["report.rms"]["new"]
    assert "metrics/baselines.json" not in diff  # reference material, not an experiment metric


def test_training_killed_mid_epoch_resumes_to_the_same_model(pipeline, tmp_path):
    """A clone with its own DVC cache, given the default run's data but not its model (nothing to restore: it must
    train), is killed during epoch 2; the next `dvc repro` resumes from the checkpoint of epoch 1 and writes the
    uninterrupted run's model."""
    killed = tmp_path / "killed"
    run(["git", "clone", "-q", str(pipeline), str(killed)], tmp_path)
    shutil.copytree(pipeline / "data", killed / "data")
    dvc("commit", "--force", "download", "shard", cwd=killed)  # the data into this clone's cache
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=killed, env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
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
    assert (killed / "models/model.pt").read_bytes() == (pipeline / "models/model.pt").read_bytes()
    assert run(["git", "status", "--porcelain"], killed).stdout == ""  # dvc.lock and the metrics as committed


def test_a_team_shares_results_through_a_remote(pipeline, tmp_path):
    """Push, pull into a clean clone: nothing to run. Then two processes on a fresh clone, and params set back to the
    run pulled: DVC restores it from the run cache instead of training."""
    remote, source = tmp_path / "remote", clone(pipeline, tmp_path / "source")  # pushes the shared cache
    dvc("remote", "add", "--local", "-d", "team", str(remote), cwd=source)
    dvc("push", "--run-cache", cwd=source)
    repo = tmp_path / "clone"
    run(["git", "clone", "-q", str(pipeline), str(repo)], tmp_path)
    dvc("remote", "add", "--local", "-d", "team", str(remote), cwd=repo)
    dvc("pull", "--run-cache", cwd=repo)
    assert "Data and pipelines are up to date" in dvc("status", cwd=repo)
    assert "Running stage" not in dvc("repro", cwd=repo)

    log = dvc("exp", "run", "-S", "train.nproc=2", "-S", "train.epochs=1", cwd=repo)
    assert "starting 2 processes: torchrun --standalone --nproc-per-node=2 " in log  # then the script's path
    assert log.count("training on cpu") == 1 and log.count("epoch 1/1: train loss") == 1  # rank 0 alone reports
    assert json.loads((repo / "dvclive/metrics.json").read_text())["step"] == 0  # one epoch, logged once
    assert (repo / "models/model.pt").is_file()

    back = dvc("exp", "run", "-S", "train.nproc=1", "-S", f"train.epochs={TINY['train', 'epochs']}", cwd=repo)
    assert "Stage 'train' is cached - skipping run" in back and "training on" not in back
    assert (repo / "metrics/eval.json").read_text() == (pipeline / "metrics/eval.json").read_text()


def test_a_queued_sweep_runs_each_experiment_from_its_own_params(pipeline, tmp_path):
    """Two queued experiments: one trains with a new learning rate; the other has the committed run's params, whose
    stages DVC does not rerun. Each experiment's evaluation must name the params it was run with."""
    repo = clone(pipeline, tmp_path / "sweep")
    committed = yaml.safe_load((repo / "params.yaml").read_text())["train"]["lr"]
    dvc("exp", "run", "--queue", "-S", f"train.lr=1e-4,{committed}", cwd=repo)
    dvc("queue", "start", cwd=repo)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = dvc("queue", "status", cwd=repo)
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(0.5)
    assert status.count("Success") == 2, status
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo).stdout.split()
    lrs = set()
    for ref in refs:
        params = yaml.safe_load(run(["git", "show", f"{ref}:params.yaml"], repo).stdout)
        info = json.loads(run(["git", "show", f"{ref}:metrics/eval_info.json"], repo).stdout)
        assert info["provenance"]["params_sha256"] == params_hash(build(Config, params))
        lrs.add(float(params["train"]["lr"]))
    assert lrs == {1e-4, float(committed)}


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def write_zip_by_hand(path: Path, scenes: int, frames: int, tests: int) -> None:
    """A zip in nyu_data.zip's layout, written here with zipfile and Pillow (not with the project's writer): rooms as
    a floor ramp and a box, colours that follow depth so there is something to learn."""
    rng = np.random.default_rng(7)
    rows = np.arange(480, dtype=np.float64)[:, None] * np.ones((1, 640))

    def room() -> tuple[np.ndarray, np.ndarray]:
        depth = 8.0 - 6.0 * rows / 480 + rng.uniform(-0.5, 0.5)
        r0, c0 = rng.integers(100, 300), rng.integers(50, 450)
        depth[r0 : r0 + 120, c0 : c0 + 150] = rng.uniform(1.5, 3.0)
        rgb = np.stack([255 - depth * 25, depth * 20, rng.uniform(0, 255) * np.ones_like(depth)], -1)
        return np.clip(rgb, 0, 255).astype(np.uint8), depth

    train_csv, test_csv = [], []
    with zipfile.ZipFile(path, "w") as zf:
        for s in range(scenes):
            for f in range(1, frames + 1):
                rgb, depth = room()
                stem = f"data/nyu2_train/kitchen_{s:04d}_out/{f}"
                zf.writestr(stem + ".jpg", _jpeg(rgb))
                zf.writestr(stem + ".png", _png(np.clip(np.rint(depth / 10 * 255), 0, 255).astype(np.uint8)))
                train_csv.append(f"{stem}.jpg,{stem}.png")
        for t in range(tests):
            rgb, depth = room()
            stem = f"data/nyu2_test/{t:05d}"
            zf.writestr(stem + "_colors.png", _png(rgb))
            zf.writestr(stem + "_depth.png", _png(np.rint(depth * 1000).astype(np.uint16)))
            test_csv.append(f"{stem}_colors.png,{stem}_depth.png")
        zf.writestr("data/nyu2_train.csv", "\n".join(train_csv) + "\n")
        zf.writestr("data/nyu2_test.csv", "\n".join(test_csv) + "\n")


def test_densedepth_zip_goes_through_the_pipeline(tmp_path):
    archive = tmp_path / "nyu_data.zip"
    write_zip_by_hand(archive, scenes=4, frames=2, tests=2)
    repo = make_repo(tmp_path / "zip", TINY)  # nothing of the default run is reused: its own repository
    dvc("exp", "run", "-S", "data.source=densedepth", "-S", f"data.densedepth.path={archive}",
        "-S", "data.densedepth.val_fraction=0.25", "-S", "train.epochs=1", cwd=repo)  # fmt: skip
    info = json.loads((repo / "metrics/eval_info.json").read_text())
    provenance = info["provenance"]
    assert (provenance["source"], provenance["zip"], provenance["zip_test_pairs"]) == ("densedepth", archive.name, 2)
    assert provenance["num_test_images"] == 2 and provenance["split"] == "scenes"
    assert "raw depth" in info["unavailable"]["eigen"]
    evaluation = json.loads((repo / "metrics/eval.json").read_text())
    assert set(evaluation) == {"report", "densedepth"}
    splits = json.loads((repo / "data/splits.json").read_text())
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (6, 2, 2)  # one scene of 4 held out


def test_a_given_model_is_evaluated_on_the_zip_without_training(tmp_path):
    """model.init with train.epochs 0: the pipeline downloads, shards, validates, evaluates and compares the given
    model as it is. The file is what `depthcore import-keras` writes for the authors' nyu.h5 (their architecture's
    spec, no training config), here with random weights: the Keras conversion itself is tests/test_keras_import.py's."""
    archive = tmp_path / "nyu_data.zip"
    write_zip_by_hand(archive, scenes=4, frames=2, tests=2)
    torch.manual_seed(0)
    given = DenseDepth.from_spec(keras_spec("half", "corners"))
    repo = make_repo(tmp_path / "released", TINY)
    save_model(repo / "init/released.pt", given, keras_spec("half", "corners"), config=None, epochs=0, origin="test")
    out = dvc("exp", "run", "-S", "data.source=densedepth", "-S", f"data.densedepth.path={archive}",
              "-S", "data.densedepth.val_fraction=0.25", "-S", "model.init=init/released.pt",
              "-S", "train.epochs=0", "-S", "model.downsample=false", "-S", "model.decoder=half",
              "-S", "eval.protocols=[densedepth]", cwd=repo)  # fmt: skip
    assert "train.epochs is 0: no optimizer step" in out
    saved = torch.load(repo / "models/model.pt", weights_only=True)
    assert saved["epochs"] == 0 and saved["spec"]["bn_eps"] == pytest.approx(1.001e-5)
    assert all(torch.equal(saved["model"][k], v) for k, v in given.state_dict().items())
    logged = json.loads((repo / "dvclive/metrics.json").read_text())
    assert "val_loss" in logged and "train_loss" not in logged
    info = json.loads((repo / "metrics/eval_info.json").read_text())
    assert info["notes"] == {}  # the zip's test pairs are NYU's official test images: comparable under densedepth
    comparison = (repo / "metrics/comparison.md").read_text()
    assert "released model nyu.h5, the authors' re-evaluation" in comparison
    # another file under the same name: DVC hashes init/ (a dep of train) and runs train again
    torch.manual_seed(1)
    other = DenseDepth.from_spec(keras_spec("half", "corners"))
    save_model(repo / "init/released.pt", other, keras_spec("half", "corners"), config=None, epochs=0, origin="test")
    out = dvc("repro", cwd=repo)
    assert "Running stage 'train'" in out
    saved = torch.load(repo / "models/model.pt", weights_only=True)
    assert all(torch.equal(saved["model"][k], v) for k, v in other.state_dict().items())


def test_a_bad_param_stops_a_stage_with_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text(
        (ROOT / "params.yaml").read_text().replace("downsample: true", "downsample: maybe")
    )
    done = run([sys.executable, str(ROOT / "stages/download.py")], tmp_path, ok=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        "error: model.downsample: expected a boolean (true or false), got 'maybe' (str)"
    )

