"""Image-text matching, zero-shot / supervised classification, and embeddings."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from im2text.config import LoadSettings
from im2text.engine.batching import Item, run_batched
from im2text.families.base import ENSEMBLE_TEMPLATES, Classifier, Embedder, Matcher
from im2text.images import ImageLimits, ImageSource
from im2text.results import Classification, Embedding, Match
from im2text.tasks._common import clean_texts

if TYPE_CHECKING:
    from im2text.families.base import Family

DEFAULT_TEMPLATES = ("a photo of a {}.",)


def _run(
    family: Family,
    prepare_images: Callable[[list[Any]], Any],
    sources: Iterable[ImageSource],
    compute: Callable[[Any], Any],
    load: LoadSettings,
) -> Iterator[tuple[Item[None], Any]]:
    return run_batched(
        (Item(s) for s in sources),
        prepare=lambda images, _extras: prepare_images(images),
        compute=compute,
        batch_size=load.batch_size,
        num_workers=load.num_workers,
        limits=ImageLimits(max_pixels=load.max_pixels),
        target_size=family.image_size,
        pin_memory=family.device.type == "cuda",
    )


def match_stream(
    family: Family, sources: Iterable[ImageSource], *, load: LoadSettings, texts: object
) -> Iterator[Match]:
    """Score every text against each image (texts are encoded once for the whole run)."""
    if not isinstance(family, Matcher):
        raise ValueError(f"{family.key} models cannot match images and texts")
    matcher: Matcher = family
    clean = clean_texts(texts, "text")
    text_emb = matcher.embed_texts(clean)
    compute = lambda batch: matcher.match(batch, clean, text_emb)  # noqa: E731
    for item, res in _run(family, matcher.prepare_images, sources, compute, load):
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


def resolve_templates(templates: object) -> tuple[str, ...]:
    """None -> the default template; "ensemble" -> the CLIP paper's 7; each must hold one "{}"."""
    if templates is None:
        return DEFAULT_TEMPLATES
    if templates == "ensemble" or templates == ["ensemble"]:
        return ENSEMBLE_TEMPLATES
    out = tuple(clean_texts(templates, "template"))
    for t in out:
        if t.count("{}") != 1:
            raise ValueError(f"template {t!r} must contain '{{}}' exactly once (for the label)")
    return out


def check_classify(family: object, params: dict[str, Any]) -> None:
    """Templates and top_k are valid (ValueError otherwise)."""
    resolve_templates(params.get("templates"))
    top_k = params.get("top_k", 5)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError("top_k must be an integer >= 1")


def classify_stream(
    family: Family,
    sources: Iterable[ImageSource],
    *,
    load: LoadSettings,
    labels: object | None = None,
    templates: object = None,
    top_k: int = 5,
) -> Iterator[Classification]:
    """Top-k labels per image: zero-shot over `labels`, or the checkpoint's own classes."""
    if not isinstance(family, Classifier):
        raise ValueError(f"{family.key} models cannot classify images")
    classifier: Classifier = family
    clean = clean_texts(labels, "label") if labels is not None else None
    if clean is not None and len(set(clean)) != len(clean):
        raise ValueError("duplicate labels")
    check_classify(family, {"templates": templates, "top_k": top_k})
    chosen = resolve_templates(templates)
    names, state = classifier.classifier(clean, chosen)
    compute = lambda batch: classifier.classify(batch, state)  # noqa: E731
    for item, probs in _run(family, classifier.prepare_images, sources, compute, load):
        if isinstance(probs, BaseException):
            yield Classification.failed(item.source.key, probs)
            continue
        k = min(top_k, len(names))
        top = probs.topk(k)
        pairs = tuple((names[i], float(p)) for p, i in zip(top.values, top.indices, strict=True))
        yield Classification(pairs, source=item.source.key)


def embed_stream(
    family: Family, sources: Iterable[ImageSource], *, load: LoadSettings
) -> Iterator[Embedding]:
    """One `Embedding` (normalised float32 vector) per image, in order; errors included."""
    if not isinstance(family, Embedder):
        raise ValueError(f"{family.key} models do not embed images")
    embedder: Embedder = family
    compute = lambda batch: list(embedder.embed_images(batch).numpy())  # noqa: E731
    for item, res in _run(family, embedder.prepare_images, sources, compute, load):
        if isinstance(res, BaseException):
            yield Embedding.failed(item.source.key, res)
        else:
            yield Embedding(res, source=item.source.key)
