"""Image-text matching, zero-shot / supervised classification, and embeddings."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from im2text.config import LoadSettings
from im2text.engine.batching import Item, run_batched
from im2text.images import ImageLimits, ImageSource
from im2text.results import Classification, Match
from im2text.tasks._common import clean_texts

if TYPE_CHECKING:
    from im2text.families.base import Family


def _run(family: Family, sources: Iterable[ImageSource], compute: Any, load: LoadSettings):
    return run_batched(
        (Item(s) for s in sources),
        prepare=lambda images, _extras: family.prepare_images(images),  # type: ignore[attr-defined]
        compute=compute,
        batch_size=load.batch_size,
        num_workers=load.num_workers,
        limits=ImageLimits(max_pixels=load.max_pixels),
        target_size=family.image_size,
    )


def match_stream(
    family: Family, sources: Iterable[ImageSource], texts: object, *, load: LoadSettings
) -> Iterator[Match]:
    """Score every text against each image (texts are encoded once for the whole run)."""
    clean = clean_texts(texts, "text")
    text_emb = family.embed_texts(clean)  # type: ignore[attr-defined]
    compute = lambda batch: family.match(batch, clean, text_emb)  # type: ignore[attr-defined]  # noqa: E731
    for item, res in _run(family, sources, compute, load):
        if isinstance(res, BaseException):
            yield Match.failed(item.source.key, res)
            continue
        yield Match(
            tuple(clean),
            tuple(res["similarity"]),
            tuple(res["probability"]),
            tuple(res["itm"]) if res["itm"] is not None else None,
            source=item.source.key,
        )


def classify_stream(
    family: Family,
    sources: Iterable[ImageSource],
    labels: object | None,
    *,
    templates: tuple[str, ...],
    top_k: int,
    load: LoadSettings,
) -> Iterator[Classification]:
    """Top-k labels per image: zero-shot over `labels`, or the checkpoint's own classes."""
    clean = clean_texts(labels, "label") if labels is not None else None
    if clean is not None and len(set(clean)) != len(clean):
        raise ValueError("duplicate labels")
    for t in templates:
        if "{}" not in t:
            raise ValueError(f"template {t!r} has no '{{}}' for the label")
    if top_k < 1:
        raise ValueError("top_k must be >= 1")
    names, state = family.classifier(clean, templates)  # type: ignore[attr-defined]
    compute = lambda batch: family.classify(batch, state)  # type: ignore[attr-defined]  # noqa: E731
    for item, probs in _run(family, sources, compute, load):
        if isinstance(probs, BaseException):
            yield Classification.failed(item.source.key, probs)
            continue
        k = min(top_k, len(names))
        top = probs.topk(k)
        pairs = tuple((names[i], float(p)) for p, i in zip(top.values, top.indices, strict=True))
        yield Classification(pairs, source=item.source.key)


def embed_stream(
    family: Family, sources: Iterable[ImageSource], *, load: LoadSettings
) -> Iterator[tuple[str, np.ndarray | BaseException]]:
    """(key, normalised float32 vector) per image, or (key, error)."""
    compute = lambda batch: list(family.embed_images(batch).numpy())  # type: ignore[attr-defined]  # noqa: E731
    for item, res in _run(family, sources, compute, load):
        yield item.source.key, res
