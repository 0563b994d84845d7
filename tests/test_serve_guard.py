"""The live server against malformed and hostile clients: no 5xx from bad input, keep-alive
survives a 4xx, 413 (never 429) for requests over the limits, slow headers and bodies time out
while /health stays up, a foreign Host and cross-origin posts are refused.

A real uvicorn server on 127.0.0.1 with `run()`'s options, raw sockets with timeouts; each test
is bounded in time (the slow-client one runs 20 s).
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'im2text[serve]'")

from conftest import ThreadServer, png

import im2text
from im2text.serve import ServeConfig, create_app
from im2text.serve._guard import uvicorn_options

CONFIG = ServeConfig(max_images=4, max_queue=8, header_timeout_s=2.0, body_timeout_s=2.0)


@pytest.fixture(scope="module")
def server(tiny) -> Iterator[ThreadServer]:
    models = {"blip": im2text.load(str(tiny("blip"))), "clip": im2text.load(str(tiny("clip")))}
    with ThreadServer(create_app(models, CONFIG), **uvicorn_options(CONFIG)) as s:
        yield s


IMG = base64.b64encode(png()).decode()
MALFORMED = [
    ("/v1/caption", b"{not json"),
    ("/v1/caption", b"[" * 200_000 + b"]" * 200_000),  # deeply nested
    ("/v1/caption", b'{"image": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    ("/v1/caption", json.dumps({"image": IMG, "temperature": 1e308, "do_sample": True}).encode()),
    ("/v1/caption", json.dumps({"image": IMG, "num_beams": 10**30}).encode()),
    ("/v1/caption", json.dumps({"image": IMG, "max_new_tokens": -1}).encode()),
    ("/v1/caption", b'{"image": "' + IMG.encode() + b'", "temperature": NaN, "do_sample": true}'),
    ("/v1/caption", json.dumps({"image": IMG, "top_p": "lots"}).encode()),
    ("/v1/caption", json.dumps({"image": "not base64 !!"}).encode()),
    ("/v1/caption", json.dumps({"images": [IMG] * 5}).encode()),  # over max_images: 413
    ("/v1/classify", json.dumps({"image": IMG, "labels": ["a"], "templates": ["x"]}).encode()),
    ("/v1/classify", json.dumps({"image": IMG, "labels": [], "top_k": 0}).encode()),
    ("/v1/match", json.dumps({"image": IMG, "texts": [{"a": 1}]}).encode()),
    ("/v1/chat/completions", json.dumps({"model": "blip", "messages": "hi"}).encode()),
    (
        "/v1/chat/completions",
        json.dumps(
            {
                "model": "blip",
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:x"}}],
                    }
                ],
            }
        ).encode(),
    ),
    ("/v1/nowhere", b"{}"),
]


def test_malformed_bodies_are_4xx_and_keep_alive_survives(server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("GET", "/health")
    conn.getresponse().read()
    sock = conn.sock
    for path, body in MALFORMED:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        assert 400 <= resp.status < 500, (path, body[:80], resp.status, data[:300])
        assert "error" in json.loads(data), data[:200]
        assert resp.status != 429, "429 says retry; these can never succeed"
        conn.request("GET", "/health")  # the same connection serves the next request
        health = conn.getresponse()
        assert health.status == 200 and health.read()
        assert conn.sock is sock, f"connection closed after {path} {body[:60]!r}"
    conn.request("POST", "/v1/caption", body=json.dumps({"images": [IMG] * 5}),
                 headers={"Content-Type": "application/json"})  # fmt: skip
    resp = conn.getresponse()
    assert resp.status == 413 and json.loads(resp.read())["error"]["type"] == "too_many_images"
    conn.close()


def test_slow_headers_and_bodies_time_out_while_health_answers(server) -> None:
    slow: list[socket.socket] = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=15)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers never finish
        slow.append(s)
    closed_at: list[float] = []
    start = time.monotonic()

    def drip(s: socket.socket) -> None:
        try:
            while time.monotonic() - start < 20:
                s.sendall(b"X-Drip: 1\r\n")  # a header byte now and then
                time.sleep(0.5)
        except OSError:
            closed_at.append(time.monotonic() - start)  # the server closed it

    threads = [threading.Thread(target=drip, args=(s,)) for s in slow]
    for t in threads:
        t.start()
    answered = 0
    while time.monotonic() - start < 20:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
        conn.request("GET", "/health")
        assert conn.getresponse().status == 200
        answered += 1
        conn.close()
        time.sleep(0.2)
    for t in threads:
        t.join(30)
    assert answered >= 50
    assert len(closed_at) == 20 and max(closed_at) < CONFIG.header_timeout_s + 3
    # A body that stops halfway: 408 after body_timeout_s, and the connection is closed.
    s = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    s.sendall(b"POST /v1/caption HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
              b"\r\nContent-Length: 1000\r\n\r\n{\"image\": \"")  # fmt: skip
    t0 = time.monotonic()
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    assert data.startswith(b"HTTP/1.1 408") and time.monotonic() - t0 < CONFIG.body_timeout_s + 3
    s.close()


def test_foreign_host_and_cross_origin_posts_are_refused(server, tiny) -> None:
    def call(headers: dict[str, str], method: str = "POST") -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        body = json.dumps({"image": IMG, "max_new_tokens": 2}) if method == "POST" else None
        conn.request(method, "/v1/caption" if method == "POST" else "/health", body=body,
                     headers={"Content-Type": "application/json", **headers})  # fmt: skip
        resp = conn.getresponse()
        out = (resp.status, json.loads(resp.read()))
        conn.close()
        return out

    local = f"127.0.0.1:{server.port}"
    assert call({"Host": "evil.example"}, "GET")[0] == 400  # DNS rebinding: a foreign name
    status, body = call({"Host": f"evil.example:{server.port}"})
    assert status == 400 and body["error"]["type"] == "host_not_allowed"
    assert call({"Host": f"localhost:{server.port}"})[0] == 200
    status, body = call({"Host": local, "Origin": "http://evil.example"})  # a form elsewhere
    assert status == 403 and body["error"]["type"] == "cross_origin_refused"
    assert call({"Host": local, "Origin": "null"})[0] == 403
    assert call({"Host": local, "Origin": f"http://{local}"})[0] == 200  # the compare page
    # Configured names and origins are let in.
    cfg = ServeConfig(allowed_hosts=("images.internal",), allowed_origins=("https://app.example",))
    app = create_app({"blip": im2text.load(str(tiny("blip")))}, cfg)
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="http://images.internal") as c:
        ok = c.post("/v1/caption", json={"image": IMG, "max_new_tokens": 2},
                    headers={"Origin": "https://app.example"})  # fmt: skip
        assert ok.status_code == 200
        assert c.post("/v1/caption", json={"image": IMG},
                      headers={"Origin": "https://other.example"}).status_code == 403  # fmt: skip
