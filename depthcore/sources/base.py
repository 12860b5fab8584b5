"""What a data source is to the pipeline: one `Source` record per source module, collected in `depthcore.sources`."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from depthcore.config import Config
from depthcore.shards import SampleSource

#: An opened source: its samples, its splits by name ("train", "val", "test": int64 indices into the samples) and
#: the provenance the shard manifest records (at least "source" and "split").
Opened = tuple[SampleSource, dict[str, np.ndarray], dict[str, Any]]


@dataclass(frozen=True)
class Source:
    """One value of `data.source`: how the download stage produces its file and how the shard stage reads it."""

    name: str  # the `data.source` value
    file_name: str  # what the download stage leaves in data/source/
    raw_depth: bool  # whether samples carry the sensor's raw depth (the eigen protocol needs it)
    fetch: Callable[[Config, Path], Path]  # (config, destination file) -> the file, rendered, downloaded or linked
    open: Callable[[Config, Path], AbstractContextManager[Opened]]  # (config, the file) -> samples, splits, provenance
    #: provenance -> which NYU Depth v2 test set the data's test split is ("random": the report's 80/10/10 draw of the
    #: 1,449 labeled images, "official": NYU's 654 test images), or None when the images are not NYU's.
    nyu_test_split: Callable[[dict[str, Any]], str | None]
