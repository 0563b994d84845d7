"""LLaVA (llava-hf checkpoints) and LLaVA-OneVision: a CLIP / SigLIP vision tower, a projector
and a chat LLM. One `<image>` per user turn, expanded by the processor into one token per
projected patch; OneVision tiles the image at its aspect ratio ("anyres"), so images of
different sizes in a batch have different token counts, and its processor bundles a video
processor (built from its image parts where torchvision is missing)."""

from __future__ import annotations

from typing import Any

from im2text.families.chat_vlm import ChatVlm, image_only_processor


class Llava(ChatVlm):
    key = "llava"
    model_types = ("llava", "llava_onevision")
    architectures = ("LlavaForConditionalGeneration", "LlavaOnevisionForConditionalGeneration")
    model_class = "AutoModelForImageTextToText"

    @classmethod
    def load_processor(cls, source: str, **hub: Any) -> Any:
        from transformers import AutoConfig, LlavaOnevisionProcessor

        if AutoConfig.from_pretrained(source, **hub).model_type == "llava_onevision":
            return image_only_processor(LlavaOnevisionProcessor, source, **hub)
        return super().load_processor(source, **hub)

    @property
    def image_size(self) -> int | None:
        """For "anyres" tiling the largest grid side (the tiles depend on the full size: a
        photo shrunk to the tile size would get fewer of them); else the tile size."""
        pinpoints = getattr(self.processor.image_processor, "image_grid_pinpoints", None)
        return max(max(p) for p in pinpoints) if pinpoints else super().image_size
