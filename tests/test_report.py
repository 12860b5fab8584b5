"""depthcore.report: comparability notes, numbers-only records in headline order, the comparison table's rows and
its notes."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from depthcore.evaluate import BASELINE_PARAMS
from depthcore.metrics import METRIC_KEYS, PROTOCOLS, MetricAccumulator
from depthcore.report import (
    RECORD_KEYS,
    comparability,
    comparison_markdown,
    comparison_table,
    info_record,
    metrics_record,
    params_hash,
)
from tests.helpers import ROOT, make_config

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
        ("densedepth", "densedepth", "scenes", False),
    ],
)
def test_comparable_only_on_nyuv2_and_the_published_split(protocol, source, split, comparable):
    note = comparability(protocol, {"source": source, "split": split})
    assert (note == "") is comparable


def _record() -> dict:
    accs = {}
    for name in PROTOCOLS:
        acc = MetricAccumulator(name)
        gt = torch.full((1, 480, 640), 2.0)
        acc.update(gt * 1.1, gt, gt)  # every pixel 10 % too far: delta1 = 1, rel = 0.1
        accs[name] = acc
    return metrics_record(accs)


def test_record_holds_only_numbers_headline_first():
    record = _record()
    for name in PROTOCOLS:
        assert list(record[name]) == list(RECORD_KEYS) and list(RECORD_KEYS)[:3] == ["delta1", "rel", "rms"]
        assert set(METRIC_KEYS) <= set(record[name])
        assert record[name]["delta1"] == 1.0 and record[name]["rel"] == pytest.approx(0.1)
        assert record[name]["edge_f1"] is None  # flat ground truth: no edges, no F1
        assert all(value is None or isinstance(value, (int, float)) for value in record[name].values())


def test_info_holds_provenance_notes_and_unavailable_protocols():
    info = info_record(SYNTHETIC, list(PROTOCOLS), {})
    assert all("synthetic" in info["notes"][name] for name in PROTOCOLS)
    real = info_record({**SYNTHETIC, "source": "nyuv2", "split": "official"}, ["report", "densedepth"], {})
    assert set(real["notes"]) == {"report"}  # only the report protocol was published on a random split
    zipped = info_record({**SYNTHETIC, "source": "densedepth"}, ["report"], {"eigen": "no raw depth"})
    assert zipped["unavailable"] == {"eigen": "no raw depth"}


def test_table_has_this_run_baselines_and_every_published_row():
    evaluation, info = _record(), info_record(SYNTHETIC, list(PROTOCOLS), {"eigen": "no raw depth"})
    baselines = {"random": _record(), "mean_depth": _record(), "oracle": _record()}
    published = pd.read_csv(ROOT / "references/published_nyuv2.csv")
    table = comparison_table(evaluation, info, baselines, published)
    assert len(table) == 4 * len(PROTOCOLS) + len(published)
    assert list(table["method"][-len(published) :]) == list(published["method"])
    assert (table["method"] == "this run").sum() == len(PROTOCOLS)
    markdown = comparison_markdown(table, info)
    assert "This run used synthetic data" in markdown and "not comparable" in markdown
    assert "`eigen`: not evaluated: no raw depth" in markdown
    assert "mssim_255" in markdown and "issue #98" in markdown  # the definitions are stated
    real = info_record({**SYNTHETIC, "source": "nyuv2", "split": "official"}, list(PROTOCOLS), {})
    assert "This run used" not in comparison_markdown(comparison_table(evaluation, real, baselines, published), real)


def test_the_reports_published_mssim_sits_in_the_column_it_was_measured_in():
    published = pd.read_csv(ROOT / "references/published_nyuv2.csv").set_index("method")
    assert published.loc["random guess, as reported", "mssim_255"] == 0.745
    assert published["mssim"].isna().all()  # no published mSSIM was measured with a 10 m data range


def test_a_stage_hash_moves_only_with_the_params_it_reads():
    base = make_config()
    trained_longer = make_config(**{"train.epochs": 9, "train.lr": 1e-3})
    for changed in ({"model.downsample": False}, {"eval.batch_size": 3}, {"data.seed": 5}):
        other = make_config(**changed)
        assert params_hash(other, BASELINE_PARAMS) != params_hash(base, BASELINE_PARAMS), changed
        assert params_hash(other) != params_hash(base), changed
    assert params_hash(trained_longer, BASELINE_PARAMS) == params_hash(base, BASELINE_PARAMS)
    assert params_hash(trained_longer) != params_hash(base)  # the whole-run hash (eval_info) does move
