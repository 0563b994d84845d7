"""VisionEncoderDecoder: any vision encoder + any causal-LM decoder (ViT-GPT2, TrOCR, your own).

Quirks kept here: checkpoints like vit-gpt2 ship an image processor and a tokenizer but no
processor file, so we pair them ourselves; GPT-2 style decoders have no pad token and reuse EOS;
a prompt becomes `decoder_input_ids` = decoder start + prompt tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from im2text.families.base import Family

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


class VisionEncoderDecoder(Family):
    key = "vision-encoder-decoder"
    model_types = ("vision-encoder-decoder",)
    model_class = "VisionEncoderDecoderModel"

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

    def prepare(self, images: list[Image.Image], prompt: str | None) -> dict[str, torch.Tensor]:
        pixel_values = self.processor(images=images, return_tensors="pt").pixel_values
        ids = [self._start_id()]
        if prompt:
            ids += self.tokenizer(prompt, add_special_tokens=False).input_ids
        return {
            "pixel_values": pixel_values,
            "decoder_input_ids": torch.tensor([ids] * len(images), dtype=torch.long),
        }

    def eos_token_ids(self) -> set[int]:
        ids = super().eos_token_ids()
        return ids or {int(self.tokenizer.eos_token_id)}

    def generation_kwargs(self) -> dict[str, int]:
        eos = min(self.eos_token_ids())
        pad = self.model.generation_config.pad_token_id
        pad = self.model.config.pad_token_id if pad is None else pad
        return {"eos_token_id": eos, "pad_token_id": int(eos if pad is None else pad)}
