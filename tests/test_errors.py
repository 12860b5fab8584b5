"""depthcore.errors.run_main: user errors (bad params, a full, read-only or unwritable disk) end in one line on stderr
and exit status 2; every other exception keeps its traceback."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from depthcore.config import ConfigError
from depthcore.errors import USER_ERROR_STATUS, run_main

DEV_FULL = Path("/dev/full")  # Linux: every write fails with ENOSPC
needs_dev_full = pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full (Linux) to fill a disk")


def error_line(capsys, main) -> str:
    """Run `main` under run_main; it must exit with status 2 after one line on stderr, which is returned."""
    with pytest.raises(SystemExit) as info:
        run_main(main)
    assert info.value.code == USER_ERROR_STATUS == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def raise_(err: BaseException):
    def main():
        raise err

    return main


def test_config_error_is_one_line(capsys):
    line = error_line(capsys, raise_(ConfigError("train.batch_size: expected an integer >= 1, got 0")))
    assert line == "error: train.batch_size: expected an integer >= 1, got 0"


@needs_dev_full
def test_a_full_disk_is_one_line(capsys):
    def write_to_full_disk():
        with open(DEV_FULL, "wb") as f:
            f.write(b"depth")  # buffered: fails when the file is flushed on close

    line = error_line(capsys, write_to_full_disk)
    assert line.startswith(f"error: {os.strerror(errno.ENOSPC)}; free some disk space")


@needs_dev_full
def test_torch_save_to_a_full_disk_is_one_line(capsys):
    # torch's archive writer reports the failed write as a RuntimeError ("... unexpected pos ..."), not an OSError
    line = error_line(capsys, lambda: torch.save({"weights": torch.zeros(1000)}, str(DEV_FULL)))
    assert line.startswith("error: writing a file failed, most likely because the disk is full (torch: [enforce fail")
    assert line.endswith("free some disk space (or move the repository to a disk with room) and run again")


def test_torch_file_write_failed_is_one_line(capsys):
    # simulated: the other message of torch's archive writer (a failed data record), which /dev/full does not reach
    failure = RuntimeError(
        "[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file data/0: file write failed"
    )
    line = error_line(capsys, raise_(failure))
    assert "disk is full" in line and "file write failed" in line


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (errno.EACCES, "give this user access to it and its folder"),
        (errno.EPERM, "give this user access to it and its folder"),
        (errno.EROFS, "run from a copy of the repository on a writable disk"),
        (errno.EDQUOT, "free some disk space"),
    ],
)
def test_a_disk_the_user_cannot_write_is_one_line_naming_the_file(capsys, code, advice):
    # simulated: the tests run as root, whom a chmod 000 folder does not stop, and on a writable disk
    failure = OSError(code, os.strerror(code), "models/model.pt")
    line = error_line(capsys, raise_(failure))
    assert line.startswith(f"error: models/model.pt: {os.strerror(code)}; {advice}")


def test_a_failed_rename_names_both_files(capsys):
    failure = OSError(errno.EACCES, os.strerror(errno.EACCES), "models/.model.pt.tmp", None, "models/model.pt")
    line = error_line(capsys, raise_(failure))
    assert line.startswith(f"error: models/.model.pt.tmp -> models/model.pt: {os.strerror(errno.EACCES)}; ")


@pytest.mark.parametrize(
    "failure",
    [
        FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "missing.txt"),  # an OSError the user did not cause
        RuntimeError("CUDA error: device-side assert triggered"),
        RuntimeError("[enforce fail at inline_container.cc:300] . file not found: archive/data.pkl"),  # a read
        ValueError("a bug"),
    ],
    ids=repr,
)
def test_other_exceptions_keep_their_traceback(failure):
    with pytest.raises(type(failure)) as info:
        run_main(raise_(failure))
    assert info.value is failure
