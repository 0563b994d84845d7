"""What one app holds: its models, one batcher each, metrics, and the shared request checks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from typing import Any

import anyio

from im2text.model import Model
from im2text.serve._batcher import Batcher, ClosedError, QueueFullError
from im2text.serve._errors import ApiError
from im2text.serve._metrics import Metrics
from im2text.serve._tasks import batch_runner
from im2text.serve.config import ServeConfig

log = logging.getLogger("im2text.serve")

# What a model's family can do -> which chat behaviour it gets.
CHAT_TASKS = ("caption", "ask")


class ServerState:
    """Models, batchers, metrics and limits of one app (kept on `app.state.im2text`)."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.models: dict[str, Model] = {}
        self.batchers: dict[str, Batcher] = {}
        self.loading = False  # model names are still being loaded
        self.load_error: str | None = None  # why loading failed, if it did
        self.shutting_down = False
        self._decode_limiter: anyio.CapacityLimiter | None = None

    @property
    def ready(self) -> bool:
        return (
            bool(self.models)
            and not self.loading
            and not self.load_error
            and not (self.shutting_down)
        )

    @property
    def decode_limiter(self) -> anyio.CapacityLimiter:
        # Decoding threads are few on purpose: they bound the memory of images in flight.
        if self._decode_limiter is None:
            self._decode_limiter = anyio.CapacityLimiter(4)
        return self._decode_limiter

    def add_model(self, model_id: str, model: Model) -> None:
        if model_id in self.models:
            raise ValueError(f"two models share the id {model_id!r}; give them distinct names")
        cfg = self.config
        self.models[model_id] = model
        self.batchers[model_id] = Batcher(
            model_id,
            batch_runner(model),
            max_batch_size=cfg.max_batch_size,
            max_wait_s=cfg.max_wait_ms / 1000,
            max_queue=cfg.max_queue,
            on_batch=lambda task, n, s: self.metrics.observe_batch(model_id, task, n, s),
            on_queue=lambda n: self.metrics.queue_depth.labels(model_id).set(n),
        )
        self.metrics.ready.set(len(self.models))

    def pick(self, name: str | None, task: str) -> tuple[str, Model]:
        """The model to use for `task`: the one named, or the first loaded that can do it."""
        if name is None:
            for model_id, model in self.models.items():
                if task in model.family.tasks:
                    return model_id, model
            self._not_ready()
            raise ApiError(
                400, "unsupported_task", f"no model loaded here can {task}", param="model"
            )
        if name not in self.models:
            self._not_ready()
            raise ApiError(
                404,
                "model_not_found",
                f"model {name!r} is not loaded here; loaded: {', '.join(self.models) or 'none'}",
                param="model",
            )
        model = self.models[name]
        if task not in model.family.tasks:
            able = [m for m, mod in self.models.items() if task in mod.family.tasks]
            raise ApiError(
                400,
                "unsupported_task",
                f"model {name!r} cannot {task} (it can: {', '.join(model.family.tasks)}); "
                f"models here that can: {', '.join(able) or 'none'}",
                param="model",
            )
        return name, model

    def _not_ready(self) -> None:
        if self.loading:
            raise ApiError(
                503,
                "not_ready",
                "models are still loading; retry shortly",
                headers={"Retry-After": str(self.config.retry_after_s)},
            )

    def check_room(self, model_id: str, n: int) -> None:
        """429 before any decoding work if the model's queue cannot take `n` more items."""
        if not self.batchers[model_id].has_room(n):
            self.metrics.rejected.labels(model_id).inc()
            raise self._busy(model_id)

    def _busy(self, model_id: str) -> ApiError:
        b = self.batchers[model_id]
        return ApiError(
            429,
            "queue_full",
            f"model {model_id!r} is busy ({b.queued} images queued, limit {b.max_queue}); "
            "retry shortly",
            headers={"Retry-After": str(self.config.retry_after_s)},
        )

    async def submit(
        self, model_id: str, task: str, key: Hashable, params: dict[str, Any], inputs: list[Any]
    ) -> list[Any]:
        """Run `inputs` through the model's batcher; map queue states to HTTP errors."""
        if self.shutting_down:
            raise ApiError(503, "shutting_down", "the server is shutting down")
        batcher = self.batchers[model_id]
        try:
            async with asyncio.timeout(self.config.request_timeout_s):
                return await batcher.submit(task, key, params, inputs)
        except QueueFullError:
            self.metrics.rejected.labels(model_id).inc()
            raise self._busy(model_id) from None
        except ClosedError as e:
            raise ApiError(503, "shutting_down", str(e)) from None
        except TimeoutError:
            raise ApiError(
                503,
                "timeout",
                f"no answer within {self.config.request_timeout_s:g} s; retry later",
                headers={"Retry-After": str(self.config.retry_after_s)},
            ) from None
        except (ValueError, TypeError) as e:
            # Settings the model rejects (e.g. ranking candidates on a generative model).
            raise ApiError(422, "invalid_request_error", str(e)) from None

    async def close(self) -> None:
        self.shutting_down = True
        timeout = self.config.shutdown_timeout_s
        await asyncio.gather(*(b.close(timeout) for b in self.batchers.values()))
        self.metrics.ready.set(0)
