"""A captioner that does nothing, for measuring what im2text itself costs a bulk job (decode,
preprocessing, batching, records) with the model's time taken out. Not registered as a family:
build one with `null_model()`; benchmarks/bulk_overhead.py and the tests use it."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from im2text.config import GenerationSettings, LoadSettings
from im2text.families.base import Family
from im2text.results import Candidate


class NullCaptioner(Family):
    """Preprocesses like a real model (resize to `size`, normalise, a float tensor) and
    'generates' an empty caption."""

    key = "null"
    model_types = ()
    model_class = ""
    tasks = ("caption",)
    needs_weights = False
    default_prompt: str | None = None
    prompt_is_prefix = False
    caption_styles: ClassVar[dict[str, str]] = {}

    def __init__(self, size: int = 384):
        super().__init__(None, None, torch.device("cpu"), torch.float32)
        self.size = size

    @property
    def image_size(self) -> int | None:
        return self.size

    def prepare(self, images: list[Image.Image], prompts: list[str | None]) -> dict[str, Any]:
        arrays = [
            np.asarray(im.resize((self.size, self.size), Image.Resampling.BICUBIC)) for im in images
        ]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)
        return {"pixel_values": (x - 0.5) / 0.5}  # (B, 3, size, size), as BLIP's processor

    def generate(
        self, inputs: dict[str, Any], settings: GenerationSettings, *, streamer: Any = None
    ) -> list[list[Candidate]]:
        n = inputs["pixel_values"].shape[0]
        return [[Candidate("", 0.0, 0.0, num_tokens=0)] for _ in range(n)]

    def question_prompt(self, question: str) -> str:
        return question


def null_model(size: int = 384, **load: Any) -> Any:
    """An `im2text.Model` around a `NullCaptioner` (`load`: LoadSettings fields)."""
    from im2text.model import Model

    return Model(NullCaptioner(size), name="null", settings=LoadSettings(**load))
