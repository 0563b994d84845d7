"""Reading text (OCR): images -> Reading (page text in reading order + lines with boxes)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from im2text.config import GenerationSettings, LoadSettings
from im2text.engine.batching import Item, run_batched
from im2text.engine.layout import join_rows, reading_order
from im2text.families.base import Reader
from im2text.images import ImageLimits, ImageSource
from im2text.results import Reading

if TYPE_CHECKING:
    from im2text.families.base import Family


def read_stream(
    family: Family,
    sources: Iterable[ImageSource],
    *,
    load: LoadSettings,
    generation: GenerationSettings,
    page: bool | None = None,
) -> Iterator[Reading]:
    """Read each image; `page=False` reads it as one line (line recognisers like TrOCR)."""
    if not isinstance(family, Reader):
        raise ValueError(f"{family.key} models do not read text")
    reader: Reader = family
    items: Iterator[Item[None]] = (Item(s) for s in sources)
    for item, result in run_batched(
        items,
        prepare=lambda images, _extras: images,
        compute=lambda images: reader.read(images, page=page, settings=generation),
        batch_size=load.batch_size,
        num_workers=load.num_workers,
        limits=ImageLimits(max_pixels=load.max_pixels),
        target_size=None,  # text needs every pixel: never decode at reduced size for OCR
        pin_memory=family.device.type == "cuda",
    ):
        if isinstance(result, BaseException):
            yield Reading.failed(item.source.key, result)
            continue
        rows = reading_order(result)
        ordered = tuple(line for row in rows for line in row)
        yield Reading(join_rows(rows), ordered, source=item.source.key)
