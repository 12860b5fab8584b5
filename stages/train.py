"""Stage train: fit DenseDepth on the train shards, logging losses and a validation grid with dvclive."""

from __future__ import annotations

import numpy as np
from dvclive import Live

from depthcore.config import load_config
from depthcore.paths import CHECKPOINT, MODEL, SHARDS, TRAIN_LOG
from depthcore.train import fit


def main() -> None:
    config = load_config()
    with Live(dir=str(TRAIN_LOG), dvcyaml=None, save_dvc_exp=False) as live:

        def log(record: dict[str, float], grid: np.ndarray | None) -> None:
            live.log_metric("train/loss", record["train_loss"])
            live.log_metric("val/loss", record["val_loss"])
            if grid is not None:
                live.log_image("val_grid.png", grid)
            live.next_step()

        fit(config, SHARDS, MODEL, CHECKPOINT, log)


if __name__ == "__main__":
    main()
