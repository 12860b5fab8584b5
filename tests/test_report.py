"""depthcore.report: comparability notes (their rule: tests/test_sources.py), numbers-only records in headline
order, the info files' settings, the whole comparison table and its markdown: one table per protocol and definitions
written from the settings in force."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import torch
from kornia.filters import sobel

from depthcore.evaluate import BASELINE_PARAMS
from depthcore.metrics import METRIC_KEYS, PROTOCOLS, MetricAccumulator
from depthcore.report import (
    BETTER,
    RECORD_KEYS,
    SOBEL_STEP_PEAK,
    ComparisonError,
    Measured,
    comparison_markdown,
    comparison_table,
    eval_settings,
    info_record,
    metrics_record,
    params_hash,
    protocol_summary,
)
from tests.helpers import ROOT, make_config

SYNTHETIC = {"source": "synthetic", "split": "random", "num_test_images": 1, "params_sha256": "0" * 16}
OFFICIAL = {**SYNTHETIC, "source": "nyuv2", "split": "official"}
SETTINGS = {"edge_threshold": 0.2, "ssim_data_range": {"mssim": 10.0, "mssim_255": 255.0}}
MEASURED_METHODS = {
    "this run",
    "random guess, uniform (0, 10] m",
    "mean training depth",
    "oracle: ground truth at the model's output resolution",
}
NO_RAW_DEPTH = {"eigen": "no raw depth"}


@pytest.fixture(scope="module")
def record() -> dict:
    accs = {}
    for name in PROTOCOLS:
        acc = MetricAccumulator(name)
        gt = torch.full((1, 480, 640), 2.0)
        acc.update(gt * 1.1, gt, gt)  # every pixel 10 % too far: delta1 = 1, rel = 0.1
        accs[name] = acc
    return metrics_record(accs)


@pytest.fixture(scope="module")
def published() -> pd.DataFrame:
    return pd.read_csv(ROOT / "references/published_nyuv2.csv")


def measured(record: dict, origin: dict = SYNTHETIC, unusable: dict | None = None, threshold: float = 0.2) -> Measured:
    """What evaluate and baselines would write for `record` (every baseline scoring as the run does)."""
    unusable = unusable or {}
    settings = {**SETTINGS, "edge_threshold": threshold}
    evaluation = {name: values for name, values in record.items() if name not in unusable}
    return Measured(
        evaluation=evaluation,
        eval_info=info_record(origin, list(evaluation), unusable, settings),
        baselines={name: evaluation for name in ("random", "mean_depth", "oracle")},
        baselines_info=info_record(origin, list(evaluation), unusable, {**settings, "random_guess_max": 10.0}),
    )


def markdown_of(run: Measured, published: pd.DataFrame) -> str:
    return comparison_markdown(comparison_table(run, published), run)


def sections(markdown: str) -> dict[str, str]:
    """The markdown's sections by heading: a protocol's name, or "Definitions"."""
    parts = re.split(r"^## ", markdown, flags=re.MULTILINE)[1:]
    return {part.split("`")[1] if part.startswith("`") else part.split("\n")[0]: part for part in parts}


def table_cells(section: str) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of the one table in a section, as stripped cells."""
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header, _, *rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return header, rows


def test_record_holds_only_numbers_headline_first(record):
    for name in PROTOCOLS:
        assert list(record[name]) == list(RECORD_KEYS) and list(RECORD_KEYS)[:3] == ["delta1", "rel", "rms"]
        assert set(METRIC_KEYS) <= set(record[name])
        assert record[name]["delta1"] == 1.0 and record[name]["rel"] == pytest.approx(0.1)
        assert record[name]["edge_f1"] is None  # flat ground truth: no edges, no F1
        assert all(value is None or isinstance(value, (int, float)) for value in record[name].values())


def test_info_holds_provenance_notes_unavailable_protocols_and_the_settings():
    info = info_record(SYNTHETIC, list(PROTOCOLS), {}, SETTINGS)
    assert all("synthetic" in info["notes"][name] for name in PROTOCOLS) and info["eval"] == SETTINGS
    real = info_record(OFFICIAL, ["report", "densedepth"], {}, SETTINGS)
    assert set(real["notes"]) == {"report"}  # only the report protocol was published on a random split
    zipped = info_record({**SYNTHETIC, "source": "densedepth"}, ["report"], NO_RAW_DEPTH, SETTINGS)
    assert zipped["unavailable"] == NO_RAW_DEPTH


