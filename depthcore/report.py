"""Metrics files and comparison tables: what evaluate, baselines and compare write.

Every metrics record carries its provenance (data source, split, number of test images, a hash of the params), so a
number can always be told from where it came. A protocol's numbers are comparable with the published rows only on the
real NYUv2 data and the split that protocol was published on; the records and the tables say so when they are not.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from depthcore.files import write_text
from depthcore.config import Config, as_dict
from depthcore.metrics import METRIC_KEYS, PROTOCOLS, MetricAccumulator

#: The split each protocol's published numbers were measured on (REFERENCE.md, evaluation protocols).
PUBLISHED_SPLIT = {"report": "random", "densedepth": "official", "eigen": "official"}
BASELINE_NAMES = {"random": "random guess, uniform (0, 10] m", "mean_depth": "mean training depth"}


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def provenance(config: Config, manifest: dict) -> dict[str, Any]:
    """Where a metrics record comes from: data source, split method, test images, and a hash of all params."""
    params = json.dumps(as_dict(config), sort_keys=True)
    return {
        "source": manifest["source"],
        "split": manifest["split_method"],
        "num_test_images": manifest["counts"]["test"],
        "params_sha256": hashlib.sha256(params.encode()).hexdigest()[:16],
    }


def comparability(protocol: str, origin: dict[str, Any]) -> str:
    """'' when `protocol`'s numbers on data `origin` compare with the published ones, else the reason they do not."""
    if origin["source"] != "nyuv2":
        return f"{origin['source']} data: not comparable with published NYUv2 numbers"
    if origin["split"] != PUBLISHED_SPLIT[protocol]:
        return f"{origin['split']} split: published {protocol} numbers use the {PUBLISHED_SPLIT[protocol]} split"
    return ""


def protocol_record(accumulators: dict[str, MetricAccumulator], origin: dict[str, Any]) -> dict[str, Any]:
    """The eight metrics per protocol (aggregated as the protocol says), and under `notes` why a protocol's numbers
    do not compare with the published ones, where they do not. Strings stay out of the metric entries so that
    `dvc metrics show` and `diff` list numbers."""
    record: dict[str, Any] = {}
    notes = {}
    for name, acc in accumulators.items():
        result = acc.result()
        record[name] = {**{key: round(result[key], 6) for key in METRIC_KEYS}, "num_images": result["num_images"]}
        if comparability(name, origin):
            notes[name] = comparability(name, origin)
    return {**record, "notes": notes}


def per_image_table(accumulators: dict[str, MetricAccumulator], source_indices: list[int]) -> pd.DataFrame:
    """Long table: one row per (protocol, test image) with the image's index in the .mat file."""
    frames = []
    for name, acc in accumulators.items():
        frame = pd.DataFrame(acc.rows())
        frame.insert(0, "protocol", name)
        frame.insert(2, "mat_index", [source_indices[i] for i in frame["image"]])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def comparison_table(evaluation: dict, baselines: dict, published: pd.DataFrame) -> pd.DataFrame:
    """This run under each protocol, the baselines measured here, then the published rows."""
    origin = evaluation["provenance"]
    data = f"{origin['source']} ({origin['split']} split, {origin['num_test_images']} test images)"
    rows = []
    for name in PROTOCOLS:
        if name in evaluation:
            rows.append({"method": "this run", "protocol": name, "data": data, **_metrics(evaluation[name])})
    for key, label in BASELINE_NAMES.items():
        for name in PROTOCOLS:
            if name in baselines.get(key, {}):
                entry = _metrics(baselines[key][name])
                rows.append({"method": f"{label}, measured here", "protocol": name, "data": data, **entry})
    measured = pd.DataFrame(rows)
    quoted = published.assign(data="NYUv2 (published)").rename(columns={"source": "quoted from"})
    table = pd.concat([measured.assign(**{"quoted from": ""}), quoted], ignore_index=True)
    return table[["method", "protocol", "data", *METRIC_KEYS, "quoted from"]]


def _metrics(entry: dict) -> dict[str, float]:
    return {key: entry[key] for key in METRIC_KEYS}


def comparison_markdown(table: pd.DataFrame, evaluation: dict) -> str:
    """The table for people, with a warning on top when this run's data or split differ from the published ones."""
    origin = evaluation["provenance"]
    lines = ["# DenseDepth: this run against baselines and published numbers", ""]
    if origin["source"] != "nyuv2":
        lines += [
            f"> **This run used {origin['source']} data.** Its numbers and the baselines measured here are not "
            "comparable with the NYUv2 rows below; they show that the pipeline learns, not how well it does on NYUv2.",
            "",
        ]
    for name, note in evaluation["notes"].items():
        lines.append(f"- `{name}`: {note}")
    lines += [
        "",
        "Protocols (depthcore/metrics.py): "
        + "; ".join(f"`{name}` = {PROTOCOLS[name].description}" for name in PROTOCOLS),
        "",
        table.to_markdown(index=False, floatfmt=".3f", missingval=""),
        "",
        f"Params hash {origin['params_sha256']}. "
        "Higher is better for delta1-3, mSSIM and edge F1; lower for rel, rms, log10.",
        "",
    ]
    return "\n".join(lines)
