"""Stage init: record the file `model.init` names, with its SHA-256, so that DVC reruns training when the file changes.

DVC sees `model.init` as a param, a path: a file replaced under the same name would not rerun anything. This stage runs
on every `dvc repro` (`always_changed`), hashes the file (a fraction of a second for the authors' 165 MB nyu.h5) and
rewrites models/init.json only when something changed, so the train stage, which depends on that record, reruns
exactly when the file's contents do. With `model.init: ""` the record says so and never changes.
"""

from __future__ import annotations

import json
from pathlib import Path

from depthcore.config import ConfigError, load_config
from depthcore.errors import run_main
from depthcore.files import sha256_file, write_text
from depthcore.paths import INIT_RECORD


def main() -> None:
    path = load_config().model.init
    record = {"model.init": path, "sha256": None}
    if path:
        if not Path(path).is_file():
            raise ConfigError(f"model.init: expected a model file at {path}, found none; set model.init to a "
                                 "depthcore model file or the authors' Keras .h5, or to \"\" to train from scratch")
        record["sha256"] = sha256_file(path)
    text = json.dumps(record, indent=2) + "\n"
    if not INIT_RECORD.is_file() or INIT_RECORD.read_text() != text:
        write_text(INIT_RECORD, text)


if __name__ == "__main__":
    run_main(main)
