"""Prometheus metrics, in a registry of the app's own (several apps can live in one process)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


class Metrics:
    """Every metric the server exports; label values are bounded (routes, model ids, types)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "im2text_http_requests", "HTTP requests answered.", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "im2text_http_request_duration_seconds",
            "Time from request to the end of the response.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batches = Counter(
            "im2text_batches", "Forward passes (batches) run.", ["model", "task"], registry=r
        )
        self.batch_size = Histogram(
            "im2text_batch_size",
            "Images (or texts) per forward pass.",
            ["model", "task"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "im2text_batch_duration_seconds",
            "Model time per batch.",
            ["model", "task"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "im2text_queue_depth", "Images waiting for a batch.", ["model"], registry=r
        )
        self.rejected = Counter(
            "im2text_queue_rejected",
            "Requests refused with 429 (queue full).",
            ["model"],
            registry=r,
        )
        self.errors = Counter(
            "im2text_errors", "Error responses and failed items, by type.", ["type"], registry=r
        )
        self.ready = Gauge("im2text_models_ready", "Models loaded and serving.", registry=r)

    def observe_batch(self, model: str, task: str, size: int, seconds: float) -> None:
        self.batches.labels(model, task).inc()
        self.batch_size.labels(model, task).observe(size)
        self.batch_seconds.labels(model, task).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts requests and their latency by route template (not raw path: bounded labels)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._paths: set[str] | None = None

    def _known(self, scope: Any) -> str:
        # Answered before routing (auth, body size): label by path if it is a real route.
        if self._paths is None:
            routes = getattr(scope.get("app"), "routes", [])
            self._paths = {getattr(r, "path", "") for r in routes}
        return scope["path"] if scope["path"] in self._paths else "unmatched"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or self._known(scope)
            self.metrics.requests.labels(path, str(status[0])).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)
