"""ViT (and other AutoModelForImageClassification checkpoints): supervised labels, top-k.

Quirks kept here: labels come from the checkpoint's `id2label` (ImageNet-1k for
vit-base-patch16-224), several names per class separated by commas there ("tabby, tabby cat").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from im2text.engine.graphs import GraphPart
from im2text.families.base import Family

if TYPE_CHECKING:
    from PIL import Image


class Vit(Family):
    key = "vit"
    model_types = ("vit", "deit", "beit", "convnext", "swin", "dinov2")
    architectures = ("*ForImageClassification",)  # any classifier head; never a headless one
    model_class = "AutoModelForImageClassification"
    needs_tokenizer = False
    tasks = ("classify",)
    graph_parts = (GraphPart(""),)  # the whole classifier: pixels in, logits out

    @classmethod
    def load_processor(cls, source: str, **hub: Any) -> Any:
        from transformers import AutoImageProcessor

        return AutoImageProcessor.from_pretrained(source, **hub)

    def prepare_images(self, images: list[Image.Image]) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.processor(images=images, return_tensors="pt").pixel_values}

    @property
    def label_names(self) -> list[str]:
        id2label = self.model.config.id2label
        return [str(id2label[i]) for i in range(len(id2label))]

    def classifier(
        self, labels: list[str] | None, templates: tuple[str, ...]
    ) -> tuple[list[str], torch.Tensor]:
        """All classes, or only `labels` (which must be class names of this checkpoint)."""
        names = self.label_names
        if not labels:
            return names, torch.arange(len(names))
        index = {n.lower(): i for i, n in enumerate(names)}
        for i, n in enumerate(names):  # "tabby, tabby cat": each alias names the class too
            for alias in n.split(","):
                index.setdefault(alias.strip().lower(), i)
        unknown = [lab for lab in labels if lab.lower() not in index]
        if unknown:
            raise ValueError(
                f"label(s) not among this classifier's {len(names)} classes: {unknown[:5]}"
            )
        return labels, torch.tensor([index[lab.lower()] for lab in labels])

    @torch.inference_mode()
    def classify(self, inputs: dict[str, torch.Tensor], state: torch.Tensor) -> torch.Tensor:
        """(B, L) probabilities, renormalised over the selected classes."""
        logits = self.model(pixel_values=self._to_device(inputs["pixel_values"])).logits
        return logits.float()[:, state.to(logits.device)].softmax(-1).cpu()
