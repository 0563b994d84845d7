"""Finding regions: images -> Detection (labelled boxes with scores), streamed in input order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from im2text.config import GenerationSettings, LoadSettings
from im2text.engine.batching import Item, run_batched
from im2text.families.base import Detector
from im2text.images import ImageLimits, ImageSource
from im2text.results import Detection

if TYPE_CHECKING:
    from im2text.families.base import Family


def detect_stream(
    family: Family,
    sources: Iterable[ImageSource],
    *,
    load: LoadSettings,
    generation: GenerationSettings,
    min_score: float | None = None,
) -> Iterator[Detection]:
    """Find the regions of each image; those scoring below `min_score` are dropped."""
    if not isinstance(family, Detector):
        raise ValueError(f"{family.key} models do not find regions")
    detector: Detector = family
    min_score = 0.0 if min_score is None else min_score
    if not 0.0 <= min_score <= 1.0:
        raise ValueError(f"min_score must be in [0, 1], not {min_score}")
    items: Iterator[Item[None]] = (Item(s) for s in sources)
    for item, result in run_batched(
        items,
        prepare=lambda images, _extras: images,
        compute=lambda images: detector.detect(images, generation),
        batch_size=load.batch_size,
        num_workers=load.num_workers,
        limits=ImageLimits(max_pixels=load.max_pixels),
        target_size=None,  # boxes are in the input's own pixels
        pin_memory=family.device.type == "cuda",
    ):
        if isinstance(result, BaseException):
            yield Detection.failed(item.source.key, result)
            continue
        kept = tuple(sorted((r for r in result if r.score >= min_score), key=lambda r: -r.score))
        yield Detection(kept, source=item.source.key)
