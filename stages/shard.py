"""Stage shard: split the .mat's images and write them as verified .npz shards with a manifest."""

from __future__ import annotations

from depthcore.config import load_config
from depthcore.nyu import NyuMat
from depthcore.paths import NYU_MAT, SHARDS, SPLITS
from depthcore.shards import write_shards
from depthcore.splits import make_splits, write_splits


def main() -> None:
    config = load_config()
    data, split = config.data, config.data.split
    with NyuMat(NYU_MAT) as reader:
        splits = make_splits(
            len(reader),
            split.method,
            config.seed,
            train_fraction=split.train_fraction,
            val_fraction=split.val_fraction,
            official_file=split.official_file,
            official_val_fraction=split.official_val_fraction,
        )
        write_splits(splits, SPLITS)
        provenance = {"source": data.source, "seed": config.seed, "split_method": split.method}
        write_shards(reader, splits, SHARDS, data.shard_size, provenance)


if __name__ == "__main__":
    main()
