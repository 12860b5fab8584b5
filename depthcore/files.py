"""File helpers: atomic writes (a file or a folder appears under its name complete, or not at all) and hashing in
blocks.

A write of `dir/name` builds it in one fixed temporary folder beside it, `dir/.name.tmp` (a file as
`dir/.name.tmp/name`, a folder as the temporary folder itself), and renames it into place when complete. The writer
holds an exclusive lock (flock) on the temporary folder while it writes, so that a writer killed mid-write (SIGKILL,
power loss) leaves an unlocked temporary, which the next write of the same output clears: a kill costs the
half-written bytes until the output is written again, never disk space for good. A second writer of the same output
waits for the first (the last one to finish wins, as with any two writes). The lock is on the folder, not on the
file being written, so that writers that lock their own files (HDF5 does) are not in the way.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

HASH_BLOCK = 1 << 20  # bytes per read when hashing
#: flock errors of file systems without locks on folders (NFS's flock takes a write lock, which a folder opened for
#: reading cannot hold: EBADF): there a killed writer's temporary is cleared all the same, but two writers of one
#: output at once are not kept apart.
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.EBADF)


class Closing(contextlib.AbstractContextManager):
    """A reader that is its own context manager: `with Reader(path) as reader:` calls `reader.close()` on the way
    out, whatever happens inside."""

    def close(self) -> None:
        raise NotImplementedError

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def temporary_folder(path: str | Path, kind: str = "tmp") -> Path:
    """The fixed temporary folder of `path`'s writes, `.<name>.<kind>` in its folder."""
    path = Path(path)
    return path.parent / f".{path.name}.{kind}"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield an empty file named as `path` inside its temporary folder, `.<name>.tmp` (`temporary_folder`), for the
    block to write; rename it over `path` if the block succeeds, delete it if not.

    The file gets the permissions of any file the user creates (0666 less the umask), not tempfile's private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _claim(temporary_folder(path)) as folder:
        tmp = folder / path.name
        tmp.touch()
        try:
            yield tmp
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
            folder.rmdir()


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path` (`temporary_folder`); put it in place of `path` if the block
    succeeds, delete it if not.

    The folder gets the permissions of any folder the user creates (0777 less the umask). What was at `path` is
    removed only once the new folder is in place: it is first moved into a second temporary, `.<name>.old`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _claim(temporary_folder(path)) as tmp, _claim(temporary_folder(path, "old")) as old:
        try:
            yield tmp
            if os.path.lexists(path):
                os.replace(path, old / path.name)
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _claim(folder: Path) -> Iterator[Path]:
    """Create the empty temporary `folder` and hold its lock until the block ends. One left by a killed writer is
    cleared first; one that a live writer holds is waited for."""
    while True:
        folder.mkdir(exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
        try:
            _lock(fd)
            if not _same_file(fd, folder):
                continue  # the writer we waited for renamed or removed it: start again
            if not any(folder.iterdir()):
                yield folder
                return
            shutil.rmtree(folder)  # a killed writer's, still holding what it wrote
        finally:
            os.close(fd)


def _lock(fd: int) -> None:
    """Take the exclusive lock of the open file `fd`, waiting for its holder; nothing where locks are unsupported."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as err:
        if err.errno not in _NO_LOCKS:
            raise


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` is still the file open as `fd`."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def sha256_file(path: str | Path, on_block: Callable[[int], object] | None = None) -> str:
    """Hex SHA-256 of the file at `path`, read in 1 MiB blocks; `on_block(n)` after each block (a progress bar)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
            if on_block is not None:
                on_block(len(block))
    return digest.hexdigest()
