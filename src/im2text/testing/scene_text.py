"""The scene-text benchmark (benchmarks/scene_text/): real photos with words rendered onto them
in ten categories of difficulty, and their truth. Used by `benchmarks/ocr_scene_text.py` (the
table in docs/PERFORMANCE.md) and by the tests that hold its numbers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from im2text.evaluate.ocr import WordScores, word_scores

ROOT = Path(__file__).resolve().parents[3] / "benchmarks" / "scene_text"
OFF = {"pad_small": False, "whole_image": False, "split_words": False, "fold_accents": False}


@dataclass(frozen=True)
class Sample:
    path: Path
    category: str
    words: tuple[str, ...]


def samples(root: Path = ROOT, categories: tuple[str, ...] | None = None) -> list[Sample]:
    truth = json.loads((root / "truth.json").read_text(encoding="utf-8"))
    out = [Sample(root / "images" / t["file"], t["category"], tuple(t["words"])) for t in truth]
    return [s for s in out if categories is None or s.category in categories]


def score(
    model: Any, items: list[Sample], **options: bool
) -> tuple[WordScores, dict[str, WordScores]]:
    """Read every sample with `options` (ReadOptions keywords); pooled and per-category scores."""
    readings = model.read([str(s.path) for s in items], **options)
    return score_texts([r.text for r in readings], items)


def score_texts(
    readings: list[str], items: list[Sample]
) -> tuple[WordScores, dict[str, WordScores]]:
    """Pooled and per-category scores of `readings` (one text per sample, any OCR engine)."""
    texts = dict(enumerate(readings))
    refs = {i: s.words for i, s in enumerate(items)}
    per = {}
    for cat in dict.fromkeys(s.category for s in items):
        keys = [i for i, s in enumerate(items) if s.category == cat]
        per[cat] = word_scores({k: texts[k] for k in keys}, {k: refs[k] for k in keys})
    return word_scores(texts, refs), per
