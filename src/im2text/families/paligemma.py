"""PaliGemma (1 and 2): a SigLIP encoder whose patch tokens prefix a Gemma LM, prompted with
task prefixes instead of a chat template.

Quirks kept here: prompts are the model's task prefixes ("caption en", "answer en {question}",
"ocr"); the processor writes `<image>`×N, BOS, the prompt and a newline, and the prefix is read
bidirectionally (`token_type_ids`); decoder-only, so batches pad on the left; fine-tuning puts
the target after the prefix as the processor's `suffix` (loss on it and EOS only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from im2text.families.base import GenerativeFamily

if TYPE_CHECKING:
    from PIL import Image


class PaliGemma(GenerativeFamily):
    key = "paligemma"
    model_types = ("paligemma",)
    architectures = ("PaliGemmaForConditionalGeneration",)
    model_class = "PaliGemmaForConditionalGeneration"
    tasks = ("caption", "ask")
    prompt_is_prefix = False  # the prefix names the task; the answer is what follows
    default_prompt = "caption en"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.tokenizer.padding_side = "left"

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

    def prepare_for_training(self) -> None:
        """The projector and the LM learn; the SigLIP encoder stays frozen (as in the
        PaliGemma transfer recipes at small data sizes)."""
        for name, p in self.model.named_parameters():
            p.requires_grad_(".vision_tower." not in f".{name}")

    def lora_targets(self) -> list[str]:
        """Gemma's attention projections by full name (SigLIP's share the names)."""
        return [
            name
            for name, _ in self.model.named_modules()
            if "language_model" in name and name.endswith(("q_proj", "v_proj"))
        ]
