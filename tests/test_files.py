"""depthcore.files: a file or folder appears complete or not at all, with the user's usual permissions, and a killed
writer's temporary is cleared by the next write of the same output."""

from __future__ import annotations

import fcntl
import os
import stat
import threading

import pytest

from depthcore.files import atomic_folder, atomic_path, write_text


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp == tmp_path / ".out.json.tmp" / "out.json"  # the documented name, beside the output
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert _names(tmp_path) == ["out.json"]


def test_a_finished_write_replaces_the_file_and_creates_folders(tmp_path):
    target = tmp_path / "new" / "dir" / "out.txt"
    write_text(target, "new")
    assert target.read_text() == "new"
    assert _names(target.parent) == ["out.txt"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_the_file_mode_follows_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_text(tmp_path / "out.txt", "x")
        with atomic_folder(tmp_path / "set") as tmp:
            (tmp / "a").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.txt").stat().st_mode) == 0o666 & ~umask  # 0o644, 0o600
    assert stat.S_IMODE((tmp_path / "set").stat().st_mode) == 0o777 & ~umask  # 0o755, 0o700


def test_a_killed_writers_temporary_is_cleared_by_the_next_write(tmp_path):
    """A kill leaves the temporary folder, unlocked, with the half-written file; the next write of the output clears
    it."""
    for name in ("out.bin", "other.bin"):
        (tmp_path / f".{name}.tmp").mkdir()
        (tmp_path / f".{name}.tmp" / name).write_bytes(b"half of an old write" * 1000)
    with atomic_path(tmp_path / "out.bin") as tmp:
        assert tmp.stat().st_size == 0
        tmp.write_bytes(b"new")
    assert (tmp_path / "out.bin").read_bytes() == b"new"
    assert _names(tmp_path) == [".other.bin.tmp", "out.bin"]  # another output's temporary is left alone


def test_a_live_writers_temporary_is_waited_for(tmp_path):
    """Two writes of one output at once: the second waits for the first instead of clearing its temporary, and the
    last to finish wins."""
    target, folder = tmp_path / "out.txt", tmp_path / ".out.txt.tmp"
    folder.mkdir()
    first = os.open(folder, os.O_RDONLY)  # a live writer, holding its lock
    fcntl.flock(first, fcntl.LOCK_EX)
    (folder / "out.txt").write_text("first")
    second = threading.Thread(target=write_text, args=(target, "second"))
    second.start()
    second.join(timeout=0.3)
    assert second.is_alive() and not target.exists()  # waiting
    assert (folder / "out.txt").read_text() == "first"  # not cleared
    os.replace(folder / "out.txt", target)
    folder.rmdir()
    os.close(first)  # the first writer is done
    second.join(timeout=5)
    assert not second.is_alive()
    assert target.read_text() == "second"
    assert _names(tmp_path) == ["out.txt"]


def test_a_folder_is_replaced_whole_and_only_on_success(tmp_path):
    target = tmp_path / "set"
    with atomic_folder(target) as tmp:
        assert tmp == tmp_path / ".set.tmp" and _names(tmp) == []
        (tmp / "a").write_text("1")
        (tmp / "b").write_text("1")
    with pytest.raises(RuntimeError), atomic_folder(target) as tmp:
        (tmp / "a").write_text("2")
        raise RuntimeError("crash mid-write")
    assert _names(target) == ["a", "b"] and (target / "a").read_text() == "1"
    assert _names(tmp_path) == ["set"]
    with atomic_folder(target) as tmp:
        (tmp / "c").write_text("3")
    assert _names(target) == ["c"]  # the old set's files are gone with it
    assert _names(tmp_path) == ["set"]


def test_a_killed_folder_writers_temporaries_are_cleared_by_the_next_write(tmp_path):
    """A kill mid-write leaves `.set.tmp` half built; a kill between the two renames leaves the previous set in
    `.set.old`. The next write starts from an empty temporary and removes both."""
    for name in (".set.tmp", ".set.old/set"):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "stale").write_text("x")
    with atomic_folder(tmp_path / "set") as tmp:
        assert _names(tmp) == []
        (tmp / "new").write_text("x")
    assert _names(tmp_path) == ["set"] and _names(tmp_path / "set") == ["new"]
