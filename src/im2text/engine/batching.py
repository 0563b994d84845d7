"""Prefetching batch runner: decode + preprocess the next batches in threads while the model runs.

Results come back in input order. A bad image fails only its own item; a batch whose forward pass
fails is retried one item at a time, so one poisonous input cannot take its neighbours down.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Any, Generic, TypeVar

import torch
from PIL import Image

from im2text.images import ImageError, ImageLimits, ImageSource, try_load

T = TypeVar("T")  # per-item payload handed to `prepare` along with the image (e.g. a question)
R = TypeVar("R")  # per-item result of `compute`


@dataclass
class Item(Generic[T]):
    source: ImageSource
    extra: T | None = None  # per-item payload for `prepare` (e.g. the question)
    error: str | None = None  # set when the item is known bad before loading (e.g. empty question)


@dataclass
class _Prepared:
    items: list[Item[Any]]
    errors: dict[int, str]  # position in `items` -> message
    ok: list[int]  # positions whose image loaded, in order
    images: list[Image.Image]  # kept for the one-by-one retry
    batch: Any  # output of prepare() for the ok items, or None


def run_batched(
    items: Iterable[Item[T]],
    *,
    prepare: Callable[[list[Image.Image], list[T | None]], Any],
    compute: Callable[[Any], list[R]],
    batch_size: int = 8,
    num_workers: int = 2,
    limits: ImageLimits | None = None,
    target_size: int | None = None,
    pin_memory: bool = False,
) -> Iterator[tuple[Item[T], R | ImageError | Exception]]:
    """Yield `(item, result_or_error)` for every item, in input order.

    Args:
        items: what to run; consumed lazily, so a generator over millions of files is fine.
        prepare: CPU-side (images, extras) -> model inputs; runs in worker threads.
        compute: model inputs -> one result per image; runs in the calling thread.
        batch_size: images per `compute` call.
        num_workers: loader threads; up to `num_workers + 1` batches are prepared ahead.
        limits: image safety limits.
        target_size: the model's input side, so big JPEGs decode at reduced size.
        pin_memory: pin the prepared tensors (in the loader threads), so the copy to a GPU
            runs asynchronously while the previous batch computes.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    limits = limits or ImageLimits()

    def load_and_prepare(chunk: list[Item[T]]) -> _Prepared:
        loaded = [
            ImageError(it.error)
            if it.error
            else try_load(it.source, limits=limits, target_size=target_size)
            for it in chunk
        ]
        errors = {i: str(im) for i, im in enumerate(loaded) if isinstance(im, ImageError)}
        ok = [i for i in range(len(chunk)) if i not in errors]
        images = [im for im in loaded if not isinstance(im, ImageError)]
        batch = None
        if ok:
            try:
                batch = prepare(images, [chunk[i].extra for i in ok])
                if pin_memory:
                    batch = _pinned(batch)
            except Exception:
                batch = None
        return _Prepared(chunk, errors, ok, images, batch)

    def finish(p: _Prepared) -> Iterator[tuple[Item[T], Any]]:
        results: dict[int, Any] = {i: ImageError(m) for i, m in p.errors.items()}
        if p.ok:
            try:
                if p.batch is None:
                    raise RuntimeError("batch preprocessing failed")
                outs = compute(p.batch)
                results.update(zip(p.ok, outs, strict=True))
            except Exception:
                for i, img in zip(p.ok, p.images, strict=True):
                    results[i] = _run_one(img, p.items[i].extra, prepare, compute)
        for i, it in enumerate(p.items):
            yield it, results[i]

    iterator = iter(items)
    with ThreadPoolExecutor(max_workers=max(1, num_workers), thread_name_prefix="im2text") as pool:
        pending: deque[Future[_Prepared]] = deque()
        while True:
            while len(pending) < max(1, num_workers) + 1:
                chunk = list(islice(iterator, batch_size))
                if not chunk:
                    break
                pending.append(pool.submit(load_and_prepare, chunk))
            if not pending:
                return
            yield from finish(pending.popleft().result())


def _pinned(batch: Any) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.pin_memory()
    if isinstance(batch, dict):
        return {k: _pinned(v) for k, v in batch.items()}
    return batch


def _run_one(image: Image.Image, extra: Any, prepare: Callable, compute: Callable) -> Any:
    try:
        return compute(prepare([image], [extra]))[0]
    except Exception as e:
        return e
