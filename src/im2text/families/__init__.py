"""Model families: one module each, holding every quirk of its family."""

from __future__ import annotations

from im2text.families.base import Candidate, Family
from im2text.families.blip import Blip
from im2text.families.blip2 import Blip2
from im2text.families.encoder_decoder import VisionEncoderDecoder
from im2text.families.git import Git
from im2text.families.instructblip import InstructBlip

FAMILIES: dict[str, type[Family]] = {
    f.key: f for f in (Blip, Blip2, InstructBlip, VisionEncoderDecoder, Git)
}


def family_for_model_type(model_type: str) -> type[Family]:
    """The family that handles a transformers `config.model_type`."""
    for fam in FAMILIES.values():
        if model_type in fam.model_types:
            return fam
    known = sorted(t for f in FAMILIES.values() for t in f.model_types)
    raise ValueError(f"unsupported model type {model_type!r}; im2text supports: {', '.join(known)}")


__all__ = ["FAMILIES", "Candidate", "Family", "family_for_model_type"]
