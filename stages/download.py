"""Stage download: the source's file (depthcore.sources): rendered rooms, the labeled NYU .mat, or DenseDepth's zip."""

from __future__ import annotations

from depthcore.config import load_config
from depthcore.errors import run_main
from depthcore.sources import fetch_source


def main() -> None:
    fetch_source(load_config())


if __name__ == "__main__":
    run_main(main)
