"""PP-OCR through `rapidocr` + onnxruntime: text detection + recognition with real weights that
ship inside the wheel, so reading text works offline out of the box.

Quirks kept here: rapidocr remembers the last call's use_det/use_cls/use_rec flags, so every call
passes all three; it returns quadrilaterals, which we turn into axis-aligned boxes.

Two detector techniques, each measured on the scene-text benchmark (docs/PERFORMANCE.md): the
DB detector needs background around text, so small images (a tight crop of one word) get a
border of their own edge colour first; and when it still finds nothing, a line-shaped image is
recognised whole, kept only when the recogniser is confident.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from im2text.config import ReadOptions
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


PAD_BELOW = 256  # px: images whose shorter side is smaller get a border before detection
WHOLE_MIN_SCORE = 0.8  # the whole-image read is kept only when the recogniser is this sure
WHOLE_MIN_ASPECT = 1.5  # ... and only for line-shaped images (width / height)


def pad_for_detection(image: Image.Image) -> tuple[Image.Image, int]:
    """`image` with a border of its median edge colour when it is small, and the border width."""
    side = min(image.size)
    if side >= PAD_BELOW or side < 2:
        return image, 0
    from PIL import ImageOps

    a = np.asarray(image.convert("RGB"))
    edge = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    fill = tuple(int(v) for v in np.median(edge, axis=0))
    pad = min(64, max(16, side // 2))
    return ImageOps.expand(image.convert("RGB"), pad, fill=fill), pad


def _unpad(
    box: tuple[float, ...], pad: int, image: Image.Image
) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (v - pad for v in box)
    w, h = image.size
    return (max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1))


def detect_lines(
    engine: Any, image: Image.Image, pad_small: bool = True
) -> list[tuple[tuple[float, ...], float]]:
    """Text-line boxes `(x0, y0, x1, y1)` with detector scores (no recognition)."""
    padded, pad = pad_for_detection(image) if pad_small else (image, 0)
    out = engine(padded, use_det=True, use_cls=False, use_rec=False)
    if out.boxes is None:
        return []
    return [
        (_unpad(_box(q), pad, image), float(s)) for q, s in zip(out.boxes, out.scores, strict=True)
    ]


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
        self,
        images: list[Image.Image],
        page: bool | None = None,
        settings: object = None,
        options: ReadOptions | None = None,
    ) -> list[list[Line]]:
        opts = options or ReadOptions()
        return [self._read_one(image, opts) for image in images]

    def _read_one(self, image: Image.Image, opts: ReadOptions) -> list[Line]:
        padded, pad = pad_for_detection(image) if opts.pad_small else (image, 0)
        r = self.model(padded, use_det=True, use_cls=True, use_rec=True)
        lines = []
        if r.boxes is not None and r.txts is not None:
            lines = [
                Line(str(t), _unpad(_box(q), pad, image), float(s))
                for q, t, s in zip(r.boxes, r.txts, r.scores, strict=True)
                if str(t).strip()
            ]
        if not lines and opts.whole_image and image.width >= WHOLE_MIN_ASPECT * image.height:
            whole = self.model(image, use_det=False, use_cls=False, use_rec=True)
            if whole.txts and str(whole.txts[0]).strip():
                score = float(whole.scores[0])
                if score >= WHOLE_MIN_SCORE:
                    box = (0.0, 0.0, float(image.width), float(image.height))
                    lines = [Line(str(whole.txts[0]).strip(), box, score)]
        return lines
