"""dvc.yaml's code deps follow the imports: every stage lists exactly the depthcore modules its script needs, so a
change to any of them reruns the stage (and nothing it does not use); the checkpoint fingerprint covers the training
code the same way, and the baselines' provenance hash the params that stage depends on."""

from __future__ import annotations

import pytest
import yaml

from depthcore.evaluate import BASELINE_PARAMS
from depthcore.train import TRAINING_CODE
from tests.helpers import PACKAGE, ROOT, import_closure

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
#: Modules the train stage imports that cannot change the trained weights (pictures, progress, file writing, error
#: reporting, where files live): a change to them may rerun the stage, which then restores the finished checkpoint
#: instead of training again. `inference` is training code: the loop prepares the network with it.
NOT_TRAINING_CODE = {"visualize", "progress", "files", "errors", "paths"}


def listed_modules(stage: str) -> set[str]:
    deps = STAGES[stage]["deps"]
    return {dep.removeprefix(f"{PACKAGE}/").removesuffix(".py") for dep in deps if dep.startswith(f"{PACKAGE}/")}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_lists_exactly_its_import_closure(stage):
    script = STAGES[stage]["cmd"].split()[-1]
    assert script.startswith("stages/") and f"{script}" in STAGES[stage]["deps"]
    needed = import_closure(ROOT / script)
    assert listed_modules(stage) - needed == set(), "listed but not imported"
    assert needed - listed_modules(stage) == set(), "imported but not listed: a change to it would not rerun"


def test_fingerprint_covers_the_training_code():
    closure = import_closure(ROOT / PACKAGE / "train.py") | {"train"}
    assert set(TRAINING_CODE) == closure - NOT_TRAINING_CODE
    assert NOT_TRAINING_CODE <= closure  # the exemptions are real imports, each argued above


def test_the_baselines_provenance_hashes_the_params_the_stage_depends_on():
    assert STAGES["baselines"]["params"] == list(BASELINE_PARAMS)
