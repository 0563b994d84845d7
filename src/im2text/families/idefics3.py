"""Idefics3 and SmolVLM (HuggingFaceTB/SmolVLM-*-Instruct are Idefics3 checkpoints): a SigLIP
encoder whose patches a pixel shuffle folds `scale_factor`² into one token, and a chat LLM.

Quirks kept here: the processor takes the images nested per sample (one list per text); its
turns end with `<end_of_utterance>`, the generation config's EOS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from im2text.families.chat_vlm import ChatVlm

if TYPE_CHECKING:
    pass


class Idefics3(ChatVlm):
    key = "idefics3"
    model_types = ("idefics3",)
    architectures = ("Idefics3ForConditionalGeneration",)
    nested_images = True  # one list of images per text
    model_class = "Idefics3ForConditionalGeneration"
    vision_module = "vision_model"
    connectors = ("connector",)
    vision_tower = None  # its patch mask rides beside pixel_values: rows cannot be deduplicated
