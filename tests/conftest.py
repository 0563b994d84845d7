"""Shared fixtures: tiny random checkpoints in the Hub layout, built once per test session."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: tests never touch the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import tempfile

# Exported graphs (--backend) go to a cache of this test session's own, never ~/.cache.
os.environ["IM2TEXT_CACHE"] = tempfile.mkdtemp(prefix="im2text-test-cache-")

import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from im2text.testing import build_checkpoint

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "images"


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-checkpoints")


@pytest.fixture(scope="session")
def tiny(tiny_root: Path):
    """`tiny("blip")` -> path of that tiny checkpoint (built on first use)."""

    def get(kind: str) -> Path:
        return build_checkpoint(kind, tiny_root)

    return get


def random_images(n: int, seed: int = 0, size: tuple[int, int] = (48, 40)) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
        for _ in range(n)
    ]


def png(seed: int = 0, size: tuple[int, int] = (64, 48)) -> bytes:
    """A random RGB image, PNG-encoded (what a client uploads)."""
    import io

    buf = io.BytesIO()
    random_images(1, seed=seed, size=size)[0].save(buf, "PNG")
    return buf.getvalue()


class ThreadServer:
    """uvicorn in a thread on a free loopback port (uvicorn skips signal handlers off-main).

    `with ThreadServer(app) as s:` -> `s.port`, `s.url`; keywords go to `uvicorn.Config`.
    """

    def __init__(self, app: object, **config: object) -> None:
        import threading

        import uvicorn

        options: dict = {"log_level": "warning", "timeout_graceful_shutdown": 10, **config}
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, **options))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)


def _bomb_png(path: Path) -> None:
    """A 1x1 PNG whose header claims 100000 x 100000 pixels."""
    import io

    buf = io.BytesIO()
    random_images(1, size=(1, 1))[0].save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = (100_000).to_bytes(4, "big") * 2
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = crc.to_bytes(4, "big")
    path.write_bytes(bytes(data))


@pytest.fixture()
def mixed_folder(tmp_path: Path) -> tuple[Path, set[str]]:
    """Good images (nested too) and bad ones; returns the folder and the bad files' names."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for p in EXAMPLES.glob("*.jpg"):
        shutil.copy(p, root / p.name)
    random_images(1)[0].save(root / "sub" / "noise.png")
    good = (EXAMPLES / "cat.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "empty.png").write_bytes(b"")
    (root / "notes.jpg").write_text("not really a picture")
    _bomb_png(root / "sub" / "bomb.png")
    (root / "readme.txt").write_text("ignored: not an image extension")
    return root, {"truncated.jpg", "empty.png", "notes.jpg", "bomb.png"}
