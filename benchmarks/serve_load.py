"""Server throughput and latency under concurrent load: dynamic batching vs. batching off.

A mid-size BLIP with random weights (ViT at 224 px and a BERT decoder, both 6 layers of width 384,
the real 30,524-token vocabulary; the Hub is not needed) is served by `im2text.serve.run` in a
subprocess on 127.0.0.1, twice in one run: with dynamic batching (`--max-batch-size`) and with
batching off (max batch 1). The same `--concurrency` clients send the same `--requests` caption
requests (one image each, exactly `--tokens` new tokens, greedy) to each.

    python benchmarks/serve_load.py --concurrency 16 --requests 96

Prints a markdown table: requests/s, p50/p95 latency, mean batch size, and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import httpx
import torch
from _images import distinct_images

REPO = Path(__file__).resolve().parents[1]

SERVER = """
import sys
from im2text.serve import ServeConfig, run
run([sys.argv[1]], ServeConfig(
    port=int(sys.argv[2]), max_batch_size=int(sys.argv[3]), max_wait_ms=float(sys.argv[4]),
    max_queue=1024, log_level="warning",
))
"""


def build_blip_mid(root: Path) -> Path:
    """BLIP with 6-layer, width-384 vision and text towers at 224 px; random weights."""
    from im2text.testing import build_checkpoint

    return build_checkpoint(
        "blip", root, hidden=384, layers=6, heads=6, image_size=224, patch_size=16,
        vocab_size=30524, max_positions=512,
    )  # fmt: skip


def sample_images(n: int = 64) -> list[str]:
    """`n` distinct images (no duplicate for the server to encode once), base64 JPEGs."""
    out = []
    for img in distinct_images(n):
        img.thumbnail((320, 320))  # what a client would upload for a 224-px model
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        out.append(base64.b64encode(buf.getvalue()).decode())
    return out


def start_server(ckpt: Path, port: int, max_batch: int, wait_ms: float) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(ckpt), str(port), str(max_batch), str(wait_ms)],
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


async def load(url: str, images: list[str], requests: int, concurrency: int, tokens: int):
    """(wall seconds, per-request latencies) for `requests` requests from `concurrency` clients."""
    gen = {"max_new_tokens": tokens, "min_new_tokens": tokens, "num_beams": 1}
    todo = iter(range(requests))
    latencies: list[float] = []

    async def client(c: httpx.AsyncClient) -> None:
        for i in todo:  # clients share one iterator: each request is sent exactly once
            t0 = time.perf_counter()
            resp = await c.post("/v1/caption", json={"image": images[i % len(images)], **gen})
            resp.raise_for_status()
            assert resp.json()["results"][0]["error"] is None
            latencies.append(time.perf_counter() - t0)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as c:
        start = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(concurrency)))
        return time.perf_counter() - start, latencies


def mean_batch(url: str) -> float:
    text = httpx.get(url + "/metrics").text
    values = {}
    for line in text.splitlines():
        if line.startswith(("im2text_batch_size_sum", "im2text_batch_size_count")):
            name = line.split("{")[0]
            values[name] = float(line.rsplit(" ", 1)[1])
    return values["im2text_batch_size_sum"] / values["im2text_batch_size_count"]


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=96)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--max-batch-size", type=int, default=8)
    ap.add_argument("--max-wait-ms", type=float, default=10.0)
    ap.add_argument("--port", type=int, default=8791)
    args = ap.parse_args()
    images = sample_images()
    url = f"http://127.0.0.1:{args.port}"
    modes = {
        f"dynamic batching (max {args.max_batch_size}, wait {args.max_wait_ms:g} ms)": args.max_batch_size,  # noqa: E501
        "batching off (max 1)": 1,
    }
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = build_blip_mid(Path(tmp))
        for name, max_batch in modes.items():
            proc = start_server(ckpt, args.port, max_batch, args.max_wait_ms)
            try:
                asyncio.run(load(url, images, 2 * args.concurrency, args.concurrency, args.tokens))
                wall, lat = asyncio.run(
                    load(url, images, args.requests, args.concurrency, args.tokens)
                )
                rows[name] = (args.requests / wall, pct(lat, 50), pct(lat, 95), mean_batch(url))
                print(f"  {name}: {rows[name][0]:.2f} req/s", flush=True)
            finally:
                proc.terminate()
                proc.wait(60)

    (b_rate, b50, b95, _), (s_rate, s50, s95, _) = rows.values()
    print(
        f"\nBLIP 6+6 layers x 384 (random weights), {args.tokens} tokens greedy, "
        f"{args.concurrency} concurrent clients, {args.requests} requests; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}\n"
    )
    print("| server | requests/s | p50 latency | p95 latency | mean batch |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (rate, p50, p95, batch) in rows.items():
        print(f"| {name} | {rate:.2f} | {p50:.0f} ms | {p95:.0f} ms | {batch:.1f} |")
    print(
        f"| **ratio (batching / off)** | **{b_rate / s_rate:.2f}x** | {b50 / s50:.2f}x | "
        f"{b95 / s95:.2f}x | |"
    )


if __name__ == "__main__":
    main()
