"""Stage evaluate: the trained model on the test split under each protocol; metrics, per-image CSV, image grid."""

from __future__ import annotations

from PIL import Image

from depthcore.config import load_config
from depthcore.errors import run_main
from depthcore.evaluate import evaluate_model
from depthcore.files import atomic_path
from depthcore.paths import EVAL, EVAL_INFO, EVAL_PLOTS, MODEL, PER_IMAGE, SHARDS
from depthcore.report import eval_settings, info_record, metrics_record, per_image_table, provenance, write_json
from depthcore.shards import read_manifest


def main() -> None:
    config = load_config()
    manifest = read_manifest(SHARDS)
    accumulators, unusable, grid = evaluate_model(config, SHARDS, MODEL)
    with atomic_path(PER_IMAGE) as tmp:
        per_image_table(accumulators, manifest["source_indices"]["test"]).to_csv(tmp, index=False, float_format="%.6f")
    with atomic_path(EVAL_PLOTS / "test_grid.png") as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    info = info_record(provenance(config, manifest), list(accumulators), unusable, eval_settings(config))
    write_json(EVAL_INFO, info)
    write_json(EVAL, metrics_record(accumulators))


if __name__ == "__main__":
    run_main(main)
