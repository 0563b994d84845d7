"""VisionEncoderDecoder: any vision encoder + any causal-LM decoder (ViT-GPT2, TrOCR, your own).

Quirks kept here: checkpoints like vit-gpt2 ship an image processor and a tokenizer but no
processor file, so we pair them ourselves; GPT-2 style decoders have no pad token and reuse EOS;
a prompt becomes `decoder_input_ids` = decoder start + prompt tokens. TrOCR reads one text line
per image, so a page is read by finding its lines with the PP-OCR detector and reading each crop.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from im2text.config import GenerationSettings, ReadOptions
from im2text.engine.graphs import GraphPart
from im2text.families.base import GenerativeFamily
from im2text.results import Line

if TYPE_CHECKING:
    from PIL import Image


class _ImageTextProcessor:
    """An image processor and a tokenizer that travel together (like a transformers Processor)."""

    def __init__(self, image_processor: Any, tokenizer: Any):
        self.image_processor = image_processor
        self.tokenizer = tokenizer

    def __call__(self, images: Any = None, **kwargs: Any) -> Any:
        return self.image_processor(images=images, **kwargs)

    def save_pretrained(self, directory: str) -> None:
        self.image_processor.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)


class VisionEncoderDecoder(GenerativeFamily):
    key = "vision-encoder-decoder"
    model_types = ("vision-encoder-decoder",)
    architectures = ("VisionEncoderDecoderModel",)
    model_class = "VisionEncoderDecoderModel"
    vision_tower = "encoder"
    graph_parts = (GraphPart("encoder"),)
    tasks = ("caption", "read")

    @classmethod
    def load_processor(cls, source: str, **hub: Any) -> Any:
        from transformers import AutoImageProcessor, AutoTokenizer

        return _ImageTextProcessor(
            AutoImageProcessor.from_pretrained(source, **hub),
            AutoTokenizer.from_pretrained(source, **hub),
        )

    def _start_id(self) -> int:
        cfg, gen = self.model.config, self.model.generation_config
        start = gen.decoder_start_token_id or cfg.decoder_start_token_id
        return int(start if start is not None else self.tokenizer.bos_token_id)

    def prepare(
        self, images: list[Image.Image], prompts: list[str | None]
    ) -> dict[str, torch.Tensor]:
        if len(set(prompts)) > 1:
            raise ValueError("encoder-decoder captioning needs one prompt for the whole batch")
        pixel_values = self.processor(images=images, return_tensors="pt").pixel_values
        ids = [self._start_id()]
        if prompts and prompts[0]:
            ids += self.tokenizer(prompts[0], add_special_tokens=False).input_ids
        return {
            "pixel_values": pixel_values,
            "decoder_input_ids": torch.tensor([ids] * len(images), dtype=torch.long),
        }

    def training_inputs(
        self, images: list[Image.Image], prompts: list[str | None], targets: list[str]
    ) -> dict[str, torch.Tensor]:
        """Labels = target tokens + EOS (the model prepends the decoder start itself)."""
        eos = min(self.eos_token_ids())
        rows = [
            [*self.tokenizer(f"{p} {t}" if p else t, add_special_tokens=False).input_ids, eos]
            for p, t in zip(prompts, targets, strict=True)
        ]
        width = max(len(r) for r in rows)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, r in enumerate(rows):
            labels[i, : len(r)] = torch.tensor(r)
        pixel_values = self.processor(images=images, return_tensors="pt").pixel_values
        return {"pixel_values": pixel_values, "labels": labels}

    def eos_token_ids(self) -> set[int]:
        ids = super().eos_token_ids()
        return ids or {int(self.tokenizer.eos_token_id)}

    def generation_kwargs(self) -> dict[str, int]:
        eos = min(self.eos_token_ids())
        pad = self.model.generation_config.pad_token_id
        pad = self.model.config.pad_token_id if pad is None else pad
        return {"eos_token_id": eos, "pad_token_id": int(eos if pad is None else pad)}

    # --- reading text (TrOCR and other OCR checkpoints) -------------------------------------------

    line_margin = (
        0.15  # grow each detected line box by this fraction of its height (TrOCR likes air)
    )
    crops_per_batch = 16

    def read(
        self,
        images: list[Image.Image],
        page: bool | None = None,
        settings: GenerationSettings | None = None,
        options: ReadOptions | None = None,
    ) -> list[list[Line]]:
        """Read each image: as one text line (`page=False`) or as a page of detected lines."""
        settings = settings or GenerationSettings()
        if page is False:
            results = self.generate(self.prepare(images, [None] * len(images)), settings)
            return [
                [
                    Line(
                        r[0].text,
                        (0.0, 0.0, float(im.width), float(im.height)),
                        math.exp(r[0].mean_logprob),
                    )
                ]
                for im, r in zip(images, results, strict=True)
            ]
        from im2text.families.rapidocr import detect_lines

        detector = self._detector()
        pages = []
        for image in images:
            pad = options.pad_small if options is not None else True
            boxes = [box for box, _score in detect_lines(detector, image, pad_small=pad)]
            crops = [image.crop(self._grow(box, image)) for box in boxes]
            results = []
            for i in range(0, len(crops), self.crops_per_batch):
                chunk = crops[i : i + self.crops_per_batch]
                results += self.generate(self.prepare(chunk, [None] * len(chunk)), settings)
            pages.append(
                [
                    Line(r[0].text, box, math.exp(r[0].mean_logprob))  # type: ignore[arg-type]
                    for box, r in zip(boxes, results, strict=True)
                ]
            )
        return pages

    def _detector(self) -> Any:
        if getattr(self, "_det", None) is None:
            from im2text.families.rapidocr import new_engine

            try:
                self._det = new_engine()
            except ImportError as e:
                raise ValueError(
                    f"full-page reading needs the text detector ({e}); "
                    "or read the image as a single line with page=False"
                ) from e
        return self._det

    def _grow(self, box: tuple[float, ...], image: Image.Image) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = box
        m = self.line_margin * (y1 - y0)
        return (
            max(0, int(x0 - m)),
            max(0, int(y0 - m)),
            min(image.width, int(x1 + m + 1)),
            min(image.height, int(y1 + m + 1)),
        )
