"""The data sources, in one place: what the download stage produces for each (`depthcore.readers` reads them).

- synthetic: rooms rendered offline (`depthcore.synthetic`) in the labeled NYU .mat layout; split by `data.split`.
- nyuv2: the labeled NYU Depth v2 .mat (1,449 images), downloaded or taken from `data.nyuv2.path`; split by
  `data.split` (the report's random 80/10/10, or NYU's official 795/654).
- densedepth: DenseDepth's `nyu_data.zip` (50,688 training pairs from the raw NYU videos, 654 test pairs), taken from
  `data.densedepth.path` or downloaded from `data.densedepth.url`, read in place; its own test pairs are the test
  split and whole scenes are held out for validation (`depthcore.densedepth.densedepth_splits`). It has no raw depth.
"""

from __future__ import annotations

from pathlib import Path

from depthcore.config import Config
from depthcore.download import RemoteFile, fetch
from depthcore.paths import SOURCE_DIR, source_file
from depthcore.synthetic import write_synthetic_nyu


def fetch_source(config: Config, root: Path = SOURCE_DIR) -> Path:
    """Produce `data.source`'s file under `root`: render it, or download / verify / link it; returns its path."""
    data, dest = config.data, source_file(config.data.source, root)
    if data.source == "synthetic":
        return write_synthetic_nyu(dest, data.synthetic.num_images, data.seed, progress=True)
    if data.source == "nyuv2":
        n = data.nyuv2
        return fetch(RemoteFile(n.url, n.sha256, n.size, "data.nyuv2"), dest, local_path=n.path or None)
    d = data.densedepth
    return fetch(RemoteFile(d.url, d.sha256 or None, None, "data.densedepth"), dest, local_path=d.path or None)
