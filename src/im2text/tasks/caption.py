"""Captioning: images (+ optional prompt) -> Caption records, streamed in input order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from im2text.config import GenerationSettings, LoadSettings
from im2text.engine.batching import Item, run_batched
from im2text.images import ImageLimits, ImageSource
from im2text.results import Caption
from im2text.tasks._common import clean_text

if TYPE_CHECKING:
    from im2text.families.base import Family


def caption_stream(
    family: Family,
    sources: Iterable[ImageSource],
    *,
    prompt: str | None,
    generation: GenerationSettings,
    load: LoadSettings,
) -> Iterator[Caption]:
    """Caption `sources` lazily; one `Caption` per source, in order, errors included."""
    prompt = _sanitize_prompt(prompt) or family.default_prompt
    items = (Item(s) for s in sources)
    for item, result in run_batched(
        items,
        prepare=lambda images, _extras: family.prepare(images, [prompt] * len(images)),
        compute=lambda batch: family.generate(batch, generation),
        batch_size=load.batch_size,
        num_workers=load.num_workers,
        limits=ImageLimits(max_pixels=load.max_pixels),
        target_size=family.image_size,
    ):
        if isinstance(result, BaseException):
            yield Caption.failed(item.source.key, result)
            continue
        ranked = sorted(result, key=lambda c: c.score, reverse=True)  # best first, stable
        if prompt and family.prompt_is_prefix:
            # The model continued the user's words: the caption is the whole sentence.
            ranked = [replace(c, text=f"{prompt} {c.text}".strip()) for c in ranked]
        best = ranked[0]
        yield Caption(best.text, best.score, tuple(ranked), source=item.source.key)


def _sanitize_prompt(prompt: str | None) -> str | None:
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        return None
    return clean_text(prompt, "prompt")
