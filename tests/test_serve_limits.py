"""An over-limit body gets its 413 JSON answer even from a client that sends the whole body first.

A real uvicorn server on 127.0.0.1 (free port) and raw blocking sockets: the client writes every
byte of a 60 MB body with `sendall` before it reads, as a plain blocking HTTP client does. The
server must drain the rest of the body instead of closing a socket with unread data (a reset,
and no answer for that client). Every socket has a timeout, so no test can hang.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'im2text[serve]'")
pytest.importorskip("uvicorn", reason="needs the serve extra: pip install 'im2text[serve]'")

from conftest import ThreadServer as _ThreadServer

import im2text
from im2text.serve import ServeConfig, create_app
from im2text.serve import _app as app_module

LIMIT = 2_000_000
BIG = 60_000_000  # 30 x the limit, under the drain bound of 64 MiB
BLOCK = b"x" * 1_000_000


def ThreadServer(app: Any) -> _ThreadServer:
    return _ThreadServer(app, timeout_keep_alive=5)


@pytest.fixture(scope="module")
def server(tiny) -> Iterator[ThreadServer]:
    model = im2text.load(str(tiny("blip")))
    app = create_app({"blip": model}, ServeConfig(max_body_bytes=LIMIT))
    with ThreadServer(app) as s:
        yield s


def _head(size: int | None, close: bool, path: str = "/v1/caption") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines.append(f"Content-Length: {size}" if size is not None else "Transfer-Encoding: chunked")
    if close:
        lines.append("Connection: close")  # what urllib and many scripts send
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length: (status, headers, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    assert status_line.startswith("HTTP/1.1 "), status_line
    headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of the body"
        body += chunk
    return int(status_line.split()[1]), headers, body[:length]


def _assert_413(status: int, body: bytes) -> None:
    assert status == 413
    error = json.loads(body)["error"]
    assert error["type"] == "request_too_large" and str(LIMIT) in error["message"]


@pytest.mark.parametrize("close", [False, True], ids=["keep-alive", "connection-close"])
def test_whole_body_sent_before_reading_gets_the_413(server: ThreadServer, close: bool) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(_head(BIG, close))
        for _ in range(BIG // len(BLOCK)):  # every byte, before reading anything
            sock.sendall(BLOCK)
        status, headers, body = _read_response(sock)
        _assert_413(status, body)
        assert headers["connection"].lower() == "close"
        sock.settimeout(10)
        assert sock.recv(1) == b""  # then a clean close (FIN, not a reset)


@pytest.mark.parametrize("close", [False, True], ids=["keep-alive", "connection-close"])
def test_whole_chunked_body_sent_before_reading_gets_the_413(
    server: ThreadServer, close: bool
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(_head(None, close))
        frame = b"%x\r\n" % len(BLOCK) + BLOCK + b"\r\n"
        for _ in range(BIG // len(BLOCK)):  # no Content-Length: cut off while reading
            sock.sendall(frame)
        sock.sendall(b"0\r\n\r\n")
        status, _, body = _read_response(sock)
        _assert_413(status, body)
        sock.settimeout(10)
        assert sock.recv(1) == b""


def test_a_client_that_reads_early_gets_the_413_at_once(server: ThreadServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        start = time.monotonic()
        sock.sendall(_head(BIG, close=False))  # headers only: the answer must not wait
        status, _, body = _read_response(sock)
        assert time.monotonic() - start < 2.0
        _assert_413(status, body)


def test_urllib_posting_60_mb_reads_the_json_error(server: ThreadServer) -> None:
    # The standard library's blocking client: it writes the whole body, then reads.
    url = f"http://127.0.0.1:{server.port}/v1/caption"
    request = urllib.request.Request(
        url, data=b" " * BIG, headers={"Content-Type": "application/json"}, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=30)
    assert info.value.code == 413
    _assert_413(413, info.value.read())


def test_an_early_refusal_is_drained_too(server: ThreadServer) -> None:
    # Under the limit but refused before the body is read (wrong content type): same drain.
    body = b"<xml/>" + b" " * (LIMIT - 10)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        head = _head(len(body), close=True).replace(b"application/json", b"text/xml")
        sock.sendall(head + body)
        status, _, answer = _read_response(sock)
    assert status == 415 and json.loads(answer)["error"]["type"] == "unsupported_media_type"


def test_the_drain_is_bounded_in_time(server: ThreadServer, monkeypatch) -> None:
    monkeypatch.setattr(app_module, "DRAIN_SECONDS", 0.5)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(_head(BIG, close=False) + BLOCK)  # then nothing more: a stalled client
        status, _, body = _read_response(sock)
        _assert_413(status, body)
        start = time.monotonic()
        sock.settimeout(10)
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass  # closed with the stalled body unread: a reset is fine here
        assert time.monotonic() - start < 5.0  # let go after the drain bound, not held open


def test_a_body_past_the_drain_bound_is_not_read(server: ThreadServer) -> None:
    # 200 MB declared is more than the drain would read: answered and closed at once.
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(_head(200_000_000, close=False))
        status, _, body = _read_response(sock)
        _assert_413(status, body)
        start = time.monotonic()
        sock.settimeout(10)
        assert sock.recv(1) == b""
        assert time.monotonic() - start < 2.0


def test_the_server_still_answers_after_all_that(server: ThreadServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        status, _, body = _read_response(sock)
    assert status == 200 and json.loads(body) == {"status": "ok"}


def test_an_unauthenticated_body_sent_whole_gets_its_401(tiny) -> None:
    # Auth refuses before reading the body; the body limit around it drains, so a client that
    # writes a large (allowed-size) body before reading still gets the JSON 401, not a reset.
    model = im2text.load(str(tiny("blip")))
    config = ServeConfig(max_body_bytes=2 * BIG, api_keys=("secret",))
    with (
        ThreadServer(create_app({"blip": model}, config)) as s,
        socket.create_connection(("127.0.0.1", s.port), timeout=30) as sock,
    ):
        sock.sendall(_head(BIG, close=True))
        for _ in range(BIG // len(BLOCK)):
            sock.sendall(BLOCK)
        status, _, answer = _read_response(sock)
    assert status == 401 and json.loads(answer)["error"]["type"]
