"""depthcore.report: comparability notes, the comparison table's rows and the markdown warning."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from depthcore.metrics import METRIC_KEYS, PROTOCOLS, MetricAccumulator
from depthcore.report import comparability, comparison_markdown, comparison_table, protocol_record
from tests.helpers import ROOT

SYNTHETIC = {"source": "synthetic", "split": "random", "num_test_images": 1, "params_sha256": "0" * 16}


@pytest.mark.parametrize(
    ("protocol", "source", "split", "comparable"),
    [
        ("report", "nyuv2", "random", True),
        ("report", "nyuv2", "official", False),
        ("densedepth", "nyuv2", "official", True),
        ("eigen", "nyuv2", "official", True),
        ("eigen", "nyuv2", "random", False),
        ("densedepth", "synthetic", "official", False),
    ],
)
def test_comparable_only_on_nyuv2_and_the_published_split(protocol, source, split, comparable):
    note = comparability(protocol, {"source": source, "split": split})
    assert (note == "") is comparable


def _record(origin: dict) -> dict:
    accs = {}
    for name in PROTOCOLS:
        acc = MetricAccumulator(name)
        gt = torch.full((1, 480, 640), 2.0)
        acc.update(gt * 1.1, gt, gt)  # every pixel 10 % too far: delta1 = 1, rel = 0.1
        accs[name] = acc
    return {"provenance": origin, **protocol_record(accs, origin)}


def test_record_holds_numbers_per_protocol_and_notes_apart():
    record = _record(SYNTHETIC)
    for name in PROTOCOLS:
        assert set(record[name]) == {*METRIC_KEYS, "num_images"}
        assert record[name]["delta1"] == 1.0 and record[name]["rel"] == pytest.approx(0.1)
        assert "synthetic" in record["notes"][name]
    real = _record({**SYNTHETIC, "source": "nyuv2", "split": "official"})
    assert set(real["notes"]) == {"report"}  # only the report protocol was published on a random split


def test_table_has_this_run_baselines_and_every_published_row():
    evaluation = _record(SYNTHETIC)
    baselines = {"random": _record(SYNTHETIC), "mean_depth": _record(SYNTHETIC)}
    published = pd.read_csv(ROOT / "references/published_nyuv2.csv")
    table = comparison_table(evaluation, baselines, published)
    assert len(table) == 3 * len(PROTOCOLS) + len(published)
    assert list(table["method"][-len(published) :]) == list(published["method"])
    assert (table["method"] == "this run").sum() == len(PROTOCOLS)
    markdown = comparison_markdown(table, evaluation)
    assert "This run used synthetic data" in markdown and "not comparable" in markdown
    real = _record({**SYNTHETIC, "source": "nyuv2", "split": "official"})
    assert "This run used" not in comparison_markdown(comparison_table(real, baselines, published), real)
