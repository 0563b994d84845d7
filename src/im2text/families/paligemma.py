"""PaliGemma (1 and 2): a SigLIP encoder whose patch tokens prefix a Gemma LM, prompted with
task prefixes instead of a chat template.

Quirks kept here: prompts are the model's task prefixes ("caption en", "answer en {question}");
the processor writes `<image>`×N, BOS, the prompt and a newline, and the prefix is read
bidirectionally (`token_type_ids`); fine-tuning puts the target after the prefix as the
processor's `suffix` (loss on it and EOS only). Batching, freezing and LoRA as for chat VLMs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from im2text.families.chat_vlm import InstructedVlm

if TYPE_CHECKING:
    import torch
    from PIL import Image


class PaliGemma(InstructedVlm):
    key = "paligemma"
    model_types = ("paligemma",)
    architectures = ("PaliGemmaForConditionalGeneration",)
    model_class = "PaliGemmaForConditionalGeneration"
    default_prompt = "caption en"
    caption_styles: ClassVar[dict[str, str]] = {"short": "caption en", "detailed": "describe en"}
    read_prompt = "ocr"

    def question_prompt(self, question: str) -> str:
        return f"answer en {question}"

    def _texts(self, prompts: list[str | None]) -> list[str]:
        """Each prompt after its image placeholder, as the model card writes it."""
        return [f"<image>{p or self.default_prompt or ''}" for p in prompts]

    def prepare(
        self, images: list[Image.Image], prompts: list[str | None]
    ) -> dict[str, torch.Tensor]:
        enc = self.processor(images=images, text=self._texts(prompts), padding=True,
                             return_tensors="pt")  # fmt: skip
        return {k: v for k, v in enc.items() if k != "labels"}  # no targets at inference

    def training_inputs(
        self, images: list[Image.Image], prompts: list[str | None], targets: list[str]
    ) -> dict[str, torch.Tensor]:
        enc = self.processor(images=images, text=self._texts(prompts), suffix=list(targets),
                             padding=True, return_tensors="pt")  # fmt: skip
        labels = enc["input_ids"].masked_fill(enc["token_type_ids"] == 0, -100)
        return {**dict(enc), "labels": labels.masked_fill(enc["attention_mask"] == 0, -100)}
