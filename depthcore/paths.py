"""Where the stages read and write, relative to the repository root; dvc.yaml names the same paths."""

from __future__ import annotations

from pathlib import Path

PARAMS = Path("params.yaml")
NYU_MAT = Path("data/nyu_depth_v2_labeled.mat")  # the download stage's output, synthetic or real
SPLITS = Path("data/splits.json")  # the indices of each split, as used
SHARDS = Path("data/shards")
MODEL = Path("models/model.pt")  # final weights with the resolved config and epoch
CHECKPOINT = Path("models/checkpoint.pt")  # last complete epoch, for resuming (persisted)
TRAIN_LOG = Path("dvclive")  # dvclive: train/val loss per epoch and the validation grid
EVAL = Path("metrics/eval.json")
PER_IMAGE = Path("metrics/per_image.csv")
BASELINES = Path("metrics/baselines.json")
EVAL_PLOTS = Path("plots/eval")
PUBLISHED = Path("references/published_nyuv2.csv")
COMPARISON = Path("metrics/comparison")  # .md, .csv and .json
