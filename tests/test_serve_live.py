"""The server for real, over loopback sockets: the official `openai` client, a headless Chromium
on the compare page, graceful shutdown, and a bounded load + hostile-input run against `run()`.

Every request goes to 127.0.0.1 (or 127.0.0.3, also loopback); every loop stops by itself.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'im2text[serve]'")
pytest.importorskip("uvicorn", reason="needs the serve extra: pip install 'im2text[serve]'")
pytest.importorskip("httpx", reason="needs the serve extra: pip install 'im2text[serve]'")
import httpx
from conftest import ThreadServer, png

import im2text
from im2text.serve import ServeConfig, create_app

KEY = "test-key-123"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def models(tiny) -> dict[str, im2text.Model]:
    return {
        "blip": im2text.load(str(tiny("blip"))),
        "git": im2text.load(str(tiny("git"))),
        "blip-vqa": im2text.load(str(tiny("blip-vqa"))),
    }


@pytest.fixture(scope="module")
def live(models) -> Iterator[ThreadServer]:
    with ThreadServer(create_app(models, ServeConfig(api_keys=(KEY,)))) as server:
        yield server


# --- the official openai client, unchanged ------------------------------------------------------


def test_openai_client_chat_and_stream(live, models) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=live.url + "/v1", api_key=KEY, max_retries=0, timeout=60)
    assert [m.id for m in client.models.list()] == ["blip", "git", "blip-vqa"]
    image = png(1)
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "a picture of"},
                {"type": "image_url", "image_url": {"url": data_url(image)}},
            ],
        }
    ]
    done = client.chat.completions.create(model="blip", messages=messages)
    expected = models["blip"].caption(image, prompt="a picture of").text
    assert done.choices[0].message.content == expected
    assert done.choices[0].finish_reason == "stop" and done.object == "chat.completion"

    stream = client.chat.completions.create(model="blip", messages=messages, stream=True)
    chunks = list(stream)
    assert len(chunks) > 2
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == "stop"

    vqa = client.chat.completions.create(
        model="blip-vqa",
        messages=[
            {
                **messages[0],
                "content": [{"type": "text", "text": "what is it?"}, messages[0]["content"][1]],
            }
        ],
        max_tokens=5,
    )
    assert (
        vqa.choices[0].message.content
        == models["blip-vqa"].ask(image, "what is it?", max_new_tokens=5).text
    )

    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=messages)
    with pytest.raises(openai.UnprocessableEntityError):  # no image
        client.chat.completions.create(model="blip", messages=[{"role": "user", "content": "hi"}])
    bad_key = openai.OpenAI(base_url=live.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.chat.completions.create(model="blip", messages=messages)


# --- a real browser on the compare page ---------------------------------------------------------


def test_compare_page_in_headless_chromium(live, models, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not CHROMIUM.exists():
        pytest.skip("chromium not installed (apt-get install chromium)")
    image = tmp_path / "photo.png"
    image.write_bytes(png(2, (120, 90)))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(15_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(live.url + "/")
            # The server wants a key: the page asks for it, then lists the models.
            page.wait_for_selector("#key-field:not([hidden])")
            page.fill("#api-key", KEY)
            page.locator("#api-key").dispatch_event("change")
            page.wait_for_selector("#models input[value=git]")
            page.set_input_files("#file", str(image))
            page.wait_for_selector("#preview:not([hidden])")
            page.click("#run")
            sync_api.expect(page.locator(".card[data-state=done]")).to_have_count(2)
            cards = page.locator(".card")
            assert cards.locator(".model-name").all_text_contents() == ["blip", "git"]
            outputs = cards.locator(".output").all_text_contents()
            pil = Image.open(image)
            assert outputs == [models["blip"].caption(pil).text, models["git"].caption(pil).text]
            boxes = [cards.nth(i).bounding_box() for i in range(2)]
            assert boxes[0]["y"] == boxes[1]["y"] and boxes[0]["x"] < boxes[1]["x"]  # side by side
            meta = cards.nth(0).locator(".meta").inner_text()
            assert "ms" in meta and "log-p" in meta  # latency and score shown
            page.screenshot(path=str(tmp_path / "compare.png"))

            # Ask: only the models that can answer stay enabled; the question is sent.
            page.click("#tasks button[data-task=ask]")
            assert page.locator("#models input[value=blip]").is_disabled()
            page.fill("#prompt", "what is it?")
            page.click("#run")
            sync_api.expect(page.locator(".card[data-state=done]")).to_have_count(2)
            answers = page.locator(".card .output").all_text_contents()
            assert answers[0] == models["git"].ask(pil, "what is it?").text
            assert errors == []
        finally:
            browser.close()


def test_compare_page_detects_and_styles_in_chromium(tiny, tmp_path: Path) -> None:
    """Today's VLMs on the page: Detect draws each region of Florence-2 over the image, and a
    caption style reaches every model as its own prompt."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not CHROMIUM.exists():
        pytest.skip("chromium not installed (apt-get install chromium)")
    served = {"florence": im2text.load(str(tiny("florence2"))),
              "llava": im2text.load(str(tiny("llava")))}  # fmt: skip
    for m in served.values():
        m.generation = m.generation.merged(max_new_tokens=40, num_beams=1)
    image = tmp_path / "photo.png"
    image.write_bytes(png(4, (96, 64)))
    pil = Image.open(image)
    with ThreadServer(create_app(served, ServeConfig())) as server, \
            sync_api.sync_playwright() as p:  # fmt: skip
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(20_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url + "/")
            page.wait_for_selector("#models input[value=llava]")
            page.set_input_files("#file", str(image))
            page.wait_for_selector("#preview:not([hidden])")
            page.select_option("#style", "detailed")
            page.click("#run")
            sync_api.expect(page.locator(".card[data-state=done]")).to_have_count(2)
            outputs = page.locator(".card .output").all_text_contents()
            assert outputs == [served[k].caption(pil, style="detailed").text
                               for k in ("florence", "llava")]  # fmt: skip
            page.click("#tasks button[data-task=detect]")
            assert page.locator("#style-field").is_hidden()
            assert page.locator("#models input[value=llava]").is_disabled()
            page.click("#run")
            sync_api.expect(page.locator(".card[data-state=done]")).to_have_count(1)
            found = served["florence"].detect(pil)
            canvas = page.locator(".card canvas.regions")
            assert canvas.get_attribute("data-regions") == str(len(found.regions))
            text = page.locator(".card .output").inner_text()
            assert text == (", ".join(found.labels) or "(nothing found)")
            page.screenshot(path=str(tmp_path / "detect.png"))
            assert errors == []
        finally:
            browser.close()


