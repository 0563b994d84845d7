"""InstructBLIP: BLIP-2 whose Q-Former also reads the instruction (its own BERT tokenizer).

Quirks kept here: it always needs an instruction, so captioning uses a default one; the
instruction goes both to the Q-Former (`qformer_input_ids`) and to the LLM; `num_query_tokens`
must be on the processor, as for BLIP-2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from im2text.families.blip2 import Blip2

if TYPE_CHECKING:
    import torch
    from PIL import Image


class InstructBlip(Blip2):
    key = "instructblip"
    model_types = ("instructblip",)
    model_class = "InstructBlipForConditionalGeneration"
    default_prompt = "A short image description:"

    def question_prompt(self, question: str) -> str:
        return question  # instruction-tuned: the question is the instruction

    def prepare(
        self, images: list[Image.Image], prompts: list[str | None]
    ) -> dict[str, torch.Tensor]:
        text = [p or self.default_prompt or "" for p in prompts]
        return dict(self.processor(images=images, text=text, padding=True, return_tensors="pt"))
