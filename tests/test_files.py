"""depthcore.files: a file appears complete or not at all, with the user's usual permissions."""

from __future__ import annotations

import os
import stat

import pytest

from depthcore.files import atomic_path, write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_a_finished_write_replaces_the_file_and_creates_folders(tmp_path):
    target = tmp_path / "new" / "dir" / "out.txt"
    write_text(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_the_file_mode_follows_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_text(tmp_path / "out.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.txt").stat().st_mode) == 0o666 & ~umask  # 0o644, 0o600
