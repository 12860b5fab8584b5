"""File helpers: atomic writes (a file appears under its name complete, or not at all) and hashing in blocks."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

HASH_BLOCK = 1 << 20  # bytes per read when hashing


class Closing(contextlib.AbstractContextManager):
    """A reader that is its own context manager: `with Reader(path) as reader:` calls `reader.close()` on the way
    out, whatever happens inside."""

    def close(self) -> None:
        raise NotImplementedError

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` if the block succeeds, delete it if not.

    The file gets the permissions of any file the user creates (0666 less the umask), not tempfile's private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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
