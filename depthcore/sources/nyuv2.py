"""Source `nyuv2`: the labeled NYU Depth v2 .mat (1,449 images with filled and raw depth), downloaded from
`data.nyuv2.url` or taken from `data.nyuv2.path`, verified by size and SHA-256, and split by `data.split` (the
report's random 80/10/10, or NYU's official 795 / 654)."""

from __future__ import annotations

from pathlib import Path

from depthcore.config import Config
from depthcore.download import RemoteFile, fetch
from depthcore.sources.base import Source
from depthcore.sources.nyu_mat import open_mat

FILE_NAME = "nyu_depth_v2_labeled.mat"


def fetch_mat(config: Config, dest: Path) -> Path:
    """The verified .mat at `dest`: already there, linked from `data.nyuv2.path`, or downloaded."""
    n = config.data.nyuv2
    return fetch(RemoteFile(n.url, n.sha256, n.size, "data.nyuv2"), dest, local_path=n.path or None)


SOURCE = Source(
    name="nyuv2",
    file_name=FILE_NAME,
    raw_depth=True,
    fetch=fetch_mat,
    open=open_mat,
    nyu_test_split=lambda origin: origin["split"],
)
