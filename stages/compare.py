"""Stage compare: this run, the baselines measured here and the published rows in one table (.md, .csv, .json)."""

from __future__ import annotations

import json

import pandas as pd

from depthcore.errors import run_main
from depthcore.files import atomic_path, write_text
from depthcore.paths import BASELINES, COMPARISON, EVAL, EVAL_INFO, PUBLISHED
from depthcore.report import comparison_markdown, comparison_table


def main() -> None:
    evaluation, info = json.loads(EVAL.read_text()), json.loads(EVAL_INFO.read_text())
    table = comparison_table(evaluation, info, json.loads(BASELINES.read_text()), pd.read_csv(PUBLISHED))
    with atomic_path(COMPARISON.with_suffix(".csv")) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    write_text(COMPARISON.with_suffix(".json"), table.to_json(orient="records", indent=2) + "\n")
    write_text(COMPARISON.with_suffix(".md"), comparison_markdown(table, info))


if __name__ == "__main__":
    run_main(main)
