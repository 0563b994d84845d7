"""Distinct benchmark images: crops and mirrors of the sample photos.

No two are identical, so nothing is saved by im2text encoding identical images once, and the
comparison with baselines stays fair.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]


def distinct_images(n: int) -> list[Image.Image]:
    samples = sorted((REPO / "examples" / "images").glob("*.jpg"))
    out = []
    for i in range(n):
        img = Image.open(samples[i % len(samples)]).convert("RGB")
        k = i // len(samples)
        w, h = img.size
        img = img.crop((k * 7 % 40, k * 5 % 30, w - k * 3 % 25, h - k * 11 % 35))
        out.append(ImageOps.mirror(img) if k % 2 else img)
    return out
