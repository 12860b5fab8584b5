"""Metrics files and comparison tables: what evaluate, baselines and compare write.

A metrics file (`metrics/eval.json`, `metrics/baselines.json`) holds numbers only, headline figures first, so that
`dvc metrics show`, `dvc metrics diff` and `dvc exp show` have columns to show; the strings that say where the
numbers come from (provenance: data source, split, test images, a hash of the params), why a protocol's numbers do
not compare with the published ones, and which protocols could not run live in an info file beside it
(`metrics/eval_info.json`, `metrics/baselines_info.json`). A protocol's numbers are comparable with the published
rows only on the real NYUv2 data and the split that protocol was published on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from depthcore.config import Config, as_dict
from depthcore.files import write_text
from depthcore.metrics import HIGHER_IS_BETTER, METRIC_KEYS, PROTOCOLS, MetricAccumulator

#: The order of a protocol's entries in a metrics file: the headline figures first, the counts last.
RECORD_KEYS = (
    "delta1", "rel", "rms",
    *(key for key in METRIC_KEYS if key not in ("delta1", "rel", "rms")),
    "edge_f1_pooled", "edge_f1_images", "num_images",
)  # fmt: skip
BASELINE_NAMES = {
    "random": "random guess, uniform (0, 10] m",
    "mean_depth": "mean training depth",
    "oracle": "ground truth at the model's output resolution",
}
#: What every comparison table says about its columns (README's metrics section says the same at length).
DEFINITIONS = (
    "mssim: SSIM with data range 10 m (this project's); mssim_255: with pytorch_msssim's default data range 255, "
    "as the report measured its mSSIM (the report's rows are in that column)",
    "edge_f1: Sobel (kornia, normalised kernel) of depth in metres over 0.2, i.e. depth steps over 0.4 m; per-image "
    "mean over the images whose ground truth has edges (edge_f1_images); the paper's edge F1 and mSSIM were "
    "measured another way and have no like-for-like column",
    "rel under `densedepth` divides by the ground truth; the paper's released evaluation divided by the "
    "prediction (DenseDepth issue #98), so the published 0.123 / 0.103 are another definition",
    "oracle: the ground truth area-pooled to the model's output resolution and upsampled as predictions are: the "
    "ceiling of that resolution",
)


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


def comparability(protocol: str, origin: dict[str, Any]) -> str:
    """'' when `protocol`'s numbers on data `origin` compare with the published ones, else the reason they do not."""
    if origin["source"] != "nyuv2":
        return f"{origin['source']} data: not comparable with published NYUv2 numbers"
    published = PROTOCOLS[protocol].published_split
    if origin["split"] != published:
        return f"{origin['split']} split: published {protocol} numbers use the {published} split"
    return ""


def metrics_record(accumulators: dict[str, MetricAccumulator]) -> dict[str, dict[str, float | int | None]]:
    """Numbers only: per protocol, the metrics in RECORD_KEYS order (the protocol's aggregation), rounded to 6
    digits; None where a metric has no value (edge F1 when no ground truth has an edge)."""
    record = {}
    for name, acc in accumulators.items():
        result = acc.result()
        record[name] = {key: _round(result[key]) for key in RECORD_KEYS}
    return record


def info_record(origin: dict[str, Any], protocols: list[str], unusable: dict[str, str]) -> dict[str, Any]:
    """The strings beside a metrics file: provenance, why protocols do not compare with published numbers, and the
    protocols that could not run on this data, with the reason."""
    notes = {name: comparability(name, origin) for name in protocols if comparability(name, origin)}
    return {"provenance": origin, "notes": notes, "unavailable": unusable}


def per_image_table(accumulators: dict[str, MetricAccumulator], source_indices: list[int]) -> pd.DataFrame:
    """Long table: one row per (protocol, test image) with the image's index in the source."""
    frames = []
    for name, acc in accumulators.items():
        frame = pd.DataFrame(acc.rows())
        frame.insert(0, "protocol", name)
        frame.insert(2, "source_index", [source_indices[i] for i in frame["image"]])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def comparison_table(evaluation: dict, eval_info: dict, baselines: dict, published: pd.DataFrame) -> pd.DataFrame:
    """This run under each protocol, the baselines measured here, then the published rows."""
    origin = eval_info["provenance"]
    data = f"{origin['source']} ({origin['split']} split, {origin['num_test_images']} test images)"
    rows = [
        {"method": "this run", "protocol": name, "data": data, **_metrics(evaluation[name])}
        for name in PROTOCOLS
        if name in evaluation
    ]
    for key, label in BASELINE_NAMES.items():
        for name in PROTOCOLS:
            if name in baselines.get(key, {}):
                entry = _metrics(baselines[key][name])
                rows.append({"method": f"{label}, measured here", "protocol": name, "data": data, **entry})
    measured = pd.DataFrame(rows)
    quoted = published.assign(data="NYUv2 (published)").rename(columns={"source": "quoted from"})
    table = pd.concat([measured.assign(**{"quoted from": "", "note": ""}), quoted], ignore_index=True)
    return table[["method", "protocol", "data", *METRIC_KEYS, "quoted from", "note"]]


def _metrics(entry: dict) -> dict[str, float | None]:
    return {key: entry.get(key) for key in METRIC_KEYS}


def comparison_markdown(table: pd.DataFrame, eval_info: dict) -> str:
    """The table for people, with a warning on top when this run's data or split differ from the published ones."""
    origin = eval_info["provenance"]
    lines = ["# DenseDepth: this run against baselines and published numbers", ""]
    if origin["source"] != "nyuv2":
        lines += [
            f"> **This run used {origin['source']} data.** Its numbers and the baselines measured here are not "
            "comparable with the NYUv2 rows below; they show that the pipeline learns, not how well it does on NYUv2.",
            "",
        ]
    lines += [f"- `{name}`: {note}" for name, note in eval_info["notes"].items()]
    lines += [f"- `{name}`: not evaluated: {reason}" for name, reason in eval_info["unavailable"].items()]
    lines += [
        "",
        "Protocols (depthcore/metrics.py): "
        + "; ".join(f"`{name}` = {PROTOCOLS[name].description}" for name in PROTOCOLS),
        "",
        "Definitions:",
        *(f"- {line}" for line in DEFINITIONS),
        "",
        table.to_markdown(index=False, floatfmt=".3f", missingval=""),
        "",
        f"Params hash {origin['params_sha256']}. Higher is better for {', '.join(HIGHER_IS_BETTER[:-1])}; "
        "lower for the rest.",
        "",
    ]
    return "\n".join(lines)


def _round(value: float | int | None) -> float | int | None:
    return round(value, 6) if isinstance(value, float) else value
