"""Metrics files and comparison tables: what evaluate, baselines and compare write.

A metrics file (`metrics/eval.json`, `metrics/baselines.json`) holds numbers only, headline figures first, so that
`dvc metrics show`, `dvc metrics diff` and `dvc exp show` have columns to show; the strings that say where the
numbers come from (provenance: data source, split, test images, a hash of the params), why a protocol's numbers do
not compare with the published ones, which protocols could not run, and the evaluation settings the numbers were
measured with (`eval`: edge threshold, SSIM data ranges, the random guess's range) live in an info file beside it
(`metrics/eval_info.json`, `metrics/baselines_info.json`). The comparison (`metrics/comparison.*`) is written from
these files, the protocol table (`depthcore.metrics.PROTOCOLS`) and the published rows only: its definitions state
the settings that were measured with, never params.yaml's.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from depthcore.config import Config, as_dict
from depthcore.errors import DepthcoreError
from depthcore.files import write_text
from depthcore.metrics import (
    DELTA_BASE,
    HIGHER_IS_BETTER,
    METRIC_KEYS,
    PROTOCOLS,
    SSIM_DATA_RANGE,
    SSIM_DATA_RANGE_255,
    SSIM_SIGMA,
    SSIM_WINDOW,
    MetricAccumulator,
    Protocol,
)
from depthcore.nyu import FRAME_SHAPE
from depthcore.paths import BASELINES_INFO, EVAL_INFO, PUBLISHED
from depthcore.sources import comparability

#: The order of a protocol's entries in a metrics file: the headline figures first, the counts last.
RECORD_KEYS = (
    "delta1", "rel", "rms",
    *(key for key in METRIC_KEYS if key not in ("delta1", "rel", "rms")),
    "edge_f1_pooled", "edge_f1_images", "num_images",
)  # fmt: skip
#: Which way each metric is better: higher for those of depthcore.metrics.HIGHER_IS_BETTER, lower for the rest.
BETTER = {key: "higher" if key in HIGHER_IS_BETTER else "lower" for key in METRIC_KEYS}
ARROWS = {"higher": "↑", "lower": "↓"}
#: Peak magnitude of `kornia.filters.sobel` (its normalised kernel) beside a step in a depth map in metres, per metre of
#: step: a 1 m step peaks at 0.5 (measured; tests/test_report.py measures it again), so a threshold t marks depth steps
#: over t / SOBEL_STEP_PEAK = 2t m.
SOBEL_STEP_PEAK = 0.5
#: Columns of the whole comparison (comparison.csv, comparison.json); a missing value is NaN there (empty, null).
TABLE_COLUMNS = ("method", "protocol", "data", *METRIC_KEYS, "edge_threshold", "quoted from", "note")
#: Columns of references/published_nyuv2.csv; its edge_threshold is the one a published edge_f1 was measured at.
PUBLISHED_COLUMNS = ("method", "protocol", *METRIC_KEYS, "edge_threshold", "source", "note")
PUBLISHED_DATA = "NYUv2 (published)"
MISSING = "-"  # a value that does not exist, in the markdown tables
GROUND_TRUTH = {"depths": "filled depths", "rawDepths": "raw depths (0 = no reading)"}
AGGREGATION = {
    "per_image": "depth errors averaged per image",
    "pooled": "depth errors pooled over every valid pixel of every image",
}


class ComparisonError(DepthcoreError):
    """The files the comparison is written from do not fit together."""


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def provenance(config: Config, manifest: dict, params: Sequence[str] | None = None) -> dict[str, Any]:
    """Where a metrics record comes from: the shards' provenance (data source, split method, seed, and for a zip its
    name and pair counts), the number of test images, and a hash of the params that made it (`params_hash`)."""
    counts = {"num_test_images": manifest["counts"]["test"]}
    return {**manifest["provenance"], **counts, "params_sha256": params_hash(config, params)}


def params_hash(config: Config, params: Sequence[str] | None = None) -> str:
    """The first 16 hex digits of the SHA-256 of the resolved params (a run can be told from its metrics): all of
    them, or only the sections and keys named in `params` ("eval", "model.downsample"), those a stage reads."""
    resolved = as_dict(config)
    if params is not None:
        resolved = {name: _lookup(resolved, name) for name in params}
    return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:16]


def _lookup(resolved: dict, dotted: str) -> Any:
    for key in dotted.split("."):
        resolved = resolved[key]
    return resolved


def eval_settings(config: Config) -> dict[str, Any]:
    """The evaluation settings in force, for an info file's `eval` entry: the edge threshold (eval.edge_threshold)
    and the SSIM data ranges of mssim and mssim_255, in the units of depthcore.metrics."""
    return {
        "edge_threshold": config.eval.edge_threshold,
        "ssim_data_range": {"mssim": SSIM_DATA_RANGE, "mssim_255": SSIM_DATA_RANGE_255},
    }


def edge_step(threshold: float) -> float:
    """The smallest depth step (m) whose Sobel peak is over an edge threshold on depth in metres: 2 x threshold."""
    return threshold / SOBEL_STEP_PEAK


def metrics_record(accumulators: dict[str, MetricAccumulator]) -> dict[str, dict[str, float | int | None]]:
    """Numbers only: per protocol, the metrics in RECORD_KEYS order (the protocol's aggregation), rounded to 6
    digits; None where a metric has no value (edge F1 when no ground truth has an edge)."""
    record = {}
    for name, acc in accumulators.items():
        result = acc.result()
        record[name] = {key: _round(result[key]) for key in RECORD_KEYS}
    return record


def info_record(
    origin: dict[str, Any], protocols: list[str], unusable: dict[str, str], settings: dict[str, Any]
) -> dict[str, Any]:
    """The strings beside a metrics file: provenance, why protocols do not compare with published numbers, the
    protocols that could not run on this data with the reason, and the evaluation settings (`eval_settings`)."""
    notes = {name: note for name in protocols
             if (note := comparability(origin, name, PROTOCOLS[name].published_split))}
    return {"provenance": origin, "notes": notes, "unavailable": unusable, "eval": settings}


def per_image_table(accumulators: dict[str, MetricAccumulator], source_indices: list[int]) -> pd.DataFrame:
    """Long table: one row per (protocol, test image) with the image's index in the source."""
    frames = []
    for name, acc in accumulators.items():
        frame = pd.DataFrame(acc.rows())
        frame.insert(0, "protocol", name)
        frame.insert(2, "source_index", [source_indices[i] for i in frame["image"]])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class Measured:
    """What the evaluate and baselines stages wrote: their metrics files and the info files beside them."""

    evaluation: dict[str, dict]  # metrics/eval.json: protocol -> RECORD_KEYS
    eval_info: dict[str, Any]  # metrics/eval_info.json: provenance, notes, unavailable, eval (settings)
    baselines: dict[str, dict[str, dict]]  # metrics/baselines.json: baseline -> protocol -> RECORD_KEYS
    baselines_info: dict[str, Any]  # metrics/baselines_info.json: the same, with the random guess's range in eval

    def settings(self) -> dict[str, Any]:
        """The settings both stages measured with, the baselines' (a superset); raises ComparisonError where an info
        file has none or the two differ (a stage's outputs are older than the other's)."""
        for path, info in ((EVAL_INFO, self.eval_info), (BASELINES_INFO, self.baselines_info)):
            if "eval" not in info:
                raise ComparisonError(f"expected the evaluation settings ('eval') in {path}, found none: an older "
                                      "stage wrote it; rerun the pipeline (dvc repro)")  # fmt: skip
        run, baselines = self.eval_info["eval"], self.baselines_info["eval"]
        differing = {key: (value, baselines.get(key)) for key, value in run.items() if baselines.get(key) != value}
        if differing:
            raise ComparisonError(f"expected the baselines measured with the evaluation's settings, got (evaluation, "
                                  f"baselines) {differing}; rerun the pipeline (dvc repro)")  # fmt: skip
        return baselines

    def data(self) -> str:
        """The data the rows measured here come from, for the tables' data column."""
        origin = self.eval_info["provenance"]
        return f"{origin['source']} data ({origin['split']} split, {origin['num_test_images']} test images)"


def baseline_labels(settings: dict[str, Any]) -> dict[str, str]:
    """The table's name for each baseline of metrics/baselines.json, with the settings it was measured with."""
    return {
        "random": f"random guess, uniform (0, {settings['random_guess_max']:g}] m",
        "mean_depth": "mean training depth",
        "oracle": "oracle: ground truth at the model's output resolution",
    }


def comparison_table(measured: Measured, published: pd.DataFrame) -> pd.DataFrame:
    """Every row with every metric (TABLE_COLUMNS): this run under each protocol, the baselines measured here, then
    the published rows; NaN where a value does not exist."""
    _check_published(published)
    settings = measured.settings()
    records = {"this run": measured.evaluation}
    records |= {label: measured.baselines.get(key, {}) for key, label in baseline_labels(settings).items()}
    common = {"data": measured.data(), "edge_threshold": settings["edge_threshold"]}
    rows = [
        {"method": method, "protocol": name, **common, **{key: by_protocol[name].get(key) for key in METRIC_KEYS}}
        for method, by_protocol in records.items()
        for name in PROTOCOLS
        if name in by_protocol
    ]
    quoted = published.assign(data=PUBLISHED_DATA).rename(columns={"source": "quoted from"})
    table = pd.concat([pd.DataFrame(rows), quoted], ignore_index=True)
    return table[list(TABLE_COLUMNS)]


def _check_published(published: pd.DataFrame) -> None:
    if tuple(published.columns) != PUBLISHED_COLUMNS:
        raise ComparisonError(f"expected the columns {list(PUBLISHED_COLUMNS)} in {PUBLISHED}, got "
                              f"{list(published.columns)}")  # fmt: skip
    unknown = sorted(set(published["protocol"]) - set(PROTOCOLS))
    if unknown:
        raise ComparisonError(f"expected protocols from {sorted(PROTOCOLS)} in {PUBLISHED}, got {unknown}")
    unstated = published["edge_f1"].notna() & published["edge_threshold"].isna()
    if unstated.any():
        raise ComparisonError(f"expected an edge_threshold for every edge_f1 in {PUBLISHED}, got none for "
                              f"{list(published['method'][unstated])}")  # fmt: skip


def comparison_markdown(table: pd.DataFrame, measured: Measured) -> str:
    """For people: a short introduction, one table per protocol (this run, the baselines and that protocol's
    published rows, in the metrics the published rows report), then the definitions under the settings in force."""
    settings = measured.settings()
    lines = _introduction(measured)
    for name in PROTOCOLS:
        rows = table[table["protocol"] == name]
        if not rows.empty:
            keys, left_out = _columns(rows, settings["edge_threshold"])
            lines += _section(PROTOCOLS[name], rows, keys, left_out, measured.eval_info)
    lines += _definitions(settings, measured)
    return "\n".join(lines)


def _introduction(measured: Measured) -> list[str]:
    lines = [
        "# DenseDepth: this run against baselines and published numbers",
        "",
        f"This run's model and three baselines, measured here on {measured.data()}, beside the numbers published "
        "for NYU Depth v2. Numbers compare only under the same evaluation protocol (ground truth, crop, "
        "aggregation), so there is one table per protocol, holding the metrics its published rows report. "
        f"{ARROWS['higher']}: higher is better, {ARROWS['lower']}: lower is better; `{MISSING}`: not reported. "
        "The definitions are below the tables; `comparison.csv` and `comparison.json` hold every metric of every row.",
        "",
    ]
    notes = measured.eval_info["notes"]
    if notes:
        protocols = ", ".join(f"`{name}`" for name in notes)
        lines += [f"> **Not comparable:** under {protocols} this run's numbers and the baselines' do not compare with "
                  "the published rows; each table says why.", ""]  # fmt: skip
    return lines


def _columns(rows: pd.DataFrame, threshold: float) -> tuple[list[str], str]:
    """The metrics a protocol's table shows: those its published rows report (all measured ones when it has none),
    less edge_f1 when the published edge F1 used another threshold, with the reason it is left out."""
    published = rows[rows["quoted from"].notna()]
    source = published if not published.empty else rows
    keys = [key for key in METRIC_KEYS if source[key].notna().any()]
    used = sorted(set(published.loc[published["edge_f1"].notna(), "edge_threshold"]))
    if "edge_f1" not in keys or all(math.isclose(value, threshold) for value in used):
        return keys, ""
    theirs = " and ".join(f"{value:g} (depth steps over {edge_step(value):g} m)" for value in used)
    reason = (f"`edge_f1` is left out: the published edge F1 used threshold {theirs}, this run "
              f"{threshold:g} (steps over {edge_step(threshold):g} m); `comparison.csv` has this run's.")  # fmt: skip
    return [key for key in keys if key != "edge_f1"], reason


def _section(protocol: Protocol, rows: pd.DataFrame, keys: list[str], left_out: str, info: dict) -> list[str]:
    """One protocol's heading, what it does, why it does not compare or did not run, its table and its sources."""
    lines = [f"## `{protocol.name}`: {protocol.description}", "", protocol_summary(protocol), ""]
    if protocol.name in info["unavailable"]:
        lines += [f"> Not evaluated here: {info['unavailable'][protocol.name]}.", ""]
    if protocol.name in info["notes"]:
        note = info["notes"][protocol.name]
        lines += [f"> {note[0].upper()}{note[1:]}.", ""]
    lines += [_markdown_table(rows, keys), ""]
    if left_out:
        lines += [left_out, ""]
    quoted = rows[rows["quoted from"].notna()]
    if not quoted.empty:
        lines += ["Published rows:", ""]
        lines += [f"- {row.method}: {row['quoted from']}" + ("" if pd.isna(row.note) else f"; {row.note}")
                  for _, row in quoted.iterrows()]  # fmt: skip
        lines += [""]
    return lines


def protocol_summary(protocol: Protocol) -> str:
    """What a protocol does, in words, from its fields (depthcore.metrics.Protocol)."""
    truth = f"Ground truth: {GROUND_TRUTH[protocol.gt]}"
    if protocol.valid_range is not None:
        truth += " in ({:g}, {:g}) m".format(*protocol.valid_range)
    parts = [truth]
    if protocol.crop is None:
        parts.append("the full frame")
    else:
        r0, r1, c0, c1 = protocol.crop
        parts.append(f"crop rows {r0}:{r1}, columns {c0}:{c1} of the {FRAME_SHAPE[0]}x{FRAME_SHAPE[1]} frame")
    if protocol.clamp is not None:
        parts.append("predictions clamped to [{:g}, {:g}] m".format(*protocol.clamp))
    if protocol.flip_average:
        parts.append("each prediction averaged with the mirrored prediction of the mirrored image")
    parts.append(AGGREGATION[protocol.aggregate])
    return "; ".join(parts) + f". Its published numbers use NYUv2's {protocol.published_split} split."


def _markdown_table(rows: pd.DataFrame, keys: list[str]) -> str:
    """rows' method, where each was measured (the introduction names the data) and `keys`, three decimals, MISSING
    where a value does not exist."""
    where = [PUBLISHED_DATA if pd.notna(source) else "measured here" for source in rows["quoted from"]]
    cells = pd.DataFrame({"method": list(rows["method"]), "data": where})
    for key in keys:
        cells[f"{key} {ARROWS[BETTER[key]]}"] = [MISSING if pd.isna(value) else f"{value:.3f}" for value in rows[key]]
    align = ("left", "left", *("right" for _ in keys))
    return cells.to_markdown(index=False, disable_numparse=True, colalign=align)


def metric_definitions(settings: dict[str, Any]) -> dict[str, str]:
    """One line per metric of METRIC_KEYS under the settings measured with (`eval_settings`); y: ground truth, p:
    prediction, d = ln p - ln y."""
    threshold, ranges = settings["edge_threshold"], settings["ssim_data_range"]
    window = f"pytorch_msssim's {SSIM_WINDOW}x{SSIM_WINDOW} Gaussian window of sigma {SSIM_SIGMA:g}"
    ssim = f"mean SSIM of p and y ({window})"
    return {
        "delta1": f"share of pixels with max(y / p, p / y) < {DELTA_BASE:g}",
        "delta2": f"the same under {DELTA_BASE:g}^2",
        "delta3": f"the same under {DELTA_BASE:g}^3",
        "rel": "mean(|y - p| / y), divided by the ground truth",
        "sq_rel": "mean((y - p)^2 / y)",
        "rms": "sqrt(mean((y - p)^2)), in metres",
        "rmse_log": "sqrt(mean(d^2))",
        "log10": "mean(|log10 y - log10 p|)",
        "silog": "100 sqrt(mean(d^2) - mean(d)^2)",
        "mssim": f"{ssim} with data range {ranges['mssim']:g} m: this project's definition",
        "mssim_255": f"{ssim} with data range {ranges['mssim_255']:g}, pytorch_msssim's default, as the report "
        "measured its mSSIM",
        "edge_f1": f"F1 of predicted against ground-truth edge pixels: those where kornia's Sobel magnitude "
        f"(normalised kernel) of the depth in metres is over {threshold:g} (eval.edge_threshold), i.e. beside depth "
        f"steps over {edge_step(threshold):g} m; the mean over the images whose ground truth has edges",
    }


def _definitions(settings: dict[str, Any], measured: Measured) -> list[str]:
    labels = baseline_labels(settings)
    hashes = measured.eval_info["provenance"]["params_sha256"], measured.baselines_info["provenance"]["params_sha256"]
    return [
        "## Definitions",
        "",
        "y: ground truth, p: prediction, both in metres, over the pixels with a depth reading that the protocol "
        "counts; d = ln p - ln y. mssim and edge_f1 compare whole maps, the prediction against the filled depths in "
        "the protocol's crop: one value per image, averaged over the images, under every protocol.",
        "",
        *(f"- `{key}` {ARROWS[BETTER[key]]}: {line}" for key, line in metric_definitions(settings).items()),
        "",
        f"Baselines, measured here through the same metric code: {labels['random']}, seeded; the mean training "
        "depth everywhere; the oracle: the ground truth area-pooled to the model's output resolution and upsampled "
        "as predictions are, the ceiling of that resolution.",
        "",
        "Params hashes (of the params each stage reads): this run {}, the baselines {}.".format(*hashes),
        "",
    ]


def _round(value: float | int | None) -> float | int | None:
    return round(value, 6) if isinstance(value, float) else value
