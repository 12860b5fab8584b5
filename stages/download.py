"""Stage download: the source's file (depthcore.sources): rendered rooms, the labeled NYU .mat, or DenseDepth's zip."""

from __future__ import annotations

from depthcore.config import load_config
from depthcore.errors import run_main
from depthcore.sources import SOURCES, source_file


def main() -> None:
    config = load_config()
    SOURCES[config.data.source].fetch(config, source_file(config.data.source))


if __name__ == "__main__":
    run_main(main)
