"""Model families: one module each, holding every quirk of its family."""

from __future__ import annotations

from im2text.families.base import (
    CheckpointError,
    Classifier,
    Conversational,
    DualEncoder,
    Embedder,
    Family,
    GenerativeFamily,
    Generator,
    LoraAdaptable,
    Matcher,
    MultiObjective,
    PairEmbedder,
    Ranker,
    Reader,
    ScoredAnswerTrainable,
    Trainable,
)
from im2text.families.blip import Blip, BlipItm, BlipVqa
from im2text.families.blip2 import Blip2
from im2text.families.clip import Clip
from im2text.families.encoder_decoder import VisionEncoderDecoder
from im2text.families.florence2 import Florence2
from im2text.families.frcnn import FrcnnDetector
from im2text.families.git import Git
from im2text.families.got_ocr2 import GotOcr2
from im2text.families.idefics3 import Idefics3
from im2text.families.image_text_to_text import ImageTextToText
from im2text.families.instructblip import InstructBlip
from im2text.families.llava import Llava
from im2text.families.paligemma import PaliGemma
from im2text.families.qwen_vl import QwenVl
from im2text.families.rapidocr import RapidOcr
from im2text.families.tesseract import Tesseract
from im2text.families.visualbert import VisualBert, VisualBertNlvr2, VisualBertPretrained
from im2text.families.vit import Vit

FAMILIES: dict[str, type[Family]] = {
    f.key: f
    for f in (
        Blip,
        BlipVqa,
        BlipItm,
        Blip2,
        InstructBlip,
        VisionEncoderDecoder,
        Git,
        Llava,
        Idefics3,
        PaliGemma,
        QwenVl,
        ImageTextToText,
        Florence2,
        GotOcr2,
        FrcnnDetector,
        VisualBert,
        VisualBertNlvr2,
        VisualBertPretrained,
        Clip,
        Vit,
        RapidOcr,
        Tesseract,
    )
}


def _claims(family: type[Family], arch: str) -> bool:
    return any(
        arch.endswith(a[1:]) if a.startswith("*") else arch == a for a in family.architectures
    )


def family_for_folder(source: str, preset_family: str | None = None) -> type[Family] | None:
    """The family whose own (non-transformers) layout `source` has, or the preset names one
    with such a layout (the region detector: config.yaml + weights); None for a transformers
    checkpoint, routed by `family_for_config`."""
    for fam in FAMILIES.values():
        if fam.own_layout and (fam.is_checkpoint(source) or fam.key == preset_family):
            return fam
    return None


def family_for_config(model_type: str, architectures: list[str] | None = None) -> type[Family]:
    """The family for a transformers config, matched by its model type and its head.

    Raises CheckpointError naming what the checkpoint is and what would fit, when no family of
    its model type runs its head (e.g. a headless `Dinov2Model` for classification), or when
    the head is unknown and the model type has several families (BLIP: caption, VQA, ITM).
    """
    candidates = [f for f in FAMILIES.values() if model_type in f.model_types]
    if not candidates and ImageTextToText.handles(architectures):
        return ImageTextToText  # a chat VLM no family names: the generic chat-template one
    if not candidates:
        known = sorted({t for f in FAMILIES.values() for t in f.model_types})
        raise CheckpointError(
            f"unsupported model type {model_type!r}; im2text supports: {', '.join(known)}"
        )
    for arch in architectures or []:
        for fam in candidates:
            if not fam.architectures or _claims(fam, arch):
                return fam
    heads = "; ".join(
        f"{f.key} ({'/'.join(f.tasks)}): {', '.join(f.architectures) or 'any'}" for f in candidates
    )
    if architectures:
        raise CheckpointError(
            f"the checkpoint is a {', '.join(architectures)} ({model_type}), a head no im2text "
            f"family runs; for {model_type} checkpoints im2text needs one of: {heads}"
        )
    if len(candidates) == 1:
        return candidates[0]
    raise CheckpointError(
        f"the checkpoint's config.json names no head ('architectures') and {model_type} has "
        f"several: {heads}; add the right one to its config.json"
    )


__all__ = [
    "FAMILIES",
    "CheckpointError",
    "Classifier",
    "Conversational",
    "DualEncoder",
    "Embedder",
    "Family",
    "GenerativeFamily",
    "Generator",
    "LoraAdaptable",
    "Matcher",
    "MultiObjective",
    "PairEmbedder",
    "Ranker",
    "Reader",
    "ScoredAnswerTrainable",
    "Trainable",
    "family_for_config",
    "family_for_folder",
]
