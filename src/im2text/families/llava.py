"""LLaVA (llava-hf checkpoints): a CLIP / SigLIP vision tower, a projector and a chat LLM. It
needs nothing beyond the shared chat-VLM handling: one `<image>` per user turn, expanded by the
processor into one token per projected patch."""

from __future__ import annotations

from im2text.families.chat_vlm import ChatVlm


class Llava(ChatVlm):
    key = "llava"
    model_types = ("llava",)
    architectures = ("LlavaForConditionalGeneration",)
    model_class = "LlavaForConditionalGeneration"
