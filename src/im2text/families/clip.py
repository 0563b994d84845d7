"""CLIP (OpenAI) and compatible dual encoders: cosine similarity of normalised embeddings.

Quirks kept here: zero-shot labels are wrapped in prompt templates and the per-label text
embedding is the renormalised mean over templates (the CLIP paper's ensemble); softmax over
labels uses the model's learned logit scale.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from im2text.engine.graphs import GraphPart
from im2text.families.base import DualEncoder

if TYPE_CHECKING:
    from PIL import Image


class Clip(DualEncoder):
    key = "clip"
    model_types = ("clip",)
    architectures = ("CLIPModel",)
    model_class = "CLIPModel"
    vision_tower = "vision_model"
    graph_parts = (GraphPart("vision_model"),)  # the text tower stays in torch
    objectives = ("itc",)  # --task retrieval: CLIPModel's own contrastive loss

    def prepare_images(self, images: list[Image.Image]) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.processor(images=images, return_tensors="pt").pixel_values}

    def training_inputs(
        self, images: list[Image.Image], prompts: list[str | None], targets: list[str]
    ) -> dict[str, torch.Tensor]:
        """Inputs whose `.loss` is CLIP's symmetric contrastive loss over the batch (image i's
        positive is text i; every other text of the batch is a negative; learned temperature)."""
        limit = self.model.config.text_config.max_position_embeddings
        enc = self.tokenizer(
            targets, padding=True, truncation=True, max_length=limit, return_tensors="pt"
        )
        return {**self.prepare_images(images), "input_ids": enc.input_ids,
                "attention_mask": enc.attention_mask, "return_loss": True}  # fmt: skip

    def prepare_for_training(self) -> None:
        for p in self.model.parameters():
            p.requires_grad_(True)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp().clamp(max=100))

    @torch.inference_mode()
    def embed_images(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        pv = self._to_device(inputs["pixel_values"])
        feats = self.model.get_image_features(pixel_values=pv)
        feats = getattr(feats, "pooler_output", feats)
        return torch.nn.functional.normalize(feats.float(), dim=-1).cpu()

    @torch.inference_mode()
    def _embed_text_batch(self, texts: list[str]) -> torch.Tensor:
        # Truncate to what the text tower can take (77 for real CLIP), not the tokenizer's idea.
        limit = self.model.config.text_config.max_position_embeddings
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=limit, return_tensors="pt"
        )
        feats = self.model.get_text_features(
            input_ids=enc.input_ids.to(self.device),
            attention_mask=enc.attention_mask.to(self.device),
        )
        feats = getattr(feats, "pooler_output", feats)
        return torch.nn.functional.normalize(feats.float(), dim=-1).cpu()
