"""Fetch one large file: resumable HTTP download, size and SHA-256 verification, atomic placement.

A `RemoteFile` says where a file comes from, what it must be (SHA-256 and size, each known or None) and which
params section configures it (`data.nyuv2`, `data.densedepth`), so that every message names the key to change.

`download` streams into `<dest>.part`; after an interrupted transfer (in this call or an earlier one) it asks
the server for the rest with an HTTP Range request, and starts over if the server ignores it. A size that is not
known in advance is learnt from the server (Content-Length of a 200, the total in a 206's Content-Range). With
no size from anywhere, a drop that shows (a body short of its Content-Length, a broken chunked encoding) is still
resumed, but a body that the server simply closes is taken as the whole file. The file is renamed to
`dest` only once it has passed every check there is (size, SHA-256); a mismatch removes the `.part` file, so
nothing that failed a check is ever left at `dest`. Without a SHA-256 the file cannot be verified: a warning line
says so and gives the SHA-256 found, to be pinned in `<params>.sha256`.

`fetch` adds the offline routes: a file already at `dest` that passes the checks, or a local copy named by
`<params>.path`, is used without touching the network.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from depthcore import progress as progress_
from depthcore.errors import DepthcoreError
from depthcore.files import atomic_path, sha256_file

_BLOCK = 1 << 20  # bytes per read and write
_MAX_STALLS = 3  # consecutive attempts that add no byte before giving up
_SHA256 = re.compile(r"[0-9a-f]{64}")


class DownloadError(DepthcoreError, RuntimeError):
    """A download or a verification failed; the message names the file or URL, the cause and what to do."""


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: where from, what it must be, and the params section that configures it.

    `sha256` (64 hexadecimal digits, stored in lower case) or None: not verified, with a warning that gives the
    SHA-256 found. `size` in bytes, or None: learnt from the server. `params` is the params section whose keys
    the messages name, e.g. "data.densedepth" for `data.densedepth.path`, `.url` and `.sha256`.
    """

    url: str  # where `download` fetches the file from; "" = no URL (only a local copy can be used)
    sha256: str | None  # expected SHA-256, or None when not known (not verified)
    size: int | None  # expected size in bytes, or None when not known (learnt from the server)
    params: str  # params section named in messages, e.g. "data.nyuv2"

    def __post_init__(self) -> None:
        if not isinstance(self.params, str) or not self.params:
            raise ValueError(f"expected params as a params section name such as 'data.nyuv2', got {self.params!r}")
        if not isinstance(self.url, str):
            raise ValueError(f"expected {self.params}.url as a string, got {self.url!r}")
        _check_expected(self.sha256, self.size, self.params)
        if self.sha256 is not None:
            object.__setattr__(self, "sha256", self.sha256.lower())


