"""How one batch of each task runs on a `Model`, through the public API only.

Each batch is a single `Model.stream(task, ...)` call with `batch_size` = the batch's length, so a
batch is one forward pass. Results keep the server's own per-image keys (`source`), never the
batch position.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from im2text.model import Model
from im2text.results import Embedding
from im2text.tasks import get_task


def failed(task: str, source: str, error: str, question: str | None = None) -> Any:
    """The failed result of `task` for one input (what the Python API returns for bad items)."""
    extra = {"question": question or ""} if get_task(task).pairs else {}
    return get_task(task).result.failed(source, error, **extra)


def batch_runner(model: Model) -> Callable[[str, dict[str, Any], list[Any]], list[Any]]:
    """The `RunBatch` for `model`: (task, params, inputs) -> results in input order."""

    def run(task: str, params: dict[str, Any], inputs: list[Any]) -> list[Any]:
        if task == "embed_texts":  # inputs: one list of texts per request; one call for all
            flat = [t for texts in inputs for t in texts]
            rows = iter(model.embed(texts=flat))
            return [[Embedding(next(rows), source=t) for t in texts] for texts in inputs]
        return list(model.stream(task, inputs, batch_size=len(inputs), **params))

    return run
