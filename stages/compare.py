"""Stage compare: this run, the baselines measured here and the published rows: every metric in one table (.csv,
.json), one table per protocol for people (.md); written from the metrics and info files alone (no params)."""

from __future__ import annotations

import json

import pandas as pd

from depthcore.errors import run_main
from depthcore.files import atomic_path, write_text
from depthcore.paths import BASELINES, BASELINES_INFO, COMPARISON, EVAL, EVAL_INFO, PUBLISHED
from depthcore.report import Measured, comparison_markdown, comparison_table


def main() -> None:
    measured = Measured(
        evaluation=json.loads(EVAL.read_text()),
        eval_info=json.loads(EVAL_INFO.read_text()),
        baselines=json.loads(BASELINES.read_text()),
        baselines_info=json.loads(BASELINES_INFO.read_text()),
    )
    table = comparison_table(measured, pd.read_csv(PUBLISHED))
    with atomic_path(COMPARISON.with_suffix(".csv")) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    write_text(COMPARISON.with_suffix(".json"), table.to_json(orient="records", indent=2) + "\n")
    write_text(COMPARISON.with_suffix(".md"), comparison_markdown(table, measured))


if __name__ == "__main__":
    run_main(main)
