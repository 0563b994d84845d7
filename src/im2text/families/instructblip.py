"""InstructBLIP: BLIP-2 whose Q-Former also reads the instruction (its own BERT tokenizer).

Quirks kept here: it always needs an instruction, so captioning uses a default one; the
instruction goes both to the Q-Former (`qformer_input_ids`) and to the LLM; `num_query_tokens`
must be on the processor, as for BLIP-2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from im2text.engine.graphs import GraphPart
from im2text.families.blip2 import Blip2

if TYPE_CHECKING:
    import torch
    from PIL import Image


class InstructBlip(Blip2):
    key = "instructblip"
    model_types = ("instructblip",)
    architectures = ("InstructBlipForConditionalGeneration",)
    model_class = "InstructBlipForConditionalGeneration"
    default_prompt = "A short image description:"
    # Its Q-Former also reads the instruction (instruction-aware queries): only the ViT is a graph.
    graph_parts = (GraphPart("vision_model"),)
    # Fine-tuned with the LM loss only (its Q-Former's text branch reads instructions).
    objectives: ClassVar[tuple[str, ...]] = ("lm",)
    stages: ClassVar[dict[int, tuple[str, ...]]] = {}

    def question_prompt(self, question: str) -> str:
        return question  # instruction-tuned: the question is the instruction

    def prepare(
        self, images: list[Image.Image], prompts: list[str | None]
    ) -> dict[str, torch.Tensor]:
        """The documented usage, `processor(images=..., text=instruction)`: InstructBLIP has no
        unconditional caption (its Q-Former reads the instruction; transformers' generate fails
        without one), so a caption answers the default instruction."""
        text = [p or self.default_prompt or "" for p in prompts]
        return dict(self.processor(images=images, text=text, padding=True, return_tensors="pt"))

    def training_inputs(
        self, images: list[Image.Image], prompts: list[str | None], targets: list[str]
    ) -> dict[str, torch.Tensor]:
        """As BLIP-2's, with the instruction `prepare` would use (the default one for a
        caption) in the LLM's rows and in the Q-Former's (`qformer_input_ids`, which BLIP-2's
        decoder-only rows lack)."""
        text = [p or self.default_prompt or "" for p in prompts]
        inputs = super().training_inputs(images, list(text), targets)
        if "qformer_input_ids" not in inputs:
            q = self.processor.qformer_tokenizer(text, padding=True, return_tensors="pt")
            inputs["qformer_input_ids"] = q["input_ids"]
            inputs["qformer_attention_mask"] = q["attention_mask"]
        return inputs
