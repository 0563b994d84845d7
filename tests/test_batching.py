"""The prefetching batch runner: order, laziness, per-item isolation of failures."""

from __future__ import annotations

import threading

from conftest import random_images
from PIL import Image

from im2text.engine.batching import Item, run_batched
from im2text.images import ImageError, ImageSource


def _items(images: list[Image.Image]):
    return [Item(ImageSource(key=f"img{i}", data=im), extra=i) for i, im in enumerate(images)]


def test_order_and_extras_preserved_across_batches() -> None:
    items = _items(random_images(11))
    calls: list[int] = []

    def compute(batch):
        calls.append(len(batch))
        return [f"r{x}" for x in batch]

    out = list(run_batched(items, prepare=lambda ims, ex: ex, compute=compute, batch_size=4))
    assert [it.source.key for it, _ in out] == [f"img{i}" for i in range(11)]
    assert [r for _, r in out] == [f"r{i}" for i in range(11)]
    assert calls == [4, 4, 3]


def test_prepare_runs_in_worker_threads_compute_in_caller() -> None:
    seen: dict[str, set[str]] = {"prepare": set(), "compute": set()}

    def prepare(ims, ex):
        seen["prepare"].add(threading.current_thread().name)
        return ex

    def compute(batch):
        seen["compute"].add(threading.current_thread().name)
        return batch

    list(run_batched(_items(random_images(6)), prepare=prepare, compute=compute, batch_size=2))
    assert all(n.startswith("im2text") for n in seen["prepare"])
    assert seen["compute"] == {threading.current_thread().name}


def test_bad_image_and_poisonous_item_fail_alone() -> None:
    items = _items(random_images(5))
    items.insert(2, Item(ImageSource(key="broken", data=b"\x00garbage"), extra=99))

    def compute(batch):
        if 3 in batch:  # item 3 crashes the model whenever it is in a batch
            raise RuntimeError("model exploded on item 3")
        return [x * 10 for x in batch]

    out = list(run_batched(items, prepare=lambda ims, ex: ex, compute=compute, batch_size=3))
    results = {it.source.key: r for it, r in out}
    assert isinstance(results["broken"], ImageError)
    assert isinstance(results["img3"], RuntimeError)
    assert results["img0"] == 0 and results["img1"] == 10
    assert results["img2"] == 20 and results["img4"] == 40


def test_consumes_input_lazily() -> None:
    pulled = 0

    def gen():
        nonlocal pulled
        for it in _items(random_images(50)):
            pulled += 1
            yield it

    stream = run_batched(gen(), prepare=lambda i, e: e, compute=lambda b: b, batch_size=2)
    next(stream)
    assert pulled < 50  # only the prefetch window was read
    assert len(list(stream)) == 49
