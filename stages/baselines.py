"""Stage baselines: random guess, mean depth and the output-resolution oracle through the evaluation protocols."""

from __future__ import annotations

from depthcore.config import load_config
from depthcore.errors import run_main
from depthcore.evaluate import BASELINE_PARAMS, RANDOM_GUESS_MAX, evaluate_baselines
from depthcore.paths import BASELINES, BASELINES_INFO, SHARDS
from depthcore.report import eval_settings, info_record, metrics_record, provenance, write_json
from depthcore.shards import read_manifest


def main() -> None:
    config = load_config()
    results, unusable = evaluate_baselines(config, SHARDS)
    protocols = list(next(iter(results.values())))
    origin = provenance(config, read_manifest(SHARDS), BASELINE_PARAMS)  # its hash: of the params it reads
    settings = {**eval_settings(config), "random_guess_max": RANDOM_GUESS_MAX}  # m: the random guess's range (0, max]
    write_json(BASELINES_INFO, info_record(origin, protocols, unusable, settings))
    write_json(BASELINES, {name: metrics_record(accumulators) for name, accumulators in results.items()})


if __name__ == "__main__":
    run_main(main)
