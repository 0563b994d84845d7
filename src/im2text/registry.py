"""Presets as data: short names for well-known checkpoints, with their pinned settings.

Any Hub id or local directory loads too; the family is then read from its config.
"""

from __future__ import annotations

from im2text.config import Preset

# Generation defaults follow each model's paper / model card (BLIP: beam 3, max 20, min 5).
_BLIP_GEN = {"num_beams": 3, "max_new_tokens": 20, "min_new_tokens": 5}
_BLIP2_GEN = {"num_beams": 5, "max_new_tokens": 30, "min_new_tokens": 1}

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            name="blip-base",
            family="blip",
            hub_id="Salesforce/blip-image-captioning-base",
            tasks=("caption",),
            description="BLIP ViT-B captioner fine-tuned on COCO (224M params)",
            generation=_BLIP_GEN,
            license="bsd-3-clause",
        ),
        Preset(
            name="blip-large",
            family="blip",
            hub_id="Salesforce/blip-image-captioning-large",
            tasks=("caption",),
            description="BLIP ViT-L captioner fine-tuned on COCO (470M params)",
            generation=_BLIP_GEN,
            license="bsd-3-clause",
        ),
        Preset(
            name="blip2-opt-2.7b",
            family="blip2",
            hub_id="Salesforce/blip2-opt-2.7b",
            tasks=("caption", "ask"),
            description="BLIP-2 with OPT-2.7b language model (3.9B params)",
            generation=_BLIP2_GEN,
            license="mit",
        ),
        Preset(
            name="blip2-flan-t5-xl",
            family="blip2",
            hub_id="Salesforce/blip2-flan-t5-xl",
            tasks=("caption", "ask"),
            description="BLIP-2 with Flan-T5-XL language model (3.9B params)",
            generation=_BLIP2_GEN,
            license="mit",
        ),
        Preset(
            name="instructblip-flan-t5-xl",
            family="instructblip",
            hub_id="Salesforce/instructblip-flan-t5-xl",
            tasks=("caption", "ask"),
            description="InstructBLIP with Flan-T5-XL: follows instructions about an image",
            prompt="A short image description:",
            generation=_BLIP2_GEN,
            license="mit",
        ),
        Preset(
            name="vit-gpt2",
            family="vision-encoder-decoder",
            hub_id="nlpconnect/vit-gpt2-image-captioning",
            tasks=("caption",),
            description="ViT encoder + GPT-2 decoder trained on COCO",
            generation={"num_beams": 4, "max_new_tokens": 16},
            license="apache-2.0",
        ),
        Preset(
            name="git-base",
            family="git",
            hub_id="microsoft/git-base-coco",
            tasks=("caption",),
            description="GIT base fine-tuned on COCO (177M params)",
            generation={"max_new_tokens": 50},
            license="mit",
        ),
        Preset(
            name="git-large",
            family="git",
            hub_id="microsoft/git-large-coco",
            tasks=("caption",),
            description="GIT large fine-tuned on COCO (394M params)",
            generation={"max_new_tokens": 50},
            license="mit",
        ),
    ]
}


def list_models(task: str | None = None) -> list[Preset]:
    """All presets (optionally only those trained for `task`), sorted by name."""
    return sorted(
        (p for p in PRESETS.values() if task is None or task in p.tasks), key=lambda p: p.name
    )


def get_preset(name: str) -> Preset | None:
    """The preset called `name`, or None when `name` is a Hub id or a path."""
    return PRESETS.get(name)
