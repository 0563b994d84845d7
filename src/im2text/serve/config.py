"""The server's settings: one frozen dataclass, defaults safe for a machine on a shared network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServeConfig:
    """How `im2text serve` listens, batches and protects itself.

    Every limit answers with a clear JSON error (see docs/SERVE.md for the status codes).
    """

    # --- listening ---
    host: str = "127.0.0.1"  # loopback only unless told otherwise (0.0.0.0 exposes it)
    port: int = 8000  # TCP port; 0 picks a free one
    api_keys: tuple[str, ...] = ()  # Bearer keys accepted on /v1/* and /metrics; () = no auth
    max_connections: int = 256  # concurrent connections before uvicorn answers 503
    shutdown_timeout_s: float = 30.0  # on SIGTERM, how long in-flight requests may finish
    log_level: str = "info"  # uvicorn log level: critical | error | warning | info | debug
    # Host header names accepted besides localhost and the bound address (on 0.0.0.0: any IP
    # literal); ("*",) accepts any. Names outside it are refused: DNS rebinding cannot reach us.
    allowed_hosts: tuple[str, ...] = ()
    # Web origins (https://app.example) whose pages may POST here; other cross-origin posts (a
    # form on some page, say) are refused. Pages the server serves itself are same-origin.
    allowed_origins: tuple[str, ...] = ()
    header_timeout_s: float = 10.0  # a connection's request headers must arrive within this
    body_timeout_s: float = 30.0  # longest wait for the next piece of a request body

    # --- loading (run() only; create_app takes loaded models or loads names itself) ---
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    dtype: str = "auto"  # auto | float32 | float16 | bfloat16
    backend: str | None = None  # torch | onnxruntime | openvino (None: torch / the folder's own)
    int8: bool = False  # int8 weights (faster on CPU; close to, not equal to, float32)

    # --- dynamic batching (per model) ---
    max_batch_size: int = 8  # images per forward pass; 1 turns batching off
    max_wait_ms: float = 10.0  # how long the oldest request may wait for others to join it
    max_queue: int = 64  # images waiting per model; beyond it requests get 429
    request_timeout_s: float = 120.0  # a request not answered by then gets 503
    retry_after_s: int = 1  # Retry-After header sent with 429 and 503

    # --- request limits ---
    max_body_bytes: int = 20 * 1024 * 1024  # whole request body (JSON or multipart)
    max_image_bytes: int = 10 * 1024 * 1024  # one encoded image
    max_pixels: int = 40_000_000  # width * height of one image (decompression-bomb guard)
    max_images: int = 8  # images per request
    max_text_chars: int = 1000  # prompt, question, label or text
    max_texts: int = 100  # labels / texts / candidate answers per request
    max_new_tokens: int = 128  # cap on generated tokens per answer
    max_beams: int = 8  # cap on num_beams and num_return_sequences

    # --- remote image URLs ---
    allow_remote_urls: bool = False  # fetch http(s) image URLs given instead of image data
    url_timeout_s: float = 5.0  # total time for one fetch, redirects included
    url_max_redirects: int = 3  # redirects followed (each target is checked again)
    url_allow_networks: tuple[str, ...] = ()  # CIDRs allowed although private (an internal
    # image store, say); cloud metadata addresses stay refused whatever this says

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if self.max_queue < self.max_images:
            raise ValueError("max_queue must be >= max_images (a request must fit the queue)")
        if self.max_wait_ms < 0:
            raise ValueError("max_wait_ms must be >= 0")
        if self.header_timeout_s <= 0 or self.body_timeout_s <= 0:
            raise ValueError("header_timeout_s and body_timeout_s must be > 0")
        if any(not k for k in self.api_keys):
            raise ValueError("API keys must not be empty")

    def load_backend(self) -> dict[str, Any]:
        """im2text.load keywords for the backend fields."""
        return {"backend": self.backend, "quantize": "int8" if self.int8 else None}
