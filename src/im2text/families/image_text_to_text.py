"""Any chat VLM that transformers loads with `AutoModelForImageTextToText` and whose processor
has a chat template: the shared chat-VLM handling and nothing else. Gemma 3 is one (its quirks
are all inside its processor: the `<start_of_image>` placeholder expanded to the soft tokens,
`token_type_ids` for bidirectional attention over them); a model type no other family claims is
routed here when its head is an image-text-to-text one.

Images go to the processor nested, one list per text: the form every multi-image processor
takes, so a flat list is never read as several images of one prompt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from im2text.families.chat_vlm import ChatVlm

if TYPE_CHECKING:
    pass

# Where image-text-to-text models keep their image encoder (frozen to train), first match wins.
_VISION_MODULES = ("vision_tower", "visual", "vision_model", "vision_encoder")


class ImageTextToText(ChatVlm):
    key = "image-text-to-text"
    model_types = ("gemma3",)
    architectures = ("*ForConditionalGeneration",)
    nested_images = True  # one list of images per text
    model_class = "AutoModelForImageTextToText"
    vision_tower = None  # unknown layouts: no deduplication (it needs rows that are images)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        names = {n.rsplit(".", 1)[-1] for n, _ in self.model.named_modules()}
        self.vision_module = next((m for m in _VISION_MODULES if m in names), "vision_tower")

    @classmethod
    def handles(cls, architectures: list[str] | None) -> bool:
        """Whether an unknown model type can run here: its head is one transformers lists as
        image-text-to-text."""
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES as heads,
        )

        return bool(architectures) and any(a in set(heads.values()) for a in architectures or [])
