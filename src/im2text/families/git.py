"""GIT (Microsoft): one transformer decoder over image tokens + text tokens.

Quirks kept here: generation starts from [CLS] (bos) and stops at [SEP]; a prompt is fed as
[CLS] + prompt tokens *without* the trailing [SEP] the tokenizer would add (else it stops at once).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from im2text.families.base import Family

if TYPE_CHECKING:
    from PIL import Image


class Git(Family):
    key = "git"
    model_types = ("git",)
    model_class = "GitForCausalLM"

    def prepare(self, images: list[Image.Image], prompt: str | None) -> dict[str, torch.Tensor]:
        pixel_values = self.processor(images=images, return_tensors="pt").pixel_values
        ids = [self.tokenizer.cls_token_id]
        if prompt:
            ids += self.tokenizer(prompt, add_special_tokens=False).input_ids
        input_ids = torch.tensor([ids] * len(images), dtype=torch.long)
        return {"pixel_values": pixel_values, "input_ids": input_ids}

    def eos_token_ids(self) -> set[int]:
        return {int(self.tokenizer.sep_token_id)}

    def generation_kwargs(self) -> dict[str, int]:
        return {
            "eos_token_id": int(self.tokenizer.sep_token_id),
            "pad_token_id": int(self.tokenizer.pad_token_id),
        }
