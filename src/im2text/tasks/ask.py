"""Visual question answering: (image, question) pairs -> Answer with a real probability."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import torch

from im2text.config import GenerationSettings, LoadSettings
from im2text.engine.batching import Item, run_batched
from im2text.families.base import Generator, Ranker
from im2text.images import ImageLimits, ImageSource
from im2text.results import Answer
from im2text.tasks._common import clean_text, clean_texts

if TYPE_CHECKING:
    from im2text.families.base import Family


def check_ask(family: object, params: dict[str, Any]) -> None:
    """Candidate ranking needs a `Ranker` (ValueError otherwise)."""
    if params.get("candidates") is not None and not isinstance(family, Ranker):
        key = getattr(family, "key", "these")
        raise ValueError(
            f"candidate ranking needs a model with a VQA answer decoder (e.g. blip-vqa-base); "
            f"{key} models generate answers instead"
        )


def ask_stream(
    family: Family,
    pairs: Iterable[tuple[ImageSource, object]],
    *,
    load: LoadSettings,
    generation: GenerationSettings,
    candidates: list[str] | None = None,
) -> Iterator[Answer]:
    """Answer each (image, question) pair, in order; a bad image or question fails alone.

    With `candidates`, answers are ranked from that closed list instead of generated
    (LAVIS "rank" mode): each candidate gets its share of probability.
    """
    model: Generator | Ranker
    check_ask(family, {"candidates": candidates})
    if candidates is not None and isinstance(family, Ranker):
        candidates = clean_texts(candidates, "candidate answer")
        model = family
    elif isinstance(family, Generator):
        model = family
    else:
        raise ValueError(f"{family.key} models cannot generate answers")

    def items() -> Iterator[Item[str]]:
        for source, question in pairs:
            try:
                q = clean_text(question, "question")
            except (TypeError, ValueError) as e:
                yield Item(source, extra=str(question)[:80], error=f"{source.key}: {e}")
                continue
            yield Item(source, extra=q)

    def prepare(images: list[Any], questions: list[str | None]) -> Any:
        return model.prepare(images, [model.question_prompt(q or "") for q in questions])

    def compute(batch: Any) -> Any:
        if isinstance(model, Ranker) and candidates is not None:
            return model.rank(batch, candidates)
        assert isinstance(model, Generator)
        return model.generate(batch, generation)

    for item, result in run_batched(
        items(),
        prepare=prepare,
        compute=compute,
        batch_size=load.batch_size,
        num_workers=load.num_workers,
        limits=ImageLimits(max_pixels=load.max_pixels),
        target_size=family.image_size,
        pin_memory=family.device.type == "cuda",
    ):
        question = item.extra or ""
        if isinstance(result, BaseException):
            yield Answer.failed(item.source.key, result, question=question)
        elif candidates is not None:
            probs = torch.as_tensor(result).float().softmax(-1).tolist()
            ranking = sorted(zip(candidates, probs, strict=True), key=lambda x: -x[1])
            yield Answer(
                ranking[0][0], ranking[0][1], question, ranking=tuple(ranking),
                source=item.source.key,
            )  # fmt: skip
        else:
            best = max(result, key=lambda c: c.logprob)  # the most probable answer sequence
            yield Answer(
                best.text, math.exp(best.logprob), question, mean_logprob=best.mean_logprob,
                source=item.source.key,
            )  # fmt: skip