def test_the_settings_in_force_travel_with_the_numbers():
    settings = eval_settings(make_config(**{"eval.edge_threshold": 0.5}))
    assert settings == {"edge_threshold": 0.5, "ssim_data_range": {"mssim": 10.0, "mssim_255": 255.0}}


@pytest.mark.parametrize("step", [1.0, 0.4])
def test_kornia_sobel_peaks_at_half_a_depth_step(step):
    depth = torch.full((1, 1, 8, 8), 2.0)
    depth[..., 4:] += step  # a step of `step` metres between columns 3 and 4
    # by hand: the normalised kernel [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]] / 8 gives (1 + 2 + 1) / 8 = step / 2 beside it
    peak = sobel(depth).max().item()
    assert peak == pytest.approx(step / 2, abs=1e-5)
    assert peak / step == pytest.approx(SOBEL_STEP_PEAK, abs=1e-5)  # so a threshold t marks steps over 2t m


@pytest.mark.parametrize(
    ("threshold", "stated", "not_stated"),
    [
        (0.5, "over 0.5 (eval.edge_threshold), i.e. beside depth steps over 1 m;", "0.4 m"),
        (0.2, "over 0.2 (eval.edge_threshold), i.e. beside depth steps over 0.4 m;", "over 1 m"),
    ],
)
def test_the_edge_definition_follows_the_threshold_in_force(record, published, threshold, stated, not_stated):
    definitions = sections(markdown_of(measured(record, threshold=threshold), published))["Definitions"]
    assert stated in definitions and not_stated not in definitions
    assert "data range 10 m" in definitions and "data range 255," in definitions
    assert "random guess, uniform (0, 10] m" in definitions


def test_each_protocol_table_holds_its_own_rows_and_no_nan(record, published):
    markdown = markdown_of(measured(record), published)
    assert "nan" not in markdown.lower()
    by_protocol = sections(markdown)
    assert list(by_protocol) == [*PROTOCOLS, "Definitions"]
    for name in PROTOCOLS:
        _, rows = table_cells(by_protocol[name])
        theirs = set(published["method"][published["protocol"] == name])
        assert {row[0] for row in rows} == MEASURED_METHODS | theirs, name
        assert len(rows) == len(MEASURED_METHODS) + len(theirs)
        assert all(cell != "" for row in rows for cell in row)  # a missing value reads "-"


def test_a_table_holds_the_metrics_its_published_rows_report(record, published):
    by_protocol = sections(markdown_of(measured(record), published))
    assert table_cells(by_protocol["eigen"])[0] == ["method", "data", "delta1 ↑", "rel ↓", "rms ↓"]
    report_header = table_cells(by_protocol["report"])[0]
    assert {"mssim_255 ↑", "edge_f1 ↑", "log10 ↓"} <= set(report_header)
    assert not {"mssim ↑", "silog ↓", "sq_rel ↓", "rmse_log ↓"} & set(report_header)


def test_a_published_edge_f1_at_another_threshold_is_left_out(record, published):
    run = measured(record, threshold=0.5)
    report = sections(markdown_of(run, published))["report"]
    assert "edge_f1 ↑" not in table_cells(report)[0]
    assert "threshold 0.2 (depth steps over 0.4 m), this run 0.5 (steps over 1 m)" in report
    table = comparison_table(run, published)
    assert (table.loc[table["method"] == "this run", "edge_threshold"] == 0.5).all()


def test_the_csv_keeps_every_row_and_column_with_missing_values_empty(record, published, tmp_path):
    table = comparison_table(measured(record), published)
    assert set(METRIC_KEYS) <= set(table.columns) and len(table) == 4 * len(PROTOCOLS) + len(published)
    table.to_csv(tmp_path / "comparison.csv", index=False, float_format="%.6f")
    text = (tmp_path / "comparison.csv").read_text()
    assert "nan" not in text.lower()
    back = pd.read_csv(tmp_path / "comparison.csv").set_index("method")
    assert back.loc["BTS", "delta1"] == 0.885 and pd.isna(back.loc["BTS", "delta2"])
    rows = {row["method"]: row for row in json.loads(table.to_json(orient="records"))}
    assert rows["BTS"]["delta2"] is None and rows["BTS"]["note"] is None


