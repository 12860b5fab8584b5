"""Stage baselines: model-free predictors (random guess, mean depth) through the evaluation protocols."""

from __future__ import annotations

from depthcore.config import load_config
from depthcore.evaluate import evaluate_baselines
from depthcore.paths import BASELINES, SHARDS
from depthcore.report import protocol_record, provenance, write_json
from depthcore.shards import read_manifest


def main() -> None:
    config = load_config()
    origin = provenance(config, read_manifest(SHARDS))
    results = evaluate_baselines(config, SHARDS)
    write_json(
        BASELINES, {"provenance": origin, **{name: protocol_record(acc, origin) for name, acc in results.items()}}
    )


if __name__ == "__main__":
    main()
