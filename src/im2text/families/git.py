"""GIT (Microsoft): one transformer decoder over image tokens + text tokens.

Quirks kept here: generation starts from [CLS] (bos) and stops at [SEP]; a prompt is fed as
[CLS] + prompt tokens *without* the trailing [SEP] the tokenizer would add (else it stops at once).
GIT's positions ignore the attention mask, so prompts of different lengths cannot share a padded
batch: rows are generated in groups of equal prompt length and put back in order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from im2text.config import GenerationSettings
from im2text.engine.graphs import GraphPart
from im2text.families.base import GenerativeFamily
from im2text.results import Candidate

if TYPE_CHECKING:
    from PIL import Image


class Git(GenerativeFamily):
    key = "git"
    model_types = ("git",)
    architectures = ("GitForCausalLM",)
    model_class = "GitForCausalLM"

    tasks = ("caption", "ask")
    vision_tower = "git.image_encoder"
    graph_parts = (GraphPart("git.image_encoder"),)

    def prepare(
        self, images: list[Image.Image], prompts: list[str | None]
    ) -> dict[str, torch.Tensor]:
        pixel_values = self.processor(images=images, return_tensors="pt").pixel_values
        cls = self.tokenizer.cls_token_id
        rows = [
            [cls, *(self.tokenizer(p, add_special_tokens=False).input_ids if p else [])]
            for p in prompts
        ]
        if len({len(r) for r in rows}) == 1:
            return {"pixel_values": pixel_values, "input_ids": torch.tensor(rows)}
        return {"pixel_values": pixel_values, "prompt_ids": rows}  # type: ignore[dict-item]

    def generate(
        self, inputs: dict[str, Any], settings: GenerationSettings, *, streamer: Any = None
    ) -> list[list[Candidate]]:
        if "prompt_ids" not in inputs:
            return super().generate(inputs, settings, streamer=streamer)
        rows: list[list[int]] = inputs["prompt_ids"]
        out: list[list[Candidate]] = [[] for _ in rows]
        for length in sorted({len(r) for r in rows}):
            idx = [i for i, r in enumerate(rows) if len(r) == length]
            group = {
                "pixel_values": inputs["pixel_values"][idx],
                "input_ids": torch.tensor([rows[i] for i in idx], dtype=torch.long),
            }
            for i, res in zip(
                idx, super().generate(group, settings, streamer=streamer), strict=True
            ):
                out[i] = res
        return out

    def training_inputs(
        self, images: list[Image.Image], prompts: list[str | None], targets: list[str]
    ) -> dict[str, torch.Tensor]:
        """[CLS] prompt target [SEP]; GIT shifts labels itself and skips the image tokens."""
        texts = [f"{p} {t}" if p else t for p, t in zip(prompts, targets, strict=True)]
        enc = self.processor(images=images, text=texts, padding=True, return_tensors="pt")
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        for i, p in enumerate(prompts):
            if p:
                n = len(self.tokenizer(p, add_special_tokens=False).input_ids)
                labels[i, : n + 1] = -100
        return {**{k: enc[k] for k in ("pixel_values", "input_ids", "attention_mask")},
                "labels": labels}  # fmt: skip

    def eos_token_ids(self) -> set[int]:
        return {int(self.tokenizer.sep_token_id)}

    def generation_kwargs(self) -> dict[str, int]:
        return {
            "eos_token_id": int(self.tokenizer.sep_token_id),
            "pad_token_id": int(self.tokenizer.pad_token_id),
        }
