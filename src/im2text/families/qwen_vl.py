"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL: a ViT at the image's own resolution (patches of 14 or
16 px, merged 2×2 into one token) and a Qwen LLM with multimodal rotary positions.

Quirks kept here: each image becomes as many `<|image_pad|>` tokens as its patch grid
(`image_grid_thw`) gives, so images of different sizes in one batch have different token
counts (the processor expands them; left padding lines up the answers), and the rotary
positions are 3-D (time, row, column) over the image tokens the processor marks in
`mm_token_type_ids` (without it transformers falls back to 1-D positions: other answers); the
processor bundles a video processor that needs torchvision, so where that is missing it is
built from its image parts (`image_only_processor`); the image encoder is `visual`.
"""

from __future__ import annotations

import math
from typing import Any

from im2text.families.chat_vlm import ChatVlm, image_only_processor


class QwenVl(ChatVlm):
    key = "qwen-vl"
    model_types = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
    architectures = ("Qwen2VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration",
                     "Qwen3VLForConditionalGeneration")  # fmt: skip
    model_class = "AutoModelForImageTextToText"
    vision_module = "visual"
    connectors = ()  # its merger belongs to the frozen `visual` module
    vision_tower = None  # rows of its pixel_values are patches of all images, not images

    @classmethod
    def load_processor(cls, source: str, **hub: Any) -> Any:
        import transformers
        from transformers import AutoConfig

        model_type = AutoConfig.from_pretrained(source, **hub).model_type
        name = {"qwen2_vl": "Qwen2VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor",
                "qwen3_vl": "Qwen3VLProcessor"}[model_type]  # fmt: skip
        return image_only_processor(getattr(transformers, name), source, **hub)

    @property
    def image_size(self) -> int | None:
        """The side of the largest square the processor keeps (`max_pixels`): JPEGs decode at
        no less, so a big photo still gets every token it would have had."""
        improc = self.processor.image_processor
        size = getattr(improc, "size", None) or {}
        most = dict(size).get("longest_edge") or getattr(improc, "max_pixels", None)
        return math.isqrt(int(most)) if most else None
