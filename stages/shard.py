"""Stage shard: split the source's images and write them as verified .npz shards with a manifest."""

from __future__ import annotations

from depthcore.config import load_config
from depthcore.errors import run_main
from depthcore.paths import SHARDS, SPLITS
from depthcore.progress import bar
from depthcore.shards import write_shards
from depthcore.sources import SOURCES, source_file
from depthcore.splits import write_splits


def main() -> None:
    config = load_config()
    source = SOURCES[config.data.source]
    with source.open(config, source_file(source.name)) as (samples, splits, provenance):
        write_splits(splits, SPLITS)
        with bar(total=sum(map(len, splits.values())), desc="sharding", unit="img") as progress:
            write_shards(samples, splits, SHARDS, config.data.shard_size, provenance, progress.update)


if __name__ == "__main__":
    run_main(main)
