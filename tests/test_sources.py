"""The source registry: one entry per `data.source` value, each opening into samples whose raw depth it declares,
and the rule for which published rows a source's numbers compare with."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from depthcore.config import DataConfig
from depthcore.metrics import PROTOCOLS
from depthcore.paths import SOURCE_DIR
from depthcore.sources import SOURCES, comparability, source_file
from depthcore.sources.synthetic import write_synthetic_densedepth_zip
from tests.helpers import make_config


def test_every_data_source_value_has_one_entry():
    assert set(SOURCES) == set(typing.get_args(typing.get_type_hints(DataConfig)["source"]))
    assert all(name == source.name for name, source in SOURCES.items())
    assert source_file("densedepth") == SOURCE_DIR / "nyu_data.zip"
    assert source_file("synthetic") == source_file("nyuv2") == SOURCE_DIR / "nyu_depth_v2_labeled.mat"


@pytest.mark.parametrize("name", ["synthetic", "densedepth"])
def test_an_opened_source_has_the_raw_depth_its_entry_declares(name: str, tiny_mat: Path, tmp_path: Path):
    config = make_config(**{"data.source": name, "data.densedepth.val_fraction": 0.5,
                            "data.split.train_fraction": 0.5, "data.split.val_fraction": 0.25})
    path = tiny_mat if name == "synthetic" else write_synthetic_densedepth_zip(tmp_path / "z.zip", 2, 1, 1, seed=0)
    with SOURCES[name].open(config, path) as (samples, splits, provenance):
        assert samples.has_raw_depth == SOURCES[name].raw_depth
        assert provenance["source"] == name
        assert sorted(splits) == ["test", "train", "val"] and all(len(v) for v in splits.values())


def test_comparability_follows_each_sources_nyu_test_set():
    def why(source: str, split: str, protocol: str) -> str:
        origin = {"source": source, "split": split}
        return comparability(origin, protocol, PROTOCOLS[protocol].published_split)

    # rendered rooms are never NYU's images
    assert all("not NYU Depth v2 images" in why("synthetic", split, p) for split in ("random", "official")
               for p in PROTOCOLS)
    # the labeled .mat: comparable exactly where the split is the one the protocol was published on
    assert why("nyuv2", "random", "report") == why("nyuv2", "official", "densedepth") == ""
    assert why("nyuv2", "official", "eigen") == ""
    assert why("nyuv2", "official", "report") == "official test split: published report numbers use the random split"
    assert why("nyuv2", "random", "densedepth") != ""
    # the zip's 654 test pairs are NYU's official test images, whatever its validation hold-out is called
    assert why("densedepth", "scenes", "densedepth") == ""
    assert why("densedepth", "scenes", "report") == "official test split: published report numbers use the random split"