# --- graceful shutdown ---------------------------------------------------------------------------


def test_shutdown_finishes_in_flight_requests(models) -> None:
    app = create_app({"blip": models["blip"]}, ServeConfig())
    batcher = app.state.im2text.batchers["blip"]
    real, started, release = batcher._run_batch, threading.Event(), threading.Event()

    def slow(*args: Any) -> list[Any]:
        started.set()
        release.wait(10)
        return real(*args)

    batcher._run_batch = slow
    result: dict[str, Any] = {}
    with ThreadServer(app) as server:

        def call() -> None:
            body = {"image": base64.b64encode(png()).decode()}
            result["resp"] = httpx.post(server.url + "/v1/caption", json=body, timeout=30)

        client = threading.Thread(target=call)
        client.start()
        assert started.wait(10)
        server.server.should_exit = True  # what SIGTERM does
        time.sleep(0.3)
        assert server.thread.is_alive()  # still waiting for the request in flight
        release.set()
        client.join(20)
    assert result["resp"].status_code == 200 and result["resp"].json()["results"][0]["caption"]
    assert not server.thread.is_alive()


# --- load and hostile inputs against run() in its own process -----------------------------------


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def redirector() -> Iterator[str]:
    """A server on 127.0.0.3 that redirects to 127.0.0.1 (given as ?to=PORT)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            port = self.path.rsplit("=", 1)[-1]
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{port}/health")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.3", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.3:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


SERVER_SCRIPT = """
import logging, sys
from im2text.serve import ServeConfig, run
logging.basicConfig(level=logging.WARNING)
run([sys.argv[1]], ServeConfig(
    port=int(sys.argv[2]), log_level="warning", allow_remote_urls=True,
    url_allow_networks=("127.0.0.3/32",), url_timeout_s=2.0, max_body_bytes=2_000_000,
    max_image_bytes=1_000_000, max_pixels=4_000_000, max_images=4, max_queue=32,
    max_connections=128, shutdown_timeout_s=20,
))
"""


@pytest.fixture
def server_process(tiny) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SERVER_SCRIPT), str(tiny("blip")), str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
        try:
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.1)
    try:
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _hostile(url: str, redirector: str) -> dict[str, tuple[dict[str, Any], set[int]]]:
    port = url.rsplit(":", 1)[1]
    b64 = lambda d: base64.b64encode(d).decode()  # noqa: E731
    bomb = io.BytesIO()
    Image.new("1", (8_000, 8_000)).save(bomb, "PNG")
    refused = {403}
    return {
        "corrupt": ({"json": {"image": b64(png()[:80])}}, {422}),
        "not-image": ({"files": {"image": ("a.png", b"GIF89a nonsense", "image/png")}}, {422}),
        "bomb": ({"json": {"image": b64(bomb.getvalue())}}, {413}),
        "huge-image": ({"json": {"image": b64(os.urandom(1_100_000))}}, {413}),
        "bad-base64": ({"json": {"image": "%%%" * 100}}, {422}),
        "ssrf-loopback": ({"json": {"image": f"http://127.0.0.1:{port}/health"}}, refused),
        "ssrf-localhost": ({"json": {"image": f"http://localhost:{port}/health"}}, refused),
        "ssrf-metadata": ({"json": {"image": "http://169.254.169.254/latest/meta-data/"}}, refused),
        "ssrf-private": ({"json": {"image": "http://10.0.0.1/x.png"}}, refused),
        "ssrf-redirect": ({"json": {"image": f"{redirector}/r?to={port}"}}, refused),
        "ssrf-scheme": ({"json": {"image": "file:///etc/passwd"}}, refused),
        "oversized-body": (
            {
                "content": b"{" + b" " * 2_500_000 + b"}",
                "headers": {"content-type": "application/json"},
            },
            {413},
        ),
        "wrong-type": ({"content": b"<xml/>", "headers": {"content-type": "text/xml"}}, {415}),
        "too-many-files": ({"files": [("image", ("a.png", png(), "image/png"))] * 5}, {413}),
        "long-prompt": ({"json": {"image": b64(png()), "prompt": "x" * 5000}}, {422}),
        "bad-json": (
            {"content": b'{"image": ', "headers": {"content-type": "application/json"}},
            {400},
        ),
    }


def test_load_and_hostile_inputs(server_process, redirector) -> None:
    proc, url = server_process
    hostile = _hostile(url, redirector)
    good = [{"json": {"image": base64.b64encode(png(i)).decode()}} for i in range(8)]
    busy = {200, 429, 503}  # deliberate back-pressure is fine under load

    with httpx.Client(base_url=url, timeout=30) as c:  # each hostile input once, by itself
        for name, (kw, expected) in hostile.items():
            resp = c.post("/v1/caption", **kw)
            assert resp.status_code in expected, (name, resp.status_code, resp.text[:300])
            assert set(resp.json()) == {"error"}, name
            assert c.get("/health").status_code == 200, name
        for kw in good:
            assert c.post("/v1/caption", **kw).status_code == 200
    rss_before = _rss_mb(proc.pid)

    async def client(c: httpx.AsyncClient, i: int, stop: float, seen: Counter[Any]) -> None:
        kinds = list(hostile)
        n = 0
        while time.monotonic() < stop:
            n += 1
            if n % 3 == 0:  # a third hostile, the rest real work
                name = kinds[(i + n) % len(kinds)]
                kw, expected = hostile[name]
            else:
                name, kw, expected = "good", good[(i + n) % len(good)], busy
            try:
                resp = await c.post("/v1/caption", **kw)
                status = resp.status_code
            except httpx.TransportError as e:
                status = f"transport:{e.__class__.__name__}"
            ok = status in expected or status in (429, 503)
            seen[(name, status if ok else f"UNEXPECTED {status}")] += 1

    async def load(seconds: float) -> Counter[Any]:
        seen: Counter[Any] = Counter()
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as c:
            stop = time.monotonic() + seconds
            await asyncio.gather(*(client(c, i, stop, seen) for i in range(64)))
        return seen

    started = time.monotonic()
    seen = asyncio.run(load(5.0))
    print(sorted(seen.items(), key=str), f"RSS before {rss_before:.0f} MB")
    assert time.monotonic() - started < 60  # stopped by itself
    unexpected = {k: v for k, v in seen.items() if str(k[1]).startswith("UNEXPECTED")}
    assert not unexpected, (unexpected, seen)
    assert seen[("good", 200)] > 20, seen  # real work got done under fire
    assert not any(isinstance(s, int) and s >= 500 and s != 503 for _, s in seen), seen

    assert proc.poll() is None  # no crash
    with httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/health").status_code == 200 and c.get("/ready").status_code == 200
        assert c.post("/v1/caption", **good[0]).status_code == 200
        metrics = c.get("/metrics").text
    growth = _rss_mb(proc.pid) - rss_before
    print(f"RSS growth {growth:.0f} MB")
    assert growth < 300, f"RSS grew by {growth:.0f} MB"
    batches = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("im2text_batches_total")
    )
    assert 0 < batches < seen[("good", 200)], (batches, seen)  # batching under load

    # SIGTERM with a request in flight: it completes, then the process exits cleanly.
    long = {
        "json": {
            "images": [base64.b64encode(png(i)).decode() for i in range(4)],
            "num_beams": 8,
            "max_new_tokens": 60,
            "min_new_tokens": 60,
        }
    }
    result: dict[str, Any] = {}
    t = threading.Thread(
        target=lambda: result.update(resp=httpx.post(url + "/v1/caption", timeout=60, **long))
    )
    t.start()
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    t.join(60)
    assert result["resp"].status_code == 200
    # uvicorn re-raises the signal once it has shut down, so the exit is "terminated by SIGTERM".
    assert proc.wait(30) in (0, -signal.SIGTERM)
