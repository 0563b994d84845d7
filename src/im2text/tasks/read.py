"""Reading text (OCR): images -> Reading (page text in reading order + lines with boxes)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from im2text.config import GenerationSettings, LoadSettings, ReadOptions
from im2text.engine import words
from im2text.engine.batching import Item, run_batched
from im2text.engine.layout import join_rows, reading_order
from im2text.families.base import Reader
from im2text.images import ImageLimits, ImageSource
from im2text.results import Line, Reading

if TYPE_CHECKING:
    from im2text.families.base import Family


def read_stream(
    family: Family,
    sources: Iterable[ImageSource],
    *,
    load: LoadSettings,
    generation: GenerationSettings,
    page: bool | None = None,
    pad_small: bool | None = None,
    whole_image: bool | None = None,
    split_words: bool | None = None,
    fold_accents: bool | None = None,
) -> Iterator[Reading]:
    """Read each image; `page=False` reads it as one line (line recognisers like TrOCR).
    The other keywords switch the techniques of `ReadOptions` (None: its default)."""
    if not isinstance(family, Reader):
        raise ValueError(f"{family.key} models do not read text")
    reader: Reader = family
    options = ReadOptions().merged(
        pad_small=pad_small, whole_image=whole_image, split_words=split_words,
        fold_accents=fold_accents,
    )  # fmt: skip
    fixing = options.split_words or options.fold_accents
    if fixing and not words.available():
        if split_words or fold_accents:  # asked for by name: say what is missing
            raise ImportError(words.HINT)
        fixing = False  # the defaults, without the word list: read as recognised
    items: Iterator[Item[None]] = (Item(s) for s in sources)
    for item, result in run_batched(
        items,
        prepare=lambda images, _extras: images,
        compute=lambda images: reader.read(images, page=page, settings=generation, options=options),
        batch_size=load.batch_size,
        num_workers=load.num_workers,
        limits=ImageLimits(max_pixels=load.max_pixels),
        target_size=None,  # text needs every pixel: never decode at reduced size for OCR
        pin_memory=family.device.type == "cuda",
    ):
        if isinstance(result, BaseException):
            yield Reading.failed(item.source.key, result)
            continue
        if fixing:
            result = [_fixed(line, options) for line in result]
        rows = reading_order(result) if reader.line_positions else [[ln] for ln in result]
        ordered = tuple(line for row in rows for line in row)
        yield Reading(join_rows(rows), ordered, source=item.source.key)


def _fixed(line: Line, options: ReadOptions) -> Line:
    text = words.fix_text(line.text, split=options.split_words, fold_accents=options.fold_accents)
    return line if text == line.text else replace(line, text=text, raw=line.text)
