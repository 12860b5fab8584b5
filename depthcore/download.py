"""Fetch one large file: resumable HTTP download, size and SHA-256 verification, atomic placement.

`download` streams into `<dest>.part`; after an interrupted transfer (in this call or an earlier one) it asks
the server for the rest with an HTTP Range request, and starts over if the server ignores it. The file is
renamed to `dest` only once its size and SHA-256 match; a mismatch removes the `.part` file, so nothing
unverified is ever left at `dest`. `fetch_nyuv2` adds the offline routes: a verified copy already at `dest`,
or a local copy named by `data.nyuv2.path`, is used without touching the network.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from depthcore.files import atomic_path, sha256_file

OFFLINE_HINT = "to go on offline, set data.nyuv2.path to a local copy of the file, or use data.source=synthetic"
_BLOCK = 1 << 20  # bytes per read, write and hash update
_MAX_STALLS = 3  # consecutive attempts that add no byte before giving up
_SHA256 = re.compile(r"[0-9a-f]{64}")


class DownloadError(RuntimeError):
    """A download or a verification failed; the message names the file or URL, the cause and what to do."""


def fetch_nyuv2(
    url: str,
    dest: str | Path,
    sha256: str,
    size: int,
    *,
    local_path: str | Path | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """A verified copy of the labeled NYU Depth v2 file at `dest`, fetched only when needed; returns `dest`.

    With `local_path` (data.nyuv2.path): verify that file and place it at `dest` (hard link, else copy); the
    network is never used. Otherwise a verified file already at `dest` is kept, and anything else downloads
    `url` (see `download`).
    """
    dest = Path(dest)
    if local_path is not None and str(local_path) != "":
        return _place_local_copy(Path(local_path), dest, sha256, size, progress)
    if dest.is_file():
        try:
            verify_file(dest, sha256, size, progress=progress)
            return dest
        except DownloadError:
            pass  # not the expected file: download it again, which replaces it only once verified
    return download(url, dest, sha256, size, progress=progress, timeout=timeout)


def download(
    url: str, dest: str | Path, sha256: str, size: int, *, progress: bool = True, timeout: float = 60.0
) -> Path:
    """Download `url` to `dest` through `<dest>.part`, resuming, then verify size and SHA-256; returns `dest`.

    Raises DownloadError (naming the URL, the cause, and the offline alternatives) when the server cannot be
    reached, answers with an HTTP error, serves a file of another size or content, or stops sending.
    """
    _check_expected(sha256, size)
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name, disable=not progress) as bar:
        stalls = 0
        while (offset := _file_size(part)) < size:
            bar.n = offset
            bar.refresh()
            stalls = 0 if _transfer(url, part, offset, size, bar, timeout) else stalls + 1
            if stalls == _MAX_STALLS:
                raise DownloadError(
                    f"cannot download {url}: the transfer stopped at {_file_size(part)} of {size} bytes "
                    f"{_MAX_STALLS} times in a row (run again to resume); {OFFLINE_HINT}"
                )
    try:
        verify_file(part, sha256, size, progress=progress)
    except DownloadError as err:
        part.unlink(missing_ok=True)
        raise DownloadError(f"downloaded {url}, but {err}; removed the download. {OFFLINE_HINT}") from None
    os.replace(part, dest)
    return dest


def verify_file(path: str | Path, sha256: str, size: int, *, progress: bool = False) -> None:
    """Raise DownloadError unless `path` has exactly `size` bytes and SHA-256 `sha256` (hashed in blocks)."""
    _check_expected(sha256, size)
    path = Path(path)
    found_size = path.stat().st_size
    if found_size != size:
        raise DownloadError(f"{path} has the wrong size: expected {size} bytes, found {found_size}")
    with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc="verifying", disable=not progress) as bar:
        found = sha256_file(path, bar.update)
    if found != sha256.lower():
        raise DownloadError(f"{path} has the wrong SHA-256: expected {sha256.lower()}, found {found}")


def _check_expected(sha256: str, size: int) -> None:
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256.lower()):
        raise ValueError(f"expected sha256 as 64 hexadecimal digits, got {sha256!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"expected size as an int >= 1 (bytes), got {size!r}")


def _file_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _transfer(url: str, part: Path, offset: int, size: int, bar: tqdm, timeout: float) -> int:
    """One request for `url` from byte `offset` on, appended to `part`; returns the bytes written.

    A connection that drops midway ends the attempt quietly (the caller resumes); an unreachable server, an
    HTTP error, or a server whose file has another size than `size` raise DownloadError.
    """
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # our partial file is longer than the server's file: start over
            part.unlink()
            return 0
        raise DownloadError(
            f"cannot download {url}: the server answered HTTP {err.code} {err.reason}; {OFFLINE_HINT}"
        ) from err
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        cause = err.reason if isinstance(err, urllib.error.URLError) else err
        raise DownloadError(f"cannot download {url}: no connection ({cause}); {OFFLINE_HINT}") from err
    with response:
        start, total = _response_range(response, offset)
        if total is not None and total != size:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"cannot download {url}: the server's file has {total} bytes, expected {size} "
                f"(a different file?); {OFFLINE_HINT}"
            )
        if start != offset:
            bar.n = start
        written = 0
        with open(part, "ab" if start else "wb") as out:
            try:
                while block := response.read(_BLOCK):
                    out.write(block)
                    written += len(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException):
                pass  # the connection dropped: keep what arrived, the caller asks for the rest
    return written


def _response_range(response: http.client.HTTPResponse, offset: int) -> tuple[int, int | None]:
    """(first byte the body holds, total file size or None if unknown) of a response to a request from `offset`.

    A 200 answer to a Range request means the server ignored it: the body starts at 0.
    """
    if response.status == 206:
        match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
        if match is None or int(match[1]) != offset:
            raise DownloadError(
                f"cannot resume {response.url}: asked for bytes from {offset}, got Content-Range "
                f"{response.headers.get('Content-Range')!r}; delete the .part file and run again"
            )
        return offset, None if match[2] == "*" else int(match[2])
    length = response.headers.get("Content-Length")
    return 0, int(length) if length is not None else None


def _place_local_copy(local: Path, dest: Path, sha256: str, size: int, progress: bool) -> Path:
    """Verify `local` and make `dest` the same file (hard link, or an atomic copy across file systems)."""
    if not local.is_file():
        raise DownloadError(
            f"data.nyuv2.path is {local}, but there is no such file; point it to a copy of the file, "
            "set it to '' to download, or use data.source=synthetic"
        )
    try:
        verify_file(local, sha256, size, progress=progress)
    except DownloadError as err:
        raise DownloadError(
            f"the local copy (data.nyuv2.path) is not the expected file: {err}; point data.nyuv2.path to a good "
            "copy, set it to '' to download, or use data.source=synthetic"
        ) from None
    if dest.exists() and dest.samefile(local):
        return dest
    with atomic_path(dest) as tmp:
        tmp.unlink()  # a link or a copy needs the name free
        try:
            os.link(local, tmp)
        except OSError:  # another file system, or no hard links there
            shutil.copyfile(local, tmp)
    return dest
