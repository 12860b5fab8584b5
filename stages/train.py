"""Stage train: fit DenseDepth on the train shards (one process, or `train.nproc` under torchrun, which this script
starts itself), logging losses, loss curves and a validation grid with dvclive on rank 0."""

from __future__ import annotations

import numpy as np
from dvclive import Live

from depthcore import distributed
from depthcore.config import load_config
from depthcore.device import resolve_device
from depthcore.errors import run_main
from depthcore.paths import TRAIN_LOG
from depthcore.train import TrainFiles, fit
from depthcore.visualize import loss_curves


def main() -> None:
    config = load_config()
    device_type = resolve_device(config.train.device).type
    distributed.relaunch(config.train.nproc, __file__, device_type)
    info = distributed.setup(device_type)
    try:
        if not info.is_main:
            fit(config, TrainFiles(), lambda record, grid: None, info)
            return
        with Live(dir=str(TRAIN_LOG), dvcyaml=None, save_dvc_exp=False) as live:
            history = []

            def log(record: dict[str, float], grid: np.ndarray | None) -> None:
                for key in ("train_loss", "val_loss"):
                    if key in record:  # train.epochs 0 logs the starting model's val_loss alone
                        live.log_metric(key, record[key])
                if "train_loss" in record:
                    history.append(record)
                    live.log_image("loss_curves.png", loss_curves(history))
                if grid is not None:
                    live.log_image("val_grid.png", grid)
                live.next_step()

            fit(config, TrainFiles(), log, info)
    finally:
        distributed.teardown(info)


if __name__ == "__main__":
    run_main(main)
