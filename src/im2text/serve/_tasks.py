"""How one batch of each task runs on a `Model`, through the public API only.

Each batch is a single call with `batch_size` = the batch's length, so a batch is one forward
pass. Results keep the server's own per-image keys (`source`), never the batch position.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from im2text.images import ImageSource
from im2text.model import Model
from im2text.results import Answer, Caption, Classification, Match, Reading

IMAGE_TASKS = ("caption", "ask", "read", "match", "classify", "embed")


@dataclasses.dataclass(frozen=True)
class Embedding:
    """One image's (or text's) embedding, shaped like the other results."""

    vector: tuple[float, ...]
    source: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failed(cls, source: str | None, error: BaseException | str) -> Embedding:
        return cls((), source=source, error=str(error))

    def to_record(self, model: str) -> dict[str, Any]:
        return {
            "path": self.source,
            "embedding": list(self.vector) if self.ok else None,
            "dim": len(self.vector) if self.ok else None,
            "model": model,
            "error": self.error,
        }


def failed(task: str, source: str, error: str, extra: Any = None) -> Any:
    """The failed result of `task` for one input (what the Python API returns for bad items)."""
    if task == "caption":
        return Caption.failed(source, error)
    if task == "ask":
        return Answer.failed(source, extra or "", error)
    if task == "read":
        return Reading.failed(source, error)
    if task == "match":
        return Match.failed(source, error)
    if task == "classify":
        return Classification.failed(source, error)
    return Embedding.failed(source, error)


def _rekey(results: list[Any], sources: list[ImageSource]) -> list[Any]:
    # match/classify take plain images, so their results are keyed "<PIL #i>": restore ours.
    return [dataclasses.replace(r, source=s.key) for r, s in zip(results, sources, strict=True)]


def _as_list(result: Any) -> list[Any]:
    return result if isinstance(result, list) else [result]


def batch_runner(model: Model) -> Callable[[str, dict[str, Any], list[Any]], list[Any]]:
    """The `RunBatch` for `model`: (task, params, inputs) -> results in input order."""

    def run(task: str, params: dict[str, Any], inputs: list[Any]) -> list[Any]:
        n = len(inputs)
        if task == "caption":
            return list(model.caption_iter(inputs, batch_size=n, **params))
        if task == "ask":  # inputs: (source, question) pairs, so questions may differ
            return list(model.ask_iter(inputs, batch_size=n, **params))
        if task == "read":
            return list(model.read_iter(inputs, batch_size=n, **params))
        if task == "match":
            matches = model.match([s.data for s in inputs], params["texts"], batch_size=n)
            return _rekey(_as_list(matches), inputs)
        if task == "classify":
            labels = model.classify([s.data for s in inputs], batch_size=n, **params)
            return _rekey(_as_list(labels), inputs)
        if task == "embed":
            out = []
            for (key, vec), src in zip(model.embed_iter(inputs, batch_size=n), inputs, strict=True):
                if isinstance(vec, BaseException):
                    out.append(Embedding.failed(src.key, vec))
                else:
                    out.append(Embedding(_floats(vec), source=key))
            return out
        if task == "embed_texts":  # inputs: one list of texts per request; one call for all
            flat = [t for texts in inputs for t in texts]
            rows = iter(model.embed(texts=flat))
            return [[Embedding(_floats(next(rows)), source=t) for t in texts] for texts in inputs]
        raise ValueError(f"unknown task {task!r}")

    return run


def _floats(vec: np.ndarray) -> tuple[float, ...]:
    return tuple(round(float(x), 6) if math.isfinite(x) else 0.0 for x in np.asarray(vec).ravel())
