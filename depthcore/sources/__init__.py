"""The data sources, one module each behind one registry (`SOURCES`, keyed by `data.source`):

- `synthetic`: rooms rendered offline in the labeled NYU .mat layout (the default; `depthcore.sources.synthetic`);
- `nyuv2`: the labeled NYU Depth v2 .mat, 1,449 images with raw depth (`depthcore.sources.nyuv2`);
- `densedepth`: DenseDepth's `nyu_data.zip`, 50,688 training pairs and NYU's 654 test images, read in place
  (`depthcore.sources.densedepth`).

Each `Source` (`depthcore.sources.base`) says what file the download stage leaves, how it is fetched, how the shard
stage opens it into samples, splits and provenance, whether it has raw depth, and which NYU test set its test split
is, from which `comparability` tells what published rows its numbers compare with. The stages ask the registry and
never compare a source's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from depthcore.paths import SOURCE_DIR
from depthcore.sources import densedepth, nyuv2, synthetic
from depthcore.sources.base import Source

SOURCES: dict[str, Source] = {source.name: source for source in (synthetic.SOURCE, nyuv2.SOURCE, densedepth.SOURCE)}


def source_file(name: str, root: Path = SOURCE_DIR) -> Path:
    """Where the download stage puts the file of source `name` (a `data.source` value)."""
    return root / SOURCES[name].file_name


def comparability(origin: dict[str, Any], protocol: str, published_split: str) -> str:
    """'' when numbers on the data of `origin` (a shard manifest's provenance) compare with `protocol`'s published
    rows, which were measured on NYU's `published_split` test set; else why they do not."""
    test_split = SOURCES[origin["source"]].nyu_test_split(origin)
    if test_split is None:
        return f"{origin['source']} data: not NYU Depth v2 images, so not comparable with published NYUv2 numbers"
    if test_split != published_split:
        return f"{test_split} test split: published {protocol} numbers use the {published_split} split"
    return ""
