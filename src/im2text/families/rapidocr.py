"""PP-OCR through `rapidocr` + onnxruntime: text detection + recognition with real weights that
ship inside the wheel, so reading text works offline out of the box.

Quirks kept here: rapidocr remembers the last call's use_det/use_cls/use_rec flags, so every call
passes all three; it returns quadrilaterals, which we turn into axis-aligned boxes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from im2text.families.base import Family
from im2text.results import Line

if TYPE_CHECKING:
    from PIL import Image

_HINT = "rapidocr is not installed: pip install 'im2text[ocr]' (rapidocr + onnxruntime)"


def new_engine() -> Any:
    try:
        from rapidocr import RapidOCR
    except ImportError as e:
        raise ImportError(_HINT) from e
    return RapidOCR(params={"Global.log_level": "error"})


def _box(quad: Any) -> tuple[float, float, float, float]:
    q = np.asarray(quad, dtype=float).reshape(-1, 2)
    return (float(q[:, 0].min()), float(q[:, 1].min()), float(q[:, 0].max()), float(q[:, 1].max()))


def detect_lines(engine: Any, image: Image.Image) -> list[tuple[tuple[float, ...], float]]:
    """Text-line boxes `(x0, y0, x1, y1)` with detector scores (no recognition)."""
    out = engine(image, use_det=True, use_cls=False, use_rec=False)
    if out.boxes is None:
        return []
    return [(_box(q), float(s)) for q, s in zip(out.boxes, out.scores, strict=True)]


class RapidOcr(Family):
    key = "rapidocr"
    model_types = ()
    model_class = ""
    tasks = ("read",)
    needs_weights = False

    @classmethod
    def from_pretrained(cls, source: str, *, device: torch.device, dtype: torch.dtype, **hub: Any):  # type: ignore[override]
        return cls(new_engine(), None, torch.device("cpu"), torch.float32)

    @property
    def image_size(self) -> int | None:
        return None  # the detector wants full resolution for small text

    def save_pretrained(self, directory: str) -> None:
        raise ValueError("rapidocr's models ship inside its wheel; there is nothing to save")

    def read(
        self, images: list[Image.Image], page: bool | None = None, settings: object = None
    ) -> list[list[Line]]:
        out: list[list[Line]] = []
        for image in images:
            r = self.model(image, use_det=True, use_cls=True, use_rec=True)
            if r.boxes is None or r.txts is None:
                out.append([])
                continue
            out.append(
                [
                    Line(str(t), _box(q), float(s))
                    for q, t, s in zip(r.boxes, r.txts, r.scores, strict=True)
                    if str(t).strip()
                ]
            )
        return out
