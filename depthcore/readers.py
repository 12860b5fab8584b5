"""The shard stage's view of each data source (`depthcore.sources`): its samples, its splits and its provenance.

synthetic and nyuv2 are the labeled NYU .mat layout, split by `data.split`; densedepth is DenseDepth's zip, whose own
test pairs are the test split and whose validation is whole scenes held out (`depthcore.densedepth`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from depthcore.config import Config
from depthcore.densedepth import DenseDepthZip, densedepth_splits
from depthcore.nyu import NyuMat
from depthcore.shards import MatSamples, SampleSource
from depthcore.splits import make_splits


@contextmanager
def open_source(config: Config, path: Path) -> Iterator[tuple[SampleSource, dict[str, np.ndarray], dict[str, Any]]]:
    """The source file at `path` opened for sharding: (samples, splits by name, provenance for the manifest)."""
    data = config.data
    if data.source == "densedepth":
        with DenseDepthZip(path) as zipped:
            splits = densedepth_splits(zipped, data.densedepth.val_fraction, data.seed)
            provenance = {"source": "densedepth", "split": "scenes", "seed": data.seed, "zip": path.name,
                          "zip_train_pairs": zipped.num_train, "zip_test_pairs": zipped.num_test}
            yield zipped, splits, provenance
        return
    split = data.split
    with NyuMat(path) as reader:
        splits = make_splits(
            len(reader),
            split.method,
            data.seed,
            train_fraction=split.train_fraction,
            val_fraction=split.val_fraction,
            official_file=split.official_file,
            official_val_fraction=split.official_val_fraction,
        )
        yield MatSamples(reader), splits, {"source": data.source, "split": split.method, "seed": data.seed}
