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

from depthcore.download import DownloadError, download, fetch_nyuv2, verify_file

SIZE = 200_000
CONTENT = np.random.default_rng(0).bytes(SIZE)
SHA256 = hashlib.sha256(CONTENT).hexdigest()
OFFLINE_WORDS = ("data.nyuv2.path", "data.source=synthetic")


class FileServer(ThreadingHTTPServer):
    """Serves `body` at every path. `drops` responses are cut after `keep` of their bytes, then the
    connection is closed; `honour_range` False ignores Range headers; every request's Range is logged."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.body = CONTENT
        self.drops = 0
        self.keep = 0.5
        self.honour_range = True
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
        start = 0
        if srv.honour_range and self.headers.get("Range"):
            start = int(re.fullmatch(r"bytes=(\d+)-", self.headers["Range"])[1])
        payload = srv.body[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(srv.body) - 1}/{len(srv.body)}")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if srv.drops:
            srv.drops -= 1
            payload = payload[: int(len(payload) * srv.keep)]
            self.close_connection = True
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


def assert_offline_hint(message: str, *words: str) -> None:
    for word in (*OFFLINE_WORDS, *words):
        assert word in message


def test_resumes_after_the_connection_drops(server: FileServer, tmp_path: Path) -> None:
    server.drops = 1
    dest = download(server.url, tmp_path / "nyu.mat", SHA256, SIZE, progress=False)
    assert dest == tmp_path / "nyu.mat" and dest.read_bytes() == CONTENT
    assert server.ranges == [None, "bytes=100000-"]
    assert list(tmp_path.iterdir()) == [dest]


def test_resumes_a_part_file_left_by_an_earlier_run(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / "nyu.mat.part").write_bytes(CONTENT[:50_000])
    dest = download(server.url, tmp_path / "nyu.mat", SHA256, SIZE, progress=False)
    assert dest.read_bytes() == CONTENT and server.ranges == ["bytes=50000-"]
    assert not (tmp_path / "nyu.mat.part").exists()


def test_restarts_when_the_server_ignores_range(server: FileServer, tmp_path: Path) -> None:
    server.honour_range = False
    (tmp_path / "nyu.mat.part").write_bytes(b"x" * 50_000)
    dest = download(server.url, tmp_path / "nyu.mat", SHA256, SIZE, progress=False)
    assert dest.read_bytes() == CONTENT and server.ranges == ["bytes=50000-"]


def test_wrong_content_leaves_nothing(server: FileServer, tmp_path: Path) -> None:
    server.body = bytes(SIZE)  # right size, wrong bytes
    server.drops = 1  # and resumed on the way
    with pytest.raises(DownloadError) as info:
        download(server.url, tmp_path / "nyu.mat", SHA256, SIZE, progress=False)
    assert_offline_hint(str(info.value), server.url, SHA256, hashlib.sha256(bytes(SIZE)).hexdigest())
    assert list(tmp_path.iterdir()) == []


def test_wrong_size_leaves_nothing(server: FileServer, tmp_path: Path) -> None:
    server.body = CONTENT[:150_000]
    (tmp_path / "nyu.mat.part").write_bytes(CONTENT[:1000])
    with pytest.raises(DownloadError, match="has 150000 bytes, expected 200000") as info:
        download(server.url, tmp_path / "nyu.mat", SHA256, SIZE, progress=False)
    assert_offline_hint(str(info.value), server.url)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server(dead_url: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="no connection") as info:
        download(dead_url, tmp_path / "nyu.mat", SHA256, SIZE, progress=False)
    assert_offline_hint(str(info.value), dead_url)
    assert list(tmp_path.iterdir()) == []


def test_http_error(server: FileServer, tmp_path: Path) -> None:
    server.status = 404
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download(server.url, tmp_path / "nyu.mat", SHA256, SIZE, progress=False)
    assert_offline_hint(str(info.value), server.url)


def test_gives_up_when_no_bytes_arrive(server: FileServer, tmp_path: Path) -> None:
    server.drops, server.keep = 100, 0.0
    with pytest.raises(DownloadError, match="stopped at 0 of 200000 bytes 3 times") as info:
        download(server.url, tmp_path / "nyu.mat", SHA256, SIZE, progress=False)
    assert_offline_hint(str(info.value), server.url)
    assert len(server.ranges) == 3 and not (tmp_path / "nyu.mat").exists()


def test_fetch_keeps_a_verified_file_without_network(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / "nyu.mat").write_bytes(CONTENT)
    assert fetch_nyuv2(server.url, tmp_path / "nyu.mat", SHA256, SIZE, progress=False) == tmp_path / "nyu.mat"
    assert server.ranges == []


def test_fetch_replaces_a_bad_file_by_downloading(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / "nyu.mat").write_bytes(bytes(SIZE))
    dest = fetch_nyuv2(server.url, tmp_path / "nyu.mat", SHA256, SIZE, progress=False)
    assert dest.read_bytes() == CONTENT and server.ranges == [None]


def test_fetch_uses_a_local_copy_without_network(dead_url: str, tmp_path: Path) -> None:
    local = tmp_path / "mine" / "nyu_depth_v2_labeled.mat"
    local.parent.mkdir()
    local.write_bytes(CONTENT)
    dest = fetch_nyuv2(dead_url, tmp_path / "data" / "nyu.mat", SHA256, SIZE, local_path=local, progress=False)
    assert dest == tmp_path / "data" / "nyu.mat" and dest.read_bytes() == CONTENT
    assert local.read_bytes() == CONTENT and sorted(p.name for p in dest.parent.iterdir()) == ["nyu.mat"]
    # the destination itself as the local copy: verified and kept
    assert fetch_nyuv2(dead_url, dest, SHA256, SIZE, local_path=dest, progress=False) == dest


def test_fetch_rejects_a_bad_local_copy(dead_url: str, tmp_path: Path) -> None:
    local = tmp_path / "mine.mat"
    local.write_bytes(CONTENT[:-1] + b"\0")
    with pytest.raises(DownloadError, match="data.nyuv2.path") as info:
        fetch_nyuv2(dead_url, tmp_path / "nyu.mat", SHA256, SIZE, local_path=local, progress=False)
    message = str(info.value)
    assert str(local) in message and SHA256 in message
    assert hashlib.sha256(CONTENT[:-1] + b"\0").hexdigest() in message
    assert not (tmp_path / "nyu.mat").exists()
    with pytest.raises(DownloadError, match="no such file"):
        fetch_nyuv2(dead_url, tmp_path / "nyu.mat", SHA256, SIZE, local_path=tmp_path / "nope.mat")


def test_verify_file(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(CONTENT)
    verify_file(path, SHA256.upper(), SIZE)
    with pytest.raises(DownloadError, match=f"expected {SIZE + 1} bytes, found {SIZE}"):
        verify_file(path, SHA256, SIZE + 1)
    with pytest.raises(ValueError, match="64 hexadecimal digits"):
        verify_file(path, "abc", SIZE)
    with pytest.raises(ValueError, match="int >= 1"):
        verify_file(path, SHA256, 0)
