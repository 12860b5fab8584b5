"""A training process for tests/test_distributed.py, started by torchrun (or plainly): `fit` on the tiny network.

    python tests/ddp_worker.py SHARDS OUT BATCH_SIZE EPOCHS [STEP_SECONDS]

STEP_SECONDS > 0 slows every optimizer step down, so that a test can kill a worker in the middle of a run; each
process writes its pid to OUT/pids/rank<RANK>.attempt<TORCHELASTIC_RESTART_COUNT> for the same purpose.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import depthcore.train as train_module  # noqa: E402
from depthcore import distributed  # noqa: E402
from tests.helpers import tiny_model, tiny_train_config  # noqa: E402


def main(shards: str, out: str, batch_size: str, epochs: str, step_seconds: str = "0") -> None:
    out_dir = Path(out)
    info = distributed.setup("cpu")
    pids = out_dir / "pids"
    pids.mkdir(parents=True, exist_ok=True)
    (pids / f"rank{info.rank}.attempt{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}").write_text(str(os.getpid()))
    if float(step_seconds) > 0:
        real = train_module.train_step

        def slow(*args, **kwargs):
            time.sleep(float(step_seconds))
            return real(*args, **kwargs)

        train_module.train_step = slow
    config = tiny_train_config(**{"train.batch_size": int(batch_size), "train.epochs": int(epochs)})
    try:
        train_module.fit(config, Path(shards), out_dir / "model.pt", out_dir / "checkpoint.pt", lambda r, g: None,
                         info, build=tiny_model)  # fmt: skip
    finally:
        distributed.teardown(info)


if __name__ == "__main__":
    main(*sys.argv[1:])