def fetch(
    remote: RemoteFile,
    dest: str | Path,
    *,
    local_path: str | Path | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """A copy of `remote` at `dest` that passed every check there is, fetched only when needed; returns `dest`.

    With `local_path` (`<params>.path`): check that file and place it at `dest` (hard link, else copy); the
    network is never used. Otherwise a file already at `dest` that passes the checks is kept; one that fails them
    is removed, and `remote.url` is downloaded (see `download`).

    With neither a SHA-256 nor a size there is nothing to check a file at `dest` against, and it is kept: only a
    complete file ever gets that name (downloads go through `<dest>.part`, local copies through a temporary
    file), and DVC removes the download stage's output before it reruns, so a stale file does not linger there.
    Whenever the SHA-256 is not known, the file returned is hashed anyway and a warning gives its SHA-256.
    """
    if not isinstance(remote, RemoteFile):
        raise TypeError(f"expected remote as a RemoteFile, got {type(remote).__name__}")
    dest = Path(dest)
    if local_path is not None and str(local_path) != "":
        return _place_local_copy(remote, Path(local_path), dest, progress)
    if dest.is_file():
        try:
            found = verify_file(dest, remote.sha256, remote.size, progress=progress)
        except DownloadError:
            dest.unlink()  # not the expected file: never leave it there, even if the download below fails
        else:
            _warn_if_unverified(remote, dest, found)
            return dest
    return download(remote, dest, progress=progress, timeout=timeout)


def download(remote: RemoteFile, dest: str | Path, *, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download `remote.url` to `dest` through `<dest>.part`, resuming, then check size and SHA-256; returns `dest`.

    The size checked is `remote.size`, else the one the server announced; the SHA-256 is `remote.sha256`, else
    none (a warning gives the SHA-256 found). Raises DownloadError (naming the URL, the cause, and the offline
    alternatives) when there is no URL, the server cannot be reached, answers with an HTTP error, serves a file of
    another size or content, sends an empty file, or stops sending.
    """
    dest = Path(dest)
    url = remote.url
    if not url:
        raise DownloadError(
            f"cannot download {dest.name}: {remote.params}.url is empty; set {remote.params}.path to a local copy "
            f"of the file, or {remote.params}.url to where it can be downloaded, or use data.source=synthetic"
        )
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    size = remote.size  # None until the server tells
    bar_kwargs = {"unit": "B", "unit_scale": True, "unit_divisor": 1024, "desc": dest.name, "disable": not progress}
    with progress_.bar(total=size, **bar_kwargs) as bar:
        stalls = 0
        while size is None or _file_size(part) < size:
            offset = _file_size(part)
            bar.n = offset
            bar.refresh()
            written, total, ended = _transfer(remote, part, offset, size, bar, timeout)
            if size is None and total is not None:
                size = total
                bar.total = total
            if size is None and ended:
                break  # no size to wait for: the body ended, so has the file
            stalls = 0 if written else stalls + 1
            if stalls == _MAX_STALLS:
                of = "an unknown number of" if size is None else str(size)
                raise DownloadError(
                    f"cannot download {url}: the transfer stopped at {_file_size(part)} of {of} bytes "
                    f"{_MAX_STALLS} times in a row (run again to resume); {_offline_hint(remote.params)}"
                )
    try:
        if _file_size(part) == 0:
            raise DownloadError(f"{part} is empty")
        found = verify_file(part, remote.sha256, size, progress=progress)
    except DownloadError as err:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"downloaded {url}, but {err}; removed the download. {_offline_hint(remote.params)}"
        ) from None
    os.replace(part, dest)
    _warn_if_unverified(remote, dest, found)
    return dest


def verify_file(path: str | Path, sha256: str | None, size: int | None, *, progress: bool = False) -> str:
    """Check that `path` has `size` bytes and SHA-256 `sha256` (None: not checked); returns the SHA-256 found.

    The size is compared first, so a file of the wrong size is never hashed; otherwise the file is always hashed
    (in blocks), so that a file without an expected SHA-256 can be reported. Raises DownloadError on a mismatch.
    """
    _check_expected(sha256, size)
    path = Path(path)
    found_size = path.stat().st_size
    if size is not None and found_size != size:
        raise DownloadError(f"{path} has the wrong size: expected {size} bytes, found {found_size}")
    bar_kwargs = {"unit": "B", "unit_scale": True, "unit_divisor": 1024, "desc": "verifying", "disable": not progress}
    with progress_.bar(total=found_size, **bar_kwargs) as bar:
        found = sha256_file(path, bar.update)
    if sha256 is not None and found != sha256.lower():
        raise DownloadError(f"{path} has the wrong SHA-256: expected {sha256.lower()}, found {found}")
    return found


def _check_expected(sha256: str | None, size: int | None, params: str | None = None) -> None:
    key = f"{params}." if params else ""
    if sha256 is not None and (not isinstance(sha256, str) or not _SHA256.fullmatch(sha256.lower())):
        raise ValueError(f"expected {key}sha256 as 64 hexadecimal digits or None, got {sha256!r}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"expected {key}size as an int >= 1 (bytes) or None, got {size!r}")


def _offline_hint(params: str) -> str:
    return f"to go on offline, set {params}.path to a local copy of the file, or use data.source=synthetic"


def _warn_if_unverified(remote: RemoteFile, path: Path, found: str) -> None:
    """One warning line when `remote` has no SHA-256: `path` was not verified; give the SHA-256 to pin."""
    if remote.sha256 is None:
        progress_.write(
            f"warning: {path} was not verified ({remote.params}.sha256 is not set); its SHA-256 is {found}. "
            f"To check it from now on, set {remote.params}.sha256 to {found}"
        )


def _file_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _transfer(
    remote: RemoteFile, part: Path, offset: int, size: int | None, bar: tqdm, timeout: float
) -> tuple[int, int | None, bool]:
    """One request for the file from byte `offset` on, appended to `part` (or replacing it when the server sends
    the whole file); returns (bytes written, file size the server announced or None, whether the body ended).

    The body ended when it reached its Content-Length, or, without one, when the server closed it without an
    error; only a known file size can tell that a body of the second kind was cut short. A connection that drops
    midway ends the attempt quietly (the caller resumes); an unreachable server, an HTTP error, or a server whose
    file has another size than `size` (when known) raise DownloadError.
    """
    url, hint = remote.url, _offline_hint(remote.params)
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # no bytes from `offset` on: the file has `offset` bytes or fewer
            match = re.fullmatch(r"bytes \*/(\d+)", err.headers.get("Content-Range", ""))
            total = None if match is None else int(match[1])
            if total is not None and size is not None and total != size:
                part.unlink()
                raise _size_mismatch(remote, total, size) from None
            if size is None and total == offset:
                return 0, offset, True  # an earlier run got the whole file but stopped before checking it
            part.unlink()  # our partial file is longer than the server's file: start over
            return 0, None, False
        raise DownloadError(f"cannot download {url}: the server answered HTTP {err.code} {err.reason}; {hint}") from err
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        cause = err.reason if isinstance(err, urllib.error.URLError) else err
        raise DownloadError(f"cannot download {url}: no connection ({cause}); {hint}") from err
    with response:
        start, total = _response_range(response, offset)
        if total is not None and size is not None and total != size:
            part.unlink(missing_ok=True)
            raise _size_mismatch(remote, total, size)
        if start != offset:
            bar.n = start
        length = response.headers.get("Content-Length")  # of this body, which may be a part of the file
        written, ended = 0, False
        with open(part, "ab" if start else "wb") as out:
            try:  # read1: whatever has arrived, so that a drop loses no byte that came before it
                while block := response.read1(_BLOCK):
                    out.write(block)
                    written += len(block)
                    bar.update(len(block))
                ended = length is None or written == int(length)
            except (OSError, http.client.HTTPException):
                pass  # the connection dropped: keep what arrived, the caller asks for the rest
    return written, total, ended


def _size_mismatch(remote: RemoteFile, total: int, size: int) -> DownloadError:
    expected = f"expected {size}" if remote.size is not None else f"{size} when the download began"
    return DownloadError(
        f"cannot download {remote.url}: the server's file has {total} bytes, {expected} (a different file?); "
        f"{_offline_hint(remote.params)}"
    )


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


def _place_local_copy(remote: RemoteFile, local: Path, dest: Path, progress: bool) -> Path:
    """Check `local` and make `dest` the same file (hard link, or an atomic copy across file systems)."""
    key = f"{remote.params}.path"
    if not local.is_file():
        raise DownloadError(
            f"{key} is {local}, but there is no such file; point it to a copy of the file, "
            "set it to '' to download, or use data.source=synthetic"
        )
    try:
        found = verify_file(local, remote.sha256, remote.size, progress=progress)
    except DownloadError as err:
        raise DownloadError(
            f"the local copy ({key}) is not the expected file: {err}; point {key} to a good "
            "copy, set it to '' to download, or use data.source=synthetic"
        ) from None
    if not (dest.exists() and dest.samefile(local)):
        with atomic_path(dest) as tmp:
            tmp.unlink()  # a link or a copy needs the name free
            try:
                os.link(local, tmp)
            except OSError:  # another file system, or no hard links there
                shutil.copyfile(local, tmp)
    _warn_if_unverified(remote, local, found)
    return dest
