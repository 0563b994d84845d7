"""Captioning: images (+ optional prompt) -> Caption records, streamed in input order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from im2text.config import GenerationSettings, LoadSettings
from im2text.engine.batching import Item, run_batched
from im2text.families.base import Generator, Matcher
from im2text.images import ImageLimits, ImageSource
from im2text.results import Caption
from im2text.tasks._common import clean_text

if TYPE_CHECKING:
    from im2text.families.base import Family
    from im2text.results import Candidate


def caption_stream(
    family: Family,
    sources: Iterable[ImageSource],
    *,
    load: LoadSettings,
    generation: GenerationSettings,
    prompt: str | None = None,
    style: str | None = None,
    rerank: Matcher | None = None,
) -> Iterator[Caption]:
    """Caption `sources` lazily; one `Caption` per source, in order, errors included.

    `style` ("short", "detailed", "tags") asks in the family's own words (its task token or
    instruction); a `prompt` always wins over it.

    With a `rerank` matcher (BLIP ITM or CLIP), several candidates are generated and ordered by
    how well they match the image — BLIP's own recipe for choosing a caption.
    """
    if not isinstance(family, Generator):
        raise ValueError(f"{family.key} models do not generate text")
    gen: Generator = family
    reranker = rerank
    prompt = _sanitize_prompt(prompt) or (style_prompt(family, style) if style else None)
    prompt = prompt or gen.default_prompt
    if reranker is not None and generation.num_return_sequences == 1:
        n = RERANK_CANDIDATES
        generation = generation.merged(
            num_return_sequences=n, num_beams=max(n, generation.num_beams)
        )

    def prepare(images: list[Any], _extras: list[None]) -> Any:
        batch = gen.prepare(images, [prompt] * len(images))
        return (batch, reranker.prepare_images(images)) if reranker else (batch, None)

    def compute(batch: Any) -> Any:
        cands = gen.generate(batch[0], generation)
        if reranker is None:
            return [sorted(c, key=lambda x: x.mean_logprob, reverse=True) for c in cands]
        return _rerank(reranker, batch[1], cands, prompt if gen.prompt_is_prefix else None)

    items: Iterator[Item[None]] = (Item(s) for s in sources)
    for item, result in run_batched(
        items,
        prepare=prepare,
        compute=compute,
        batch_size=load.batch_size,
        num_workers=load.num_workers,
        limits=ImageLimits(max_pixels=load.max_pixels),
        target_size=family.image_size,
        pin_memory=family.device.type == "cuda",
    ):
        if isinstance(result, BaseException):
            yield Caption.failed(item.source.key, result)
            continue
        ranked = result
        if prompt and gen.prompt_is_prefix:
            # The model continued the user's words: the caption is the whole sentence.
            ranked = [replace(c, text=_join(prompt, c.text)) for c in ranked]
        best = ranked[0]
        yield Caption(best.text, best.mean_logprob, tuple(ranked), source=item.source.key)


def style_prompt(family: Family, style: str) -> str:
    """The prompt that asks `family` for captions in `style`; ValueError if it has none."""
    if not isinstance(family, Generator):
        raise ValueError(f"{family.key} models do not generate text")
    styles = family.caption_styles
    if style not in styles:
        known = ", ".join(styles) or "none"
        raise ValueError(
            f"{family.key} models have no {style!r} caption style (they have: {known})"
        )
    return styles[style]


def check_caption(family: Family, params: dict[str, Any]) -> None:
    if params.get("style") is not None and params.get("prompt") is None:
        style_prompt(family, params["style"])


RERANK_CANDIDATES = 5  # candidates generated per image when re-ranking and none were asked for


def _join(prompt: str, text: str) -> str:
    return f"{prompt} {text}".strip()


def _rerank(
    reranker: Matcher,
    image_inputs: dict,
    cands: list[list[Candidate]],
    prompt: str | None,
) -> list[list[Candidate]]:
    """Order each image's candidates by the re-ranker (ITM probability, else cosine)."""
    out = []
    for i, row in enumerate(cands):
        texts = [_join(prompt, c.text) if prompt else c.text or "." for c in row]
        one = {k: v[i : i + 1] for k, v in image_inputs.items()}
        emb = reranker.embed_texts(texts)
        scores = reranker.match(one, texts, emb)[0]
        by = scores["itm"] if scores["itm"] is not None else scores["similarity"]
        scored = [replace(c, rerank=float(s)) for c, s in zip(row, by, strict=True)]
        out.append(sorted(scored, key=lambda c: c.rerank, reverse=True))
    return out


def _sanitize_prompt(prompt: str | None) -> str | None:
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        return None
    return clean_text(prompt, "prompt")
