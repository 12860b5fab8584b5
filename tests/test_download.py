from __future__ import annotations

import hashlib
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from depthcore.download import DownloadError, RemoteFile, download, fetch, verify_file
from depthcore.errors import DepthcoreError

SIZE = 200_000
CONTENT = np.random.default_rng(0).bytes(SIZE)
SHA256 = hashlib.sha256(CONTENT).hexdigest()
SECTIONS = ("data.nyuv2", "data.densedepth")


class FileServer(ThreadingHTTPServer):
    """Serves `body` at every path (`later_body` from the second request on, when set). `drops` responses are cut
    after `keep` of their bytes, then the connection is closed; `honour_range` False ignores Range headers;
    `send_length` False leaves out Content-Length, ending the body by closing the connection, or with chunked
    encoding for a whole-file (200) answer when `chunk_full`; `hide_total` sends '*' as the total in Content-Range;
    every request's Range is logged."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.body = CONTENT
        self.later_body: bytes | None = None
        self.drops = 0
        self.keep = 0.5
        self.honour_range = True
        self.send_length = True
        self.chunk_full = False
        self.hide_total = False
        self.status = 200
        self.ranges: list[str | None] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/nyu_depth_v2_labeled.mat"


class RangeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FileServer

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        srv = self.server
        srv.ranges.append(self.headers.get("Range"))
        if srv.status != 200:
            self.send_error(srv.status)
            return
        body = srv.later_body if srv.later_body is not None and len(srv.ranges) > 1 else srv.body
        start = 0
        if srv.honour_range and self.headers.get("Range"):
            start = int(re.fullmatch(r"bytes=(\d+)-", self.headers["Range"])[1])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        payload = body[start:]
        self.send_response(206 if start else 200)
        if start:
            total = "*" if srv.hide_total else len(body)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{total}")
        chunked = not srv.send_length and srv.chunk_full and not start
        if srv.send_length:
            self.send_header("Content-Length", str(len(payload)))
        elif chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        full = len(payload)
        if srv.drops:
            srv.drops -= 1
            payload = payload[: int(len(payload) * srv.keep)]
            self.close_connection = True
        if chunked:  # one chunk announced whole, of which only `payload` is sent when the answer is cut
            self.wfile.write(f"{full:x}\r\n".encode() + payload + (b"\r\n0\r\n\r\n" if len(payload) == full else b""))
        else:
            self.wfile.write(payload)
        self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the http.server API)
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FileServer]:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    srv = FileServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


@pytest.fixture
def dead_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a port that was just free)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/nyu_depth_v2_labeled.mat"


def remote(url: str, sha256: str | None = SHA256, size: int | None = SIZE, params: str = "data.nyuv2") -> RemoteFile:
    return RemoteFile(url, sha256, size, params)


def assert_offline_hint(message: str, *words: str, params: str = "data.nyuv2") -> None:
    for word in (f"{params}.path", "data.source=synthetic", *words):
        assert word in message
    for other in SECTIONS:
        if other != params:
            assert other not in message


def warnings(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("warning:")]


# ---- what download did before: known size and SHA-256


def test_resumes_after_the_connection_drops(server: FileServer, tmp_path: Path) -> None:
    server.drops = 1
    dest = download(remote(server.url), tmp_path / "nyu.mat", progress=False)
    assert dest == tmp_path / "nyu.mat" and dest.read_bytes() == CONTENT
    assert server.ranges == [None, "bytes=100000-"]
    assert list(tmp_path.iterdir()) == [dest]


def test_resumes_a_part_file_left_by_an_earlier_run(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / "nyu.mat.part").write_bytes(CONTENT[:50_000])
    dest = download(remote(server.url), tmp_path / "nyu.mat", progress=False)
    assert dest.read_bytes() == CONTENT and server.ranges == ["bytes=50000-"]
    assert not (tmp_path / "nyu.mat.part").exists()


def test_restarts_when_the_server_ignores_range(server: FileServer, tmp_path: Path) -> None:
    server.honour_range = False
    (tmp_path / "nyu.mat.part").write_bytes(b"x" * 50_000)
    dest = download(remote(server.url), tmp_path / "nyu.mat", progress=False)
    assert dest.read_bytes() == CONTENT and server.ranges == ["bytes=50000-"]


def test_restarts_when_the_part_file_is_longer_than_the_servers_file(server: FileServer, tmp_path: Path) -> None:
    server.body = CONTENT[:1000]
    (tmp_path / "nyu.mat.part").write_bytes(b"x" * 5000)  # HTTP 416 for bytes=5000-
    small = remote(server.url, hashlib.sha256(CONTENT[:1000]).hexdigest(), None)
    dest = download(small, tmp_path / "nyu.mat", progress=False)
    assert dest.read_bytes() == CONTENT[:1000] and server.ranges == ["bytes=5000-", None]


def test_a_416_naming_another_size_fails_at_once(server: FileServer, tmp_path: Path) -> None:
    server.body = CONTENT[:30_000]
    (tmp_path / "nyu.mat.part").write_bytes(CONTENT[:50_000])  # HTTP 416, bytes */30000
    with pytest.raises(DownloadError, match="has 30000 bytes, expected 200000") as info:
        download(remote(server.url), tmp_path / "nyu.mat", progress=False)
    assert_offline_hint(str(info.value), server.url)
    assert server.ranges == ["bytes=50000-"] and list(tmp_path.iterdir()) == []


def test_wrong_content_leaves_nothing(server: FileServer, tmp_path: Path) -> None:
    server.body = bytes(SIZE)  # right size, wrong bytes
    server.drops = 1  # and resumed on the way
    with pytest.raises(DownloadError) as info:
        download(remote(server.url), tmp_path / "nyu.mat", progress=False)
    assert_offline_hint(str(info.value), server.url, SHA256, hashlib.sha256(bytes(SIZE)).hexdigest())
    assert list(tmp_path.iterdir()) == []


def test_wrong_size_leaves_nothing(server: FileServer, tmp_path: Path) -> None:
    server.body = CONTENT[:150_000]
    (tmp_path / "nyu.mat.part").write_bytes(CONTENT[:1000])
    with pytest.raises(DownloadError, match="has 150000 bytes, expected 200000") as info:
        download(remote(server.url), tmp_path / "nyu.mat", progress=False)
    assert_offline_hint(str(info.value), server.url)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server(dead_url: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="no connection") as info:
        download(remote(dead_url), tmp_path / "nyu.mat", progress=False)
    assert_offline_hint(str(info.value), dead_url)
    assert list(tmp_path.iterdir()) == []
    assert isinstance(info.value, DepthcoreError)  # a stage prints it as one line, without a traceback


def test_http_error(server: FileServer, tmp_path: Path) -> None:
    server.status = 404
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download(remote(server.url), tmp_path / "nyu.mat", progress=False)
    assert_offline_hint(str(info.value), server.url)


def test_gives_up_when_no_bytes_arrive(server: FileServer, tmp_path: Path) -> None:
    server.drops, server.keep = 100, 0.0
    with pytest.raises(DownloadError, match="stopped at 0 of 200000 bytes 3 times") as info:
        download(remote(server.url), tmp_path / "nyu.mat", progress=False)
    assert_offline_hint(str(info.value), server.url)
    assert len(server.ranges) == 3 and not (tmp_path / "nyu.mat").exists()


def test_progress_goes_through_the_log_friendly_bar(
    server: FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    download(remote(server.url), tmp_path / "nyu.mat", progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err  # stderr is not a terminal here: whole lines, no redraws
    assert any(line.startswith("nyu.mat:") for line in err.splitlines())
    assert any(line.startswith("verifying:") for line in err.splitlines())


# ---- size not known in advance


def test_unknown_size_is_learnt_from_content_length(server: FileServer, tmp_path: Path) -> None:
    server.drops = 1
    dest = download(remote(server.url, size=None), tmp_path / "nyu.mat", progress=False)
    assert dest.read_bytes() == CONTENT and server.ranges == [None, "bytes=100000-"]


@pytest.mark.parametrize("later_size", [150_000, 250_000])
def test_a_learnt_size_that_changes_midway_fails(server: FileServer, tmp_path: Path, later_size: int) -> None:
    server.drops = 1  # the first answer announces 200000 bytes; the resumed one, another size
    server.later_body = (CONTENT * 2)[:later_size]
    with pytest.raises(DownloadError, match=f"has {later_size} bytes, 200000 when the download began") as info:
        download(remote(server.url, size=None), tmp_path / "nyu.mat", progress=False)
    assert_offline_hint(str(info.value), server.url)
    assert list(tmp_path.iterdir()) == []


def test_unknown_size_is_learnt_from_content_range_when_resuming_after_a_drop(
    server: FileServer, tmp_path: Path
) -> None:
    # no Content-Length anywhere: the first (chunked) answer is cut, which shows; the resumed 206 answers end by
    # closing the connection, so only the total in their Content-Range tells that the first of them was cut too
    server.send_length, server.chunk_full, server.drops = False, True, 2
    dest = download(remote(server.url, size=None), tmp_path / "nyu.mat", progress=False)
    assert dest.read_bytes() == CONTENT
    assert server.ranges == [None, "bytes=100000-", "bytes=150000-"]


def test_unknown_size_is_learnt_from_content_range_of_a_part_file(server: FileServer, tmp_path: Path) -> None:
    server.send_length, server.drops = False, 1
    (tmp_path / "nyu.mat.part").write_bytes(CONTENT[:50_000])
    dest = download(remote(server.url, size=None), tmp_path / "nyu.mat", progress=False)
    assert dest.read_bytes() == CONTENT and server.ranges == ["bytes=50000-", "bytes=125000-"]


def test_unknown_size_resumes_a_body_cut_short_of_its_content_length(server: FileServer, tmp_path: Path) -> None:
    server.hide_total, server.drops = True, 1  # 'bytes 50000-199999/*': the file's size is never told
    (tmp_path / "nyu.mat.part").write_bytes(CONTENT[:50_000])
    dest = download(remote(server.url, size=None), tmp_path / "nyu.mat", progress=False)
    assert dest.read_bytes() == CONTENT and server.ranges == ["bytes=50000-", "bytes=125000-"]


def test_unknown_size_with_a_complete_part_file_is_not_downloaded_again(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / "nyu.mat.part").write_bytes(CONTENT)  # an earlier run stopped while verifying
    dest = download(remote(server.url, size=None), tmp_path / "nyu.mat", progress=False)
    assert dest.read_bytes() == CONTENT and server.ranges == ["bytes=200000-"]  # answered 416, bytes */200000


def test_no_content_length_and_unknown_size(server: FileServer, tmp_path: Path) -> None:
    server.send_length = False
    dest = download(remote(server.url, size=None), tmp_path / "nyu.mat", progress=False)
    assert dest.read_bytes() == CONTENT and server.ranges == [None]


def test_no_content_length_and_unknown_size_ends_with_the_body(server: FileServer, tmp_path: Path) -> None:
    server.send_length, server.drops = False, 1  # a cut that nothing shows: the SHA-256 catches it
    with pytest.raises(DownloadError, match=f"expected {SHA256}") as info:
        download(remote(server.url, size=None), tmp_path / "nyu.mat", progress=False)
    assert_offline_hint(str(info.value), server.url, hashlib.sha256(CONTENT[:100_000]).hexdigest())
    assert server.ranges == [None] and list(tmp_path.iterdir()) == []


def test_an_empty_file_is_refused(server: FileServer, tmp_path: Path) -> None:
    server.body = b""
    with pytest.raises(DownloadError, match="is empty"):
        download(remote(server.url, sha256=None, size=None), tmp_path / "nyu.mat", progress=False)
    assert list(tmp_path.iterdir()) == []


# ---- SHA-256 not known in advance


def test_unknown_sha256_downloads_and_warns_with_the_hash_found(
    server: FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zip_remote = remote(server.url, sha256=None, size=None, params="data.densedepth")
    dest = download(zip_remote, tmp_path / "nyu_data.zip", progress=False)
    assert dest.read_bytes() == CONTENT
    (line,) = warnings(capsys.readouterr().out)
    assert "data.densedepth.sha256" in line and SHA256 in line and "data.nyuv2" not in line


def test_unknown_sha256_still_checks_a_known_size(server: FileServer, tmp_path: Path) -> None:
    server.body = CONTENT[:150_000]
    with pytest.raises(DownloadError, match="has 150000 bytes, expected 200000"):
        download(remote(server.url, sha256=None), tmp_path / "nyu.mat", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_known_sha256_gives_no_warning(server: FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    download(remote(server.url, size=None), tmp_path / "nyu.mat", progress=False)
    fetch(remote(server.url), tmp_path / "nyu.mat", progress=False)
    assert warnings(capsys.readouterr().out) == []


# ---- fetch: the offline routes


def test_fetch_keeps_a_verified_file_without_network(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / "nyu.mat").write_bytes(CONTENT)
    assert fetch(remote(server.url), tmp_path / "nyu.mat", progress=False) == tmp_path / "nyu.mat"
    assert server.ranges == []


def test_fetch_replaces_a_bad_file_by_downloading(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / "nyu.mat").write_bytes(bytes(SIZE))
    dest = fetch(remote(server.url), tmp_path / "nyu.mat", progress=False)
    assert dest.read_bytes() == CONTENT and server.ranges == [None]


def test_fetch_replaces_a_file_of_the_wrong_size_when_only_the_size_is_known(
    server: FileServer, tmp_path: Path
) -> None:
    (tmp_path / "nyu.mat").write_bytes(CONTENT[:1000])
    dest = fetch(remote(server.url, sha256=None), tmp_path / "nyu.mat", progress=False)
    assert dest.read_bytes() == CONTENT and server.ranges == [None]


def test_fetch_with_a_wrong_sha256_leaves_nothing_at_dest(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / "nyu.mat").write_bytes(bytes(SIZE))  # a bad file there before, and the server's is bad too
    server.body = bytes(SIZE)
    with pytest.raises(DownloadError, match=f"expected {SHA256}"):
        fetch(remote(server.url), tmp_path / "nyu.mat", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_fetch_keeps_a_file_it_cannot_check_and_warns(
    dead_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "nyu_data.zip").write_bytes(CONTENT[:1234])
    zip_remote = remote(dead_url, sha256=None, size=None, params="data.densedepth")
    assert fetch(zip_remote, tmp_path / "nyu_data.zip", progress=False) == tmp_path / "nyu_data.zip"
    assert (tmp_path / "nyu_data.zip").read_bytes() == CONTENT[:1234]
    (line,) = warnings(capsys.readouterr().out)
    assert "data.densedepth.sha256" in line and hashlib.sha256(CONTENT[:1234]).hexdigest() in line


def test_fetch_uses_a_local_copy_without_network(dead_url: str, tmp_path: Path) -> None:
    local = tmp_path / "mine" / "nyu_depth_v2_labeled.mat"
    local.parent.mkdir()
    local.write_bytes(CONTENT)
    dest = fetch(remote(dead_url), tmp_path / "data" / "nyu.mat", local_path=local, progress=False)
    assert dest == tmp_path / "data" / "nyu.mat" and dest.read_bytes() == CONTENT
    assert local.read_bytes() == CONTENT and sorted(p.name for p in dest.parent.iterdir()) == ["nyu.mat"]
    # the destination itself as the local copy: verified and kept
    assert fetch(remote(dead_url), dest, local_path=dest, progress=False) == dest


def test_fetch_uses_an_unverified_local_copy_and_warns(
    dead_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = tmp_path / "nyu_data_copy.zip"
    local.write_bytes(CONTENT)
    zip_remote = remote("", sha256=None, size=None, params="data.densedepth")
    dest = fetch(zip_remote, tmp_path / "data" / "nyu_data.zip", local_path=local, progress=False)
    assert dest.read_bytes() == CONTENT
    (line,) = warnings(capsys.readouterr().out)
    assert "data.densedepth.sha256" in line and SHA256 in line


@pytest.mark.parametrize("params", SECTIONS)
def test_fetch_rejects_a_bad_local_copy(dead_url: str, tmp_path: Path, params: str) -> None:
    local = tmp_path / "mine.mat"
    local.write_bytes(CONTENT[:-1] + b"\0")
    with pytest.raises(DownloadError, match=re.escape(f"({params}.path)")) as info:
        fetch(remote(dead_url, params=params), tmp_path / "nyu.mat", local_path=local, progress=False)
    message = str(info.value)
    assert_offline_hint(message, str(local), SHA256, hashlib.sha256(CONTENT[:-1] + b"\0").hexdigest(), params=params)
    assert not (tmp_path / "nyu.mat").exists()
    with pytest.raises(DownloadError, match=f"{params}.path is .*nope.mat, but there is no such file"):
        fetch(remote(dead_url, params=params), tmp_path / "nyu.mat", local_path=tmp_path / "nope.mat")


@pytest.mark.parametrize("params", SECTIONS)
def test_messages_name_the_params_section(dead_url: str, tmp_path: Path, params: str) -> None:
    with pytest.raises(DownloadError, match="no connection") as info:
        fetch(remote(dead_url, params=params), tmp_path / "f", progress=False)
    assert_offline_hint(str(info.value), dead_url, params=params)


def test_an_empty_url_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="data.densedepth.url is empty") as info:
        fetch(remote("", sha256=None, size=None, params="data.densedepth"), tmp_path / "nyu_data.zip")
    assert_offline_hint(str(info.value), params="data.densedepth")
    assert list(tmp_path.iterdir()) == []


# ---- checks of the arguments


def test_remote_file_checks_its_fields() -> None:
    assert remote("u", sha256=SHA256.upper()).sha256 == SHA256
    assert remote("u", sha256=None, size=None).size is None
    with pytest.raises(ValueError, match="data.densedepth.sha256 as 64 hexadecimal digits"):
        remote("u", sha256="", params="data.densedepth")
    with pytest.raises(ValueError, match="64 hexadecimal digits"):
        remote("u", sha256=SHA256[:-1] + "g")
    for size in (0, -5, True, 2.0, "200000"):
        with pytest.raises(ValueError, match="data.nyuv2.size as an int >= 1"):
            remote("u", size=size)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="params section"):
        remote("u", params="")
    with pytest.raises(ValueError, match="url as a string"):
        remote(None)  # type: ignore[arg-type]


def test_verify_file(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(CONTENT)
    assert verify_file(path, SHA256.upper(), SIZE) == SHA256
    assert verify_file(path, None, None) == SHA256  # nothing checked, the SHA-256 found still returned
    assert verify_file(path, SHA256, None) == verify_file(path, None, SIZE) == SHA256
    with pytest.raises(DownloadError, match=f"expected {SIZE + 1} bytes, found {SIZE}"):
        verify_file(path, None, SIZE + 1)
    with pytest.raises(DownloadError, match=f"expected {'0' * 64}, found {SHA256}"):
        verify_file(path, "0" * 64, None)
    with pytest.raises(ValueError, match="64 hexadecimal digits"):
        verify_file(path, "abc", SIZE)
    with pytest.raises(ValueError, match="int >= 1"):
        verify_file(path, SHA256, 0)
