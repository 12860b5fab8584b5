"""Where the stages read and write, relative to the repository root; dvc.yaml names the same paths."""

from __future__ import annotations

from pathlib import Path

PARAMS = Path("params.yaml")
SOURCE_DIR = Path("data/source")  # the download stage's output: the source's one file (depthcore.sources)
SPLITS = Path("data/splits.json")  # the indices of each split, as used
SHARDS = Path("data/shards")
INIT_DIR = Path("init")  # the model files model.init may name: a dep of the train stage, hashed by DVC
MODEL = Path("models/model.pt")  # final weights with the resolved config and the epochs trained
CHECKPOINT = Path("models/checkpoint.pt")  # for resuming; not a DVC output (git-ignored, kept across reruns)
TRAIN_LOG = Path("dvclive")  # dvclive: train/val loss per epoch, the validation grid and the loss curves
EVAL = Path("metrics/eval.json")  # numbers only (a DVC metric)
EVAL_INFO = Path("metrics/eval_info.json")  # provenance and notes beside it
PER_IMAGE = Path("metrics/per_image.csv")
BASELINES = Path("metrics/baselines.json")  # numbers only (reference material, not an experiment metric)
BASELINES_INFO = Path("metrics/baselines_info.json")
EVAL_PLOTS = Path("plots/eval")
PUBLISHED = Path("references/published_nyuv2.csv")
COMPARISON = Path("metrics/comparison")  # .md, .csv and .json

