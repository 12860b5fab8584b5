"""Helpers shared by the tests: configs built from the committed params.yaml, the package's import graph, and runs
built once for every test process."""

from __future__ import annotations

import ast
import dataclasses
import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

from depthcore.config import Config, SplitConfig, build
from depthcore.model import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "depthcore"
SHARED_ENV = "DEPTHCORE_TEST_SHARED"  # a folder for the whole test run, made and removed by tests/conftest.py


def built_once(name: str, build: Callable[[Path], None]) -> Path:
    """The folder `name` in the test run's shared folder, filled by `build(folder)` in the first test process that asks
    for it; every other process (pytest-xdist worker) waits for that and then uses the same folder, which tests must
    not change. A build that raises is not marked as built: the next process to ask starts it afresh."""
    root = Path(os.environ[SHARED_ENV])
    folder, built = root / name, root / f"{name}.built"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not built.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            built.touch()
    return folder


def make_config(**overrides) -> Config:
    """params.yaml with dotted overrides, e.g. make_config(**{"train.epochs": 2})."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, value in overrides.items():
        *sections, key = dotted.split(".")
        node = raw
        for section in sections:
            node = node[section]
        node[key] = value
    return build(Config, raw)


def split_config(method: str = "random", **fields: object) -> SplitConfig:
    """`data.split` of params.yaml with `method` and other fields replaced, unchecked (for make_splits' own checks)."""
    return dataclasses.replace(make_config().data.split, method=method, **fields)


def tiny_train_config(**overrides) -> Config:
    """A config that trains in seconds on the tiny shards: 2 epochs of 2 steps, fp32 on the CPU, no workers, a constant
    learning rate and no clipping (bookkeeping tests must not change with the default recipe)."""
    settings = {
        "train.epochs": 2,
        "train.schedule": "constant",
        "train.warmup_fraction": 0.0,
        "train.grad_clip": 0.0,
        "train.batch_size": 2,
        "train.device": "cpu",
        "train.precision": "fp32",
        "train.num_workers": 0,
        "train.num_vis": 1,
        "eval.batch_size": 2,
        "eval.num_vis": 1,
    }
    return make_config(**{**settings, **overrides})


def depthcore_status(*args: str | Path) -> int:
    """`depthcore ARGS` in this process (`depthcore.cli.main`) -> its exit status."""
    from depthcore.cli import main  # the whole command, torch included: only the tests that run it pay the import

    try:
        main([str(arg) for arg in args])
    except SystemExit as exit_:
        return exit_.code
    return 0


def module_names(dotted: str) -> set[str]:
    """The package files that importing `dotted` runs, as paths under depthcore/ without ".py": the module and the
    `__init__` of every subpackage on the way ("depthcore.sources.nyu_mat" -> sources/__init__, sources/nyu_mat).
    None for a name that is not a module of the package (an attribute)."""
    parts = dotted.split(".")[1:]
    names = {"/".join(parts[:k]) + "/__init__" for k in range(1, len(parts))}
    path = "/".join(parts)
    if (ROOT / PACKAGE / path).is_dir():
        return names | {path + "/__init__"}
    return names | {path} if (ROOT / PACKAGE / f"{path}.py").is_file() else None


def package_imports(path: Path) -> set[str]:
    """The depthcore modules (`module_names`) the Python file at `path` imports directly (`from depthcore.x import
    y`, `import depthcore.x`, `from depthcore import x`, `from depthcore.sources import nyuv2`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            if node.module != PACKAGE:
                found |= module_names(node.module)
            for alias in node.names:  # a submodule imported by name
                found |= module_names(f"{node.module}.{alias.name}") or set()
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + "."):
                    found |= module_names(alias.name)
    return found


def import_closure(path: Path) -> set[str]:
    """Every depthcore module that the file at `path` needs, directly or through other depthcore modules."""
    seen: set[str] = set()
    todo = list(package_imports(path))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(package_imports(ROOT / PACKAGE / f"{name}.py"))
    return seen


class TinyDepthNet(torch.nn.Module):
    """(B, 3, H, W) -> (B, 1, H/8, W/8): three strided convolutions standing in for DenseDepth (43 MB of weights)
    where a test checks bookkeeping, not learning. `tiny_model` is a `depthcore.train.ModelFactory`."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 8, 3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 1, 3, stride=2, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x) + 10.0  # about the middle of the DepthNorm range [1, 100]


def tiny_model(config: Config) -> tuple[TinyDepthNet, ModelSpec]:
    torch.manual_seed(config.seed)
    return TinyDepthNet(), ModelSpec.from_config(config)
