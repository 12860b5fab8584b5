"""Stage download: the NYU-layout .mat, rendered offline (data.source=synthetic) or the real file (nyuv2)."""

from __future__ import annotations

from depthcore.config import load_config
from depthcore.download import fetch_nyuv2
from depthcore.paths import NYU_MAT
from depthcore.synthetic import write_synthetic_nyu


def main() -> None:
    config = load_config()
    data = config.data
    if data.source == "synthetic":
        write_synthetic_nyu(NYU_MAT, data.synthetic.num_images, config.seed, progress=True)
    else:
        n = data.nyuv2
        fetch_nyuv2(n.url, NYU_MAT, n.sha256, n.size, local_path=n.path or None)


if __name__ == "__main__":
    main()
