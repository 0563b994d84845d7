"""BLIP (Salesforce): ViT image encoder + BERT-style text decoder.

Quirks kept here: the decoder starts from [DEC] (bos) and stops at [SEP]; `generate` swaps the
tokenizer's leading [CLS] for [DEC] and drops the prompt's last token, which it expects to be the
[SEP] that the processor appends — so prompts must go through the processor with special tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from im2text.families.base import Family

if TYPE_CHECKING:
    import torch
    from PIL import Image


class Blip(Family):
    key = "blip"
    model_types = ("blip",)
    model_class = "BlipForConditionalGeneration"

    def prepare(self, images: list[Image.Image], prompt: str | None) -> dict[str, torch.Tensor]:
        if not prompt:
            return dict(self.processor(images=images, return_tensors="pt"))
        # Same prompt for every image, so no padding and no per-row length differences.
        return dict(self.processor(images=images, text=[prompt] * len(images), return_tensors="pt"))

    def eos_token_ids(self) -> set[int]:
        return {int(self.model.config.text_config.sep_token_id)}