def test_the_authors_re_evaluation_of_the_released_model_is_a_densedepth_row(record, published):
    row = published[published["source"].str.contains("DenseDepth issue #75", regex=False)]
    assert len(row) == 1
    row = row.iloc[0]
    assert "the authors' re-evaluation" in row["method"] and "nyu.h5" in row["method"]
    assert row["protocol"] == "densedepth"
    assert (row["delta1"], row["rel"], row["rms"]) == (0.847, 0.127, 0.549)
    assert row[[key for key in METRIC_KEYS if key not in ("delta1", "rel", "rms")]].isna().all()
    densedepth = sections(markdown_of(measured(record), published))["densedepth"]
    cells = next(cells for cells in table_cells(densedepth)[1] if cells[0] == row["method"])
    assert cells[1:] == ["NYUv2 (published)", "0.847", "-", "-", "0.127", "0.549", "-"]
    assert "DenseDepth issue #75" in densedepth


def test_the_reports_published_mssim_and_edge_f1_sit_in_like_for_like_columns(published):
    rows = published.set_index("method")
    assert rows.loc["random guess, as reported", "mssim_255"] == 0.745
    assert published["mssim"].isna().all()  # no published mSSIM was measured with a 10 m data range
    assert (published["edge_threshold"][published["edge_f1"].notna()] == 0.2).all()  # the report's threshold


def test_notes_say_which_protocols_do_not_compare_and_which_did_not_run(record, published):
    synthetic = markdown_of(measured(record, unusable=NO_RAW_DEPTH), published)
    assert "**Not comparable:** under `report`, `densedepth` this run" in synthetic
    by_protocol = sections(synthetic)
    note = "> Synthetic data: not NYU Depth v2 images, so not comparable with published NYUv2 numbers."
    assert note in by_protocol["report"]
    assert "> Not evaluated here: no raw depth." in by_protocol["eigen"]
    assert {row[0] for row in table_cells(by_protocol["eigen"])[1]} == {"BTS", "AdaBins", "ZoeDepth"}
    real = markdown_of(measured(record, OFFICIAL), published)
    assert "**Not comparable:** under `report` this run" in real
    assert "Not comparable" not in markdown_of(measured({"densedepth": record["densedepth"]}, OFFICIAL), published)


def test_the_comparison_needs_both_stages_settings_and_the_same_ones(record, published):
    run = measured(record)
    stale = Measured(run.evaluation, run.eval_info, run.baselines, {**run.baselines_info, "eval": {
        **run.baselines_info["eval"], "edge_threshold": 0.5}})  # fmt: skip
    with pytest.raises(ComparisonError, match="edge_threshold"):
        comparison_table(stale, published)
    older = Measured(run.evaluation, {key: v for key, v in run.eval_info.items() if key != "eval"}, run.baselines,
                     run.baselines_info)  # fmt: skip
    with pytest.raises(ComparisonError, match="eval_info.json"):
        comparison_table(older, published)
    with pytest.raises(ComparisonError, match="edge_threshold for every edge_f1"):
        comparison_table(run, published.assign(edge_threshold=None))


def test_which_way_is_better_is_named_for_every_metric():
    higher = {"delta1", "delta2", "delta3", "mssim", "mssim_255", "edge_f1"}
    assert BETTER == {key: "higher" if key in higher else "lower" for key in METRIC_KEYS}
    assert [BETTER[key] for key in ("rel", "sq_rel", "rms", "rmse_log", "log10", "silog")] == ["lower"] * 6


def test_protocols_are_told_from_their_fields():
    assert protocol_summary(PROTOCOLS["report"]).startswith("Ground truth: filled depths; the full frame;")
    densedepth = protocol_summary(PROTOCOLS["densedepth"])
    assert "crop rows 20:460, columns 24:616 of the 480x640 frame" in densedepth
    assert "predictions clamped to [0.1, 10] m" in densedepth and "pooled" in densedepth
    assert "raw depths (0 = no reading) in (0.001, 10) m" in protocol_summary(PROTOCOLS["eigen"])


def test_a_stage_hash_moves_only_with_the_params_it_reads():
    base = make_config()
    trained_longer = make_config(**{"train.epochs": 9, "train.lr": 1e-3})
    for changed in ({"model.downsample": False}, {"eval.batch_size": 3}, {"data.seed": 5}):
        other = make_config(**changed)
        assert params_hash(other, BASELINE_PARAMS) != params_hash(base, BASELINE_PARAMS), changed
        assert params_hash(other) != params_hash(base), changed
    assert params_hash(trained_longer, BASELINE_PARAMS) == params_hash(base, BASELINE_PARAMS)
    assert params_hash(trained_longer) != params_hash(base)  # the whole-run hash (eval_info) does move
