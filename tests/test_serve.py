"""The HTTP server in-process: every endpoint, every error path, batching, limits, auth, SSRF.

Tiny random checkpoints (blip, blip-vqa, clip) and the real rapidocr engine; no network beyond
127.0.0.1 (the remote-URL tests fetch from a local test server or are refused before any
connection is made).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import ipaddress
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'im2text[serve]'")
pytest.importorskip("httpx", reason="needs the serve extra: pip install 'im2text[serve]'")
import httpx
from fastapi.testclient import TestClient

import im2text
from im2text.serve import ServeConfig, create_app
from im2text.serve import _fetch as fetch_mod
from im2text.serve._batcher import Batcher, QueueFullError
from im2text.serve._tasks import batch_runner

DATA = Path(__file__).parent / "data"

LOCAL = "http://127.0.0.1:8000"  # a Host the server accepts (loopback)
CONFIG = ServeConfig(
    max_body_bytes=2_000_000,
    max_image_bytes=1_000_000,
    max_pixels=4_000_000,
    max_images=4,
    max_texts=8,
    max_text_chars=200,
    max_wait_ms=5,
)


def png(seed: int = 0, size: tuple[int, int] = (48, 40)) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def bomb() -> bytes:
    """An 8,000 x 8,000 PNG of a few KB: 64 M pixels if anyone decoded it."""
    buf = io.BytesIO()
    Image.new("1", (8_000, 8_000)).save(buf, "PNG")
    return buf.getvalue()


def error_of(resp: httpx.Response) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"] and body["error"]["type"]
    return body["error"]


@pytest.fixture(scope="module")
def models(tiny) -> dict[str, im2text.Model]:
    return {
        "blip": im2text.load(str(tiny("blip"))),
        "blip-vqa": im2text.load(str(tiny("blip-vqa"))),
        "clip": im2text.load(str(tiny("clip"))),
        "rapidocr": im2text.load("rapidocr"),
    }


@pytest.fixture(scope="module")
def client(models) -> Iterator[TestClient]:
    with TestClient(create_app(models, CONFIG), base_url=LOCAL) as c:
        yield c


# --- service endpoints ---------------------------------------------------------------------------


def test_health_ready_info_and_page(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {
        "status": "ready",
        "models": ["blip", "blip-vqa", "clip", "rapidocr"],
    }
    info = client.get("/v1/info").json()
    by_id = {m["id"]: m for m in info["models"]}
    assert by_id["blip"]["can"] == ["caption"] and by_id["blip-vqa"]["tasks"] == ["ask"]
    assert by_id["rapidocr"]["tasks"] == ["read"] and not info["remote_urls"]
    assert info["limits"]["max_images"] == 4
    page = client.get("/")
    assert page.status_code == 200 and "<title>im2text" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from a CDN
    for asset in ("/static/app.js", "/static/style.css"):
        resp = client.get(asset)
        assert (
            resp.status_code == 200 and "http://" not in resp.text and "https://" not in resp.text
        )
    assert page.headers["x-content-type-options"] == "nosniff"


def test_openapi_documents_every_endpoint_with_bodies(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    for task in ("caption", "ask", "read", "match", "classify", "embed"):
        op = doc["paths"][f"/v1/{task}"]["post"]
        content = op["requestBody"]["content"]
        assert set(content) == {"application/json", "multipart/form-data"}
        ref = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        assert ref in doc["components"]["schemas"]
        assert {"413", "422", "429"} <= set(op["responses"])
    assert "/v1/chat/completions" in doc["paths"] and "/v1/models" in doc["paths"]
    caption = doc["components"]["schemas"]["CaptionRequest"]["properties"]
    assert {"image", "prompt", "num_beams", "max_new_tokens"} <= set(caption)
    assert doc["components"]["schemas"]["CaptionRequestForm"]["properties"]["image"]["format"] == (
        "binary"
    )
    assert client.get("/docs").status_code == 200


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    client.post("/v1/caption", json={"model": "blip", "image": b64(png())})
    text = client.get("/metrics").text
    for name in (
        "im2text_http_request_duration_seconds_bucket",
        'im2text_batches_total{model="blip",task="caption"}',
        "im2text_batch_size_bucket",
        'im2text_queue_depth{model="blip"}',
        "im2text_http_requests_total",
        "im2text_models_ready 4.0",
    ):
        assert name in text, name


# --- tasks: same records as the Python API ------------------------------------------------------


def test_caption_json_data_url_and_multipart_match_python_api(client, models) -> None:
    data = png(1)
    expected = models["blip"].caption(data).to_record("blip")
    ways = [
        {"json": {"model": "blip", "image": b64(data)}},
        {"json": {"model": "blip", "image": "data:image/png;base64," + b64(data)}},
        {"data": {"model": "blip"}, "files": {"image": ("cat.png", data, "image/png")}},
        {"json": {"image": b64(data)}},  # default model: the first that can caption
    ]
    for kw in ways:
        resp = client.post("/v1/caption", **kw)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["model"] == "blip" and body["latency_ms"] > 0
        (record,) = body["results"]
        assert record["path"] in ("image[0]", "cat.png")
        assert {**record, "path": None} == {**expected, "path": None}


def test_caption_settings_and_prompt(client, models) -> None:
    data = png(2)
    exp = models["blip"].caption(data, prompt="a photo of", num_beams=2, num_return_sequences=2)
    resp = client.post(
        "/v1/caption",
        data={"model": "blip", "prompt": "a photo of", "num_beams": "2", "num_return_sequences": 2},
        files={"image": ("x.png", data, "image/png")},
    )
    (record,) = resp.json()["results"]
    assert record["caption"] == exp.text and record["caption"].startswith("a photo of")
    assert [c["text"] for c in record["captions"]] == [c.text for c in exp.candidates]


def test_ask_and_candidates(client, models) -> None:
    data = png(3)
    exp = models["blip-vqa"].ask(data, "what is it?").to_record("blip-vqa")
    resp = client.post(
        "/v1/ask", json={"model": "blip-vqa", "image": b64(data), "question": "what is it?"}
    )
    (record,) = resp.json()["results"]
    assert {**record, "path": None} == {**exp, "path": None}
    resp = client.post(
        "/v1/ask",
        json={
            "model": "blip-vqa",
            "image": b64(data),
            "question": "what?",
            "candidates": ["a", "b"],
        },
    )
    (record,) = resp.json()["results"]
    assert record["answer"] in ("a", "b") and len(record["ranking"]) == 2


def test_read_real_ocr(client, models) -> None:
    data = (DATA / "scenetext01.jpg").read_bytes()
    exp = models["rapidocr"].read(data).to_record("rapidocr")
    resp = client.post("/v1/read", files={"image": ("sign.jpg", data, "image/jpeg")})
    (record,) = resp.json()["results"]
    assert "NOTICE" in record["text"].upper()
    assert record["text"] == exp["text"] and len(record["lines"]) == len(exp["lines"])


def test_match_classify_embed(client, models) -> None:
    data = png(4)
    clip = models["clip"]
    resp = client.post(
        "/v1/match", json={"model": "clip", "image": b64(data), "texts": ["a cat", "a dog"]}
    )
    assert (
        resp.json()["results"][0]["probability"]
        == clip.match(data, ["a cat", "a dog"]).to_record("x")["probability"]
    )
    resp = client.post(
        "/v1/classify",
        data={"model": "clip", "labels": ["cat", "dog", "car"], "top_k": "2"},
        files={"image": ("a.png", data, "image/png")},
    )
    (record,) = resp.json()["results"]
    assert record == {
        **clip.classify(data, ["cat", "dog", "car"], top_k=2).to_record("clip"),
        "path": "a.png",
    }
    resp = client.post(
        "/v1/classify",
        json={
            "model": "clip",
            "image": b64(data),
            "labels": ["cat", "dog"],
            "templates": ["ensemble"],
        },
    )
    assert resp.status_code == 200 and resp.json()["results"][0]["label"] in ("cat", "dog")
    resp = client.post("/v1/embed", json={"model": "clip", "images": [b64(data), b64(png(5))]})
    vecs = np.array([r["embedding"] for r in resp.json()["results"]])
    np.testing.assert_allclose(vecs, clip.embed([data, png(5)]), atol=1e-5)
    resp = client.post("/v1/embed", json={"model": "clip", "texts": ["a cat", "a dog"]})
    texts = resp.json()["results"]
    assert [r["path"] for r in texts] == ["a cat", "a dog"] and texts[0]["dim"] == vecs.shape[1]
    np.testing.assert_allclose(
        [r["embedding"] for r in texts], clip.embed(texts=["a cat", "a dog"]), atol=1e-5
    )


def test_several_images_one_bad_fails_alone(client) -> None:
    resp = client.post(
        "/v1/caption",
        json={"model": "blip", "images": [b64(png(6)), b64(b"not an image"), b64(png(7))]},
    )
    assert resp.status_code == 200
    ok1, bad, ok2 = resp.json()["results"]
    assert ok1["caption"] and ok2["caption"] and ok1["error"] is None
    assert bad["caption"] is None and "image[1]: not an image" in bad["error"]
    resp = client.post(
        "/v1/ask",
        files=[
            ("image", ("a.png", png(8), "image/png")),
            ("image", ("b.png", b"junk", "image/png")),
        ],
        data={"model": "blip-vqa", "question": "what?"},
    )
    assert [r["path"] for r in resp.json()["results"]] == ["a.png", "b.png"]
    assert [r["error"] is None for r in resp.json()["results"]] == [True, False]


# --- errors: each limit and mistake has its status and a clear JSON error -----------------------


def _post(client: TestClient, path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
    resp = client.post(path, **kw)
    return resp.status_code, error_of(resp)


ERROR_CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    (
        "unknown model",
        "/v1/caption",
        {"json": {"model": "nope", "image": b64(png())}},
        404,
        "model_not_found",
    ),
    (
        "task unsupported",
        "/v1/caption",
        {"json": {"model": "clip", "image": b64(png())}},
        400,
        "unsupported_task",
    ),
    ("no image", "/v1/caption", {"json": {"model": "blip"}}, 422, "invalid_request_error"),
    ("bad base64", "/v1/caption", {"json": {"image": "@@not base64@@"}}, 422, "invalid_image"),
    ("corrupt image", "/v1/caption", {"json": {"image": b64(png()[:60])}}, 422, "invalid_image"),
    (
        "not an image",
        "/v1/caption",
        {"files": {"image": ("x.png", b"hello", "image/png")}},
        422,
        "invalid_image",
    ),
    ("bomb", "/v1/caption", {"json": {"image": b64(bomb())}}, 413, "image_too_large"),
    (
        "image bytes",
        "/v1/caption",
        {"json": {"image": b64(b"x" * 1_100_000)}},
        413,
        "image_too_large",
    ),
    (
        "upload bytes",
        "/v1/caption",
        {"files": {"image": ("x.png", b"x" * 1_100_000, "image/png")}},
        413,
        "image_too_large",
    ),
    (
        "too many images",
        "/v1/caption",
        {"json": {"images": [b64(png())] * 5}},
        413,
        "too_many_images",
    ),
    (
        "too many files",
        "/v1/caption",
        {"files": [("image", ("x.png", png(), "image/png"))] * 5},
        413,
        "too_many_images",
    ),
    (
        "body size",
        "/v1/caption",
        {
            "content": b"{" + b" " * 2_100_000 + b"}",
            "headers": {"content-type": "application/json"},
        },
        413,
        "request_too_large",
    ),
    (
        "content type",
        "/v1/caption",
        {"content": b"image", "headers": {"content-type": "image/png"}},
        415,
        "unsupported_media_type",
    ),
    ("no content type", "/v1/caption", {"content": b"{}"}, 415, "unsupported_media_type"),
    (
        "malformed json",
        "/v1/caption",
        {"content": b"{nope", "headers": {"content-type": "application/json"}},
        400,
        "invalid_json",
    ),
    ("json not object", "/v1/caption", {"json": [1, 2]}, 400, "invalid_json"),
    (
        "unknown field",
        "/v1/caption",
        {"json": {"image": b64(png()), "max_token": 3}},
        422,
        "invalid_request_error",
    ),
    (
        "bad field type",
        "/v1/caption",
        {"json": {"image": b64(png()), "num_beams": "many"}},
        422,
        "invalid_request_error",
    ),
    (
        "long prompt",
        "/v1/caption",
        {"json": {"image": b64(png()), "prompt": "a " * 150}},
        422,
        "text_too_long",
    ),
    (
        "long question",
        "/v1/ask",
        {"json": {"image": b64(png()), "question": "x" * 201}},
        422,
        "text_too_long",
    ),
    (
        "empty question",
        "/v1/ask",
        {"json": {"image": b64(png()), "question": "  "}},
        422,
        "invalid_request_error",
    ),
    (
        "too many texts",
        "/v1/match",
        {"json": {"image": b64(png()), "texts": ["a"] * 9}},
        413,
        "too_many_texts",
    ),
    (
        "tokens over cap",
        "/v1/caption",
        {"json": {"image": b64(png()), "max_new_tokens": 500}},
        422,
        "invalid_request_error",
    ),
    (
        "beams over cap",
        "/v1/caption",
        {"json": {"image": b64(png()), "num_beams": 9}},
        422,
        "invalid_request_error",
    ),
    (
        "bad combination",
        "/v1/caption",
        {"json": {"image": b64(png()), "num_return_sequences": 3}},
        422,
        "invalid_request_error",
    ),
    (
        "ranking on generator",
        "/v1/ask",
        {"json": {"model": "blip-vqa", "image": b64(png()), "question": "q?", "candidates": []}},
        422,
        "invalid_request_error",
    ),
    (
        "template without {}",
        "/v1/classify",
        {"json": {"image": b64(png()), "labels": ["a"], "templates": ["x"]}},
        422,
        "invalid_request_error",
    ),
    (
        "embed both",
        "/v1/embed",
        {"json": {"image": b64(png()), "texts": ["a"]}},
        422,
        "invalid_request_error",
    ),
    (
        "remote url off",
        "/v1/caption",
        {"json": {"image": "http://127.0.0.1/x.png"}},
        403,
        "remote_urls_disabled",
    ),
    (
        "metadata url off",
        "/v1/caption",
        {"json": {"image": "http://169.254.169.254/latest/meta-data/"}},
        403,
        "remote_urls_disabled",
    ),
    ("file url", "/v1/caption", {"json": {"image": "file:///etc/passwd"}}, 403, "url_forbidden"),
    (
        "data url not base64",
        "/v1/caption",
        {"json": {"image": "data:image/png,abc"}},
        422,
        "invalid_image",
    ),
]


@pytest.mark.parametrize(
    ("path", "kw", "status", "kind"),
    [c[1:] for c in ERROR_CASES],
    ids=[c[0] for c in ERROR_CASES],
)
def test_errors(client: TestClient, path: str, kw: dict[str, Any], status: int, kind: str) -> None:
    got_status, err = _post(client, path, **kw)
    assert (got_status, err["type"]) == (status, kind), err
    assert client.get("/health").status_code == 200


def test_chunked_body_over_the_limit_is_cut_off(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):  # no Content-Length: the limit is enforced while reading
            yield b" " * 100_000

    resp = client.post(
        "/v1/caption", content=chunks(), headers={"content-type": "application/json"}
    )
    assert resp.status_code == 413 and error_of(resp)["type"] == "request_too_large"


def test_not_found_and_wrong_method_are_json(client: TestClient) -> None:
    assert error_of(client.get("/v1/nothing"))["type"] == "not_found"
    resp = client.get("/v1/caption")
    assert resp.status_code == 405 and error_of(resp)["type"] == "method_not_allowed"


# --- OpenAI-compatible chat, in-process (the real client runs in test_serve_live.py) -------------


def _chat(image: bytes, text: str | None = None, model: str = "blip", **kw: Any) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(image)}}
    ]
    if text:
        parts.insert(0, {"type": "text", "text": text})
    return {"model": model, "messages": [{"role": "user", "content": parts}], **kw}


def test_chat_completions(client, models) -> None:
    data = png(9)
    resp = client.post("/v1/chat/completions", json=_chat(data, model="blip"))
    body = resp.json()
    assert body["object"] == "chat.completion" and body["model"] == "blip"
    assert body["choices"][0]["message"]["content"] == models["blip"].caption(data).text
    # VQA model: the text is the question; a follow-up turn reuses the earlier image.
    follow_up = _chat(data, "what is it?", model="blip-vqa")
    follow_up["messages"] += [
        {"role": "assistant", "content": "something"},
        {"role": "user", "content": "what is it?"},
    ]
    for req in (_chat(data, "what is it?", model="blip-vqa"), follow_up):
        answer = client.post("/v1/chat/completions", json=req).json()
        exp = models["blip-vqa"].ask(data, "what is it?").text
        assert answer["choices"][0]["message"]["content"] == exp
    stream = client.post("/v1/chat/completions", json=_chat(data, stream=True))
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in stream.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    import json

    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert (
        "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        == (body["choices"][0]["message"]["content"])
    )
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == ["blip", "blip-vqa"]  # captioners and VQA models only
    assert client.get("/v1/models/blip").json()["id"] == "blip"


@pytest.mark.parametrize(
    ("req", "status", "kind"),
    [
        (_chat(png(), model="clip"), 404, "model_not_found"),
        (_chat(png(), model="nope"), 404, "model_not_found"),
        (
            {"model": "blip", "messages": [{"role": "user", "content": "hi"}]},
            422,
            "invalid_request_error",
        ),
        ({"model": "blip", "messages": []}, 422, "invalid_request_error"),
        ({**_chat(png()), "n": 2}, 422, "invalid_request_error"),
        (_chat(b"junk"), 422, "invalid_image"),
        (_chat(png(), model="blip-vqa"), 422, "invalid_request_error"),  # VQA needs a question
    ],
    ids=["not chat model", "unknown", "no image", "no messages", "n=2", "bad image", "no question"],
)
def test_chat_errors(client: TestClient, req: dict[str, Any], status: int, kind: str) -> None:
    resp = client.post("/v1/chat/completions", json=req)
    assert (resp.status_code, error_of(resp)["type"]) == (status, kind)


# --- auth ----------------------------------------------------------------------------------------


def test_api_keys(models) -> None:
    app = create_app({"blip": models["blip"]}, ServeConfig(api_keys=("secret-1", "secret-2")))
    with TestClient(app, base_url=LOCAL) as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "secret-1"}):
            resp = c.post("/v1/caption", json={"image": b64(png())}, headers=headers)
            assert resp.status_code == 401 and error_of(resp)["type"] == "invalid_api_key"
            assert resp.headers["www-authenticate"] == "Bearer"
        assert c.get("/metrics").status_code == 401
        assert c.get("/v1/models").status_code == 401
        ok = c.post(
            "/v1/caption", json={"image": b64(png())}, headers={"Authorization": "Bearer secret-2"}
        )
        assert ok.status_code == 200
        for open_path in ("/health", "/ready", "/", "/static/app.js"):
            assert c.get(open_path).status_code == 200
        assert c.get("/openapi.json").json()["security"] == [{"bearer": []}]


# --- loading by name, readiness -----------------------------------------------------------------


def test_names_load_in_background_and_ready_waits(tiny) -> None:
    app = create_app([str(tiny("blip"))], ServeConfig())
    with TestClient(app, base_url=LOCAL) as c:
        seen = c.get("/ready").status_code
        assert seen in (200, 503)
        deadline = time.monotonic() + 30
        while c.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.get("/ready").json()["models"] == ["blip"]  # id: the directory's name
        assert c.post("/v1/caption", json={"model": "blip", "image": b64(png())}).status_code == 200
    app = create_app(["/no/such/model/dir"], ServeConfig())
    with TestClient(app, base_url=LOCAL) as c:
        deadline = time.monotonic() + 10
        while "failed" not in c.get("/ready").text and time.monotonic() < deadline:
            time.sleep(0.05)
        resp = c.get("/ready")
        assert resp.status_code == 503 and "model directory not found" in error_of(resp)["message"]
        assert c.get("/health").status_code == 200


def test_public_api_and_the_hint_when_the_extra_is_missing(monkeypatch) -> None:
    import sys

    import im2text.serve as serve

    assert set(serve.__all__) == {"ServeConfig", "create_app", "run"}
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'im2text\[serve\]'"):
        serve.create_app({}, ServeConfig())


def test_duplicate_ids_and_empty_are_refused(models) -> None:
    with pytest.raises(ValueError, match="no models"):
        create_app({}, ServeConfig())
    with pytest.raises(ValueError, match="max_queue"):
        ServeConfig(max_images=10, max_queue=5)


# --- dynamic batching is real --------------------------------------------------------------------


async def _concurrent(app: Any, requests: list[tuple[str, dict[str, Any]]]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=LOCAL) as c:
        return await asyncio.gather(*(c.post(path, **kw) for path, kw in requests))


def _batches(app: Any, model: str) -> int:
    return app.state.im2text.batchers[model].batches


def test_concurrent_requests_share_forward_passes(models) -> None:
    cfg = ServeConfig(max_batch_size=8, max_wait_ms=300)
    app = create_app({"clip": models["clip"], "blip": models["blip"]}, cfg)
    images = [png(20 + i) for i in range(8)]
    reqs = [
        (
            "/v1/embed",
            {"files": {"image": (f"img{i}.png", d, "image/png")}, "data": {"model": "clip"}},
        )
        for i, d in enumerate(images)
    ]
    before = _batches(app, "clip")
    resps = asyncio.run(_concurrent(app, reqs))
    batches = _batches(app, "clip") - before
    assert all(r.status_code == 200 for r in resps)
    assert 1 <= batches < len(reqs), batches  # grouped, not one pass per request
    # Each response is its own image's result: compare with one-image-at-a-time embeddings.
    single = np.stack([models["clip"].embed(d)[0] for d in images])
    got = np.array([r.json()["results"][0]["embedding"] for r in resps])
    assert [r.json()["results"][0]["path"] for r in resps] == [f"img{i}.png" for i in range(8)]
    np.testing.assert_allclose(got, single, atol=1e-4)
    # The metrics tell the same story: few passes, big batches.
    text = asyncio.run(_metrics(app))
    assert f'im2text_batches_total{{model="clip",task="embed"}} {float(batches)}' in text

    # Captions: different prompts never share a pass; equal ones do.
    reqs = [
        ("/v1/caption", {"json": {"model": "blip", "image": b64(images[i]), "prompt": p}})
        for i, p in enumerate(["a photo of"] * 4 + ["a picture of"] * 4)
    ]
    before = _batches(app, "blip")
    resps = asyncio.run(_concurrent(app, reqs))
    batches = _batches(app, "blip") - before
    assert 2 <= batches < len(reqs)
    for i, ((_, kw), resp) in enumerate(zip(reqs, resps, strict=True)):
        (rec,) = resp.json()["results"]
        prompt = kw["json"]["prompt"]
        # Each response is its own image's caption with its own prompt (compared with captioning
        # that image alone; random tiny weights can make late near-ties, hence text OR score).
        exp = models["blip"].caption(images[i], prompt=prompt)
        assert rec["caption"].startswith(prompt)
        assert rec["caption"] == exp.text or abs(rec["mean_logprob"] - exp.mean_logprob) < 0.02


async def _metrics(app: Any) -> str:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=LOCAL) as c:
        return (await c.get("/metrics")).text


def test_questions_batch_together_and_stay_with_their_request(models) -> None:
    app = create_app({"blip-vqa": models["blip-vqa"]}, ServeConfig(max_wait_ms=300))
    questions = ["what is it?", "is it red?", "how many?", "where?"]
    reqs = [
        ("/v1/ask", {"json": {"image": b64(png(30 + i)), "question": q}})
        for i, q in enumerate(questions)
    ]
    resps = asyncio.run(_concurrent(app, reqs))
    assert _batches(app, "blip-vqa") < len(reqs)
    assert [r.json()["results"][0]["question"] for r in resps] == questions


def test_a_bad_image_in_a_batch_fails_only_its_request(models) -> None:
    """The batcher itself, given raw bytes: one corrupt item among good ones in one pass."""
    from im2text.images import ImageSource

    async def go() -> list[Any]:
        b = Batcher(
            "blip", batch_runner(models["blip"]), max_batch_size=8, max_wait_s=0.2, max_queue=8
        )
        jobs = [
            b.submit("caption", (), {}, [ImageSource(f"r{i}", d)])
            for i, d in enumerate([png(1), b"corrupt", png(2)])
        ]
        out = await asyncio.gather(*jobs)
        assert b.batches == 1
        await b.close()
        return [r for (r,) in out]

    good1, bad, good2 = asyncio.run(go())
    assert good1.ok and good2.ok and good1.source == "r0"
    assert not bad.ok and bad.source == "r1" and "r1: not an image" in bad.error


def test_full_queue_answers_429_and_timeouts_503(models) -> None:
    gate = threading.Event()
    cfg = ServeConfig(max_batch_size=1, max_wait_ms=0, max_queue=2, max_images=1, retry_after_s=3)
    app = create_app({"blip": models["blip"]}, cfg)
    batcher = app.state.im2text.batchers["blip"]
    real = batcher._run_batch

    def slow(*args: Any) -> list[Any]:
        gate.wait(10)
        return real(*args)

    batcher._run_batch = slow

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=LOCAL) as c:
            body = {"json": {"image": b64(png())}}
            running = asyncio.create_task(c.post("/v1/caption", **body))
            await asyncio.sleep(0.3)  # now computing (blocked); the next two wait in the queue
            queued = [asyncio.create_task(c.post("/v1/caption", **body)) for _ in range(2)]
            await asyncio.sleep(0.3)
            refused = await c.post("/v1/caption", **body)
            gate.set()
            return [refused, await running, *[await q for q in queued]]

    refused, *served = asyncio.run(go())
    assert refused.status_code == 429 and refused.headers["retry-after"] == "3"
    assert error_of(refused)["type"] == "queue_full"
    assert [r.status_code for r in served] == [200, 200, 200]

    gate.clear()
    app = create_app({"blip": models["blip"]}, dataclasses.replace(cfg, request_timeout_s=0.3))
    app.state.im2text.batchers["blip"]._run_batch = slow
    resps = asyncio.run(_concurrent(app, [("/v1/caption", {"json": {"image": b64(png())}})]))
    gate.set()
    assert resps[0].status_code == 503 and error_of(resps[0])["type"] == "timeout"


def test_batcher_queue_bound() -> None:
    async def go() -> None:
        release = threading.Event()
        b = Batcher(
            "m",
            lambda t, p, xs: (release.wait(5), xs)[1],
            max_batch_size=1,
            max_wait_s=0,
            max_queue=1,
        )
        first = asyncio.create_task(b.submit("t", (), {}, [1]))
        await asyncio.sleep(0.1)  # running
        second = asyncio.create_task(b.submit("t", (), {}, [2]))
        await asyncio.sleep(0.1)  # queued: the queue is full now
        with pytest.raises(QueueFullError):
            await b.submit("t", (), {}, [3])
        release.set()
        assert await first == [1] and await second == [2]
        await b.close()

    asyncio.run(go())


# --- remote URLs: SSRF defences ------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    hosts: ClassVar[list[str]] = []  # Host headers seen (to prove pinned connections keep the name)

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        _Handler.hosts.append(self.headers.get("Host", ""))
        port = self.server.server_address[1]
        routes = {
            "/img.png": (200, png(40), {}),
            "/text": (200, b"just text", {}),
            "/big": (200, b"x" * 1_200_000, {}),
            "/to-loopback": (302, b"", {"Location": f"http://127.0.0.2:{port}/img.png"}),
            "/to-metadata": (302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"}),
            "/to-img": (302, b"", {"Location": "/img.png"}),
            "/loop": (302, b"", {"Location": "/loop"}),
        }
        if self.path == "/slow":
            time.sleep(1.5)
        status, body, headers = routes.get(self.path, (404, b"no", {}))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:  # the client gave up (size or time limit): that is the point
            pass


@pytest.fixture(scope="module")
def image_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def url_client(models) -> Iterator[TestClient]:
    cfg = dataclasses.replace(
        CONFIG, allow_remote_urls=True, url_allow_networks=("127.0.0.1/32",), url_timeout_s=0.8
    )
    with TestClient(create_app({"blip": models["blip"]}, cfg), base_url=LOCAL) as c:
        yield c


@pytest.mark.parametrize(
    ("path", "status", "kind"),
    [
        ("/img.png", 200, None),
        ("/to-img", 200, None),  # a redirect to an allowed place is followed
        ("/to-loopback", 403, "url_forbidden"),  # checked again after the redirect
        ("/to-metadata", 403, "url_forbidden"),
        ("/loop", 422, "url_fetch_failed"),
        ("/big", 413, "image_too_large"),
        ("/slow", 422, "url_fetch_failed"),
        ("/text", 422, "invalid_image"),
        ("/missing", 422, "url_fetch_failed"),
    ],
)
def test_remote_urls(url_client, image_server, path: str, status: int, kind: str | None) -> None:
    resp = url_client.post("/v1/caption", json={"image": image_server + path})
    assert resp.status_code == status, resp.text
    if kind:
        assert error_of(resp)["type"] == kind
    else:
        assert resp.json()["results"][0]["caption"]


def test_chat_accepts_remote_image_url(url_client, image_server) -> None:
    req = {
        "model": "blip",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": image_server + "/img.png"}}],
            }
        ],
    }
    assert url_client.post("/v1/chat/completions", json=req).status_code == 200


def test_dns_answers_are_checked_and_the_checked_ip_is_used(
    url_client, image_server, monkeypatch
) -> None:
    port = image_server.rsplit(":", 1)[1]
    fake = {
        "mixed.test": ["93.184.216.34", "10.0.0.1"],  # one bad address is enough to refuse
        "rebind.test": ["127.0.0.2"],
        "pinned.test": ["127.0.0.1"],
    }
    monkeypatch.setattr(
        fetch_mod, "resolve", lambda host, _port: [ipaddress.ip_address(a) for a in fake[host]]
    )
    for host in ("mixed.test", "rebind.test"):
        resp = url_client.post("/v1/caption", json={"image": f"http://{host}:{port}/img.png"})
        assert resp.status_code == 403 and error_of(resp)["type"] == "url_forbidden"
    _Handler.hosts.clear()
    resp = url_client.post("/v1/caption", json={"image": f"http://pinned.test:{port}/img.png"})
    assert resp.status_code == 200
    assert _Handler.hosts == [f"pinned.test:{port}"]  # connected to the checked IP, name kept


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://172.16.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fd00:ec2::254]/",
        "http://2130706433/",  # 127.0.0.1 as one decimal number
        "http://0.0.0.0/",
        "http://100.64.0.1/",  # carrier-grade NAT
        "ftp://example.com/x.png",
        "http://user:pw@example.com/x.png",
    ],
)
def test_ssrf_targets_are_refused_without_connecting(url: str) -> None:
    policy = fetch_mod.UrlPolicy(max_bytes=1000, timeout_s=1, max_redirects=2)
    with pytest.raises(Exception) as info:
        fetch_mod.fetch(url, policy)
    assert getattr(info.value, "status", None) == 403, info.value


def test_metadata_stays_refused_even_if_allow_listed() -> None:
    policy = fetch_mod.UrlPolicy(
        max_bytes=1,
        timeout_s=1,
        max_redirects=0,
        allow_networks=(ipaddress.ip_network("169.254.0.0/16"),),
    )
    assert fetch_mod.address_problem(ipaddress.ip_address("169.254.169.254"), policy)
    assert fetch_mod.address_problem(ipaddress.ip_address("169.254.1.1"), policy) is None
    assert fetch_mod.address_problem(ipaddress.ip_address("93.184.216.34"), policy) is None
    assert fetch_mod.address_problem(ipaddress.ip_address("2002:0a00:0001::1"), policy)  # 6to4 10/8
