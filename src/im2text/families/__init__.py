"""Model families: one module each, holding every quirk of its family."""

from __future__ import annotations

from im2text.families.base import Candidate, DualEncoder, Family
from im2text.families.blip import Blip, BlipItm, BlipVqa
from im2text.families.blip2 import Blip2
from im2text.families.clip import Clip
from im2text.families.encoder_decoder import VisionEncoderDecoder
from im2text.families.git import Git
from im2text.families.instructblip import InstructBlip
from im2text.families.rapidocr import RapidOcr
from im2text.families.tesseract import Tesseract
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
        Clip,
        Vit,
        RapidOcr,
        Tesseract,
    )
}


def family_for_config(model_type: str, architectures: list[str] | None = None) -> type[Family]:
    """The family for a transformers config: by its head (`architectures`), else its type."""
    candidates = [f for f in FAMILIES.values() if model_type in f.model_types]
    for arch in architectures or []:
        for fam in candidates:
            if arch in fam.architectures:
                return fam
    if candidates:
        return candidates[0]  # e.g. a BLIP checkpoint without `architectures`: captioning
    known = sorted({t for f in FAMILIES.values() for t in f.model_types})
    raise ValueError(f"unsupported model type {model_type!r}; im2text supports: {', '.join(known)}")


__all__ = ["FAMILIES", "Candidate", "DualEncoder", "Family", "family_for_config"]
