"""A process for tests/test_distributed.py, started by torchrun (or plainly): `fit` on the tiny network, or the
collectives that stop every process together.

    python tests/ddp_worker.py SHARDS OUT BATCH_SIZE EPOCHS [STEP_SECONDS [NAN_RANK]]
    python tests/ddp_worker.py collectives SHARDS CORRUPT_SHARDS OUT FLAGGED_RANK

The first form trains. STEP_SECONDS > 0 slows every optimizer step down, so that a test can kill a worker in the
middle of a run; each process writes its pid to OUT/pids/rank<RANK>.attempt<TORCHELASTIC_RESTART_COUNT> for the same
purpose, and its parent's pid to OUT/pids/rank<RANK>.parent. On rank NAN_RANK the loss of the second step of each
epoch reads as NaN (the step itself runs as usual, so the processes stay in step). A DepthcoreError ends the process
as it ends a stage: one line on stderr, exit status 2.

The second writes OUT/rank<RANK>.json: the shard files this process hashed while `verify_for_training` checked SHARDS,
the message of the ShardError it raised on CORRUPT_SHARDS (a copy with a bad shard), what `Dist.any` answered for
a flag set on FLAGGED_RANK only and for a flag set nowhere, and a BatchNorm's statistics after the synchronisation that
validation runs after.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import depthcore.shards as shards_module  # noqa: E402
import depthcore.train as train_module  # noqa: E402
from depthcore import distributed  # noqa: E402
from depthcore.data import verify_for_training  # noqa: E402
from depthcore.errors import run_main  # noqa: E402
from depthcore.shards import ShardError  # noqa: E402
from tests.helpers import tiny_model, tiny_train_config  # noqa: E402


def main(shards: str, out: str, batch_size: str, epochs: str, step_seconds: str = "0", nan_rank: str = "-1") -> None:
    out_dir = Path(out)
    info = distributed.setup("cpu")
    pids = out_dir / "pids"
    pids.mkdir(parents=True, exist_ok=True)
    (pids / f"rank{info.rank}.attempt{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}").write_text(str(os.getpid()))
    (pids / f"rank{info.rank}.parent").write_text(str(os.getppid()))
    real, steps = train_module.train_step, itertools.count(1)

    def step(*args, **kwargs):
        time.sleep(float(step_seconds))
        loss = real(*args, **kwargs)
        return loss * float("nan") if info.rank == int(nan_rank) and next(steps) % 2 == 0 else loss

    train_module.train_step = step
    config = tiny_train_config(**{"train.batch_size": int(batch_size), "train.epochs": int(epochs)})
    files = train_module.TrainFiles(Path(shards), out_dir / "model.pt", out_dir / "checkpoint.pt")
    try:
        train_module.fit(config, files, lambda r, g: None, info, build=tiny_model)
    finally:
        distributed.teardown(info)


def collectives(shards: str, corrupt: str, out: str, flagged_rank: str) -> None:
    info = distributed.setup("cpu")
    hashed = []  # shard files hashed by this process, relative to their shard folder
    real_sha256 = shards_module.sha256_file

    def counted_sha256(path, *args, **kwargs):
        hashed.append(Path(path).relative_to(Path(path).parents[1]).as_posix())
        return real_sha256(path, *args, **kwargs)

    shards_module.sha256_file = counted_sha256
    try:
        verify_for_training(shards, info)
        hashed_good = list(hashed)
        try:
            verify_for_training(corrupt, info)
            error = None
        except ShardError as err:
            error = str(err)
        record = {
            "local_rank": info.local_rank,
            "hashed": hashed_good,
            "corrupt_error": error,
            "any_flagged": info.any(info.rank == int(flagged_rank)),
            "any_none": info.any(False),
            "batchnorm_after_sync": synced_batchnorm(info),
        }
        Path(out, f"rank{info.rank}.json").write_text(json.dumps(record))
    finally:
        distributed.teardown(info)


def synced_batchnorm(info: distributed.Dist) -> dict[str, list[float]]:
    """A BatchNorm whose statistics differ on every process (as after each one's last training batch), after the
    synchronisation that precedes validation: its running mean, variance and batch count."""
    norm = torch.nn.BatchNorm2d(2)
    with torch.no_grad():
        norm.running_mean.fill_(info.rank + 1.0)
        norm.running_var.fill_(10.0 * (info.rank + 1))
        norm.num_batches_tracked.fill_(info.rank + 5)
    train_module._synced(norm, info)
    return {"mean": norm.running_mean.tolist(), "var": norm.running_var.tolist(),
            "batches": [int(norm.num_batches_tracked)]}


if __name__ == "__main__":
    if sys.argv[1] == "collectives":
        collectives(*sys.argv[2:])
    else:
        run_main(lambda: main(*sys.argv[1:]))
