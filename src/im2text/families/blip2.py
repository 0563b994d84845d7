"""BLIP-2: frozen ViT-g + Q-Former + frozen LLM (OPT decoder-only, or Flan-T5 encoder-decoder).

Quirks kept here: the processor must know `num_query_tokens`, else it inserts no image tokens and
the LLM never sees the image (silently); the image-token placeholders come first, before BOS.
Decoder-only LMs return prompt + answer; encoder-decoder LMs return only the answer — either way
the generated part is the tail, which the shared scorer takes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from im2text.families.base import Family

if TYPE_CHECKING:
    import torch
    from PIL import Image


class Blip2(Family):
    key = "blip2"
    model_types = ("blip-2",)
    model_class = "Blip2ForConditionalGeneration"
    tasks = ("caption", "ask")
    prompt_is_prefix = False  # prompts are instructions to the LLM ("Question: ... Answer:")

    @classmethod
    def load_processor(cls, source: str, **hub: Any) -> Any:
        processor = super().load_processor(source, **hub)
        if getattr(processor, "num_query_tokens", None) is None:
            # Older Hub processors lack it; without it the image would be ignored.
            from transformers import AutoConfig

            processor.num_query_tokens = AutoConfig.from_pretrained(source, **hub).num_query_tokens
        return processor

    vision_tower = "vision_model"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Decoder-only LMs continue the last token of each row: pad on the left.
        self.tokenizer.padding_side = "left"

    def question_prompt(self, question: str) -> str:
        return f"Question: {question} Answer:"  # the BLIP-2 paper's VQA template

    def prepare(
        self, images: list[Image.Image], prompts: list[str | None]
    ) -> dict[str, torch.Tensor]:
        text = [p or "" for p in prompts]
        return dict(self.processor(images=images, text=text, padding=True, return_tensors="pt"))
