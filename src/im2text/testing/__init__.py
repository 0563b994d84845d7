"""Offline test material: tiny random checkpoints in the Hub layout, and synthetic data.

from im2text.testing import build_checkpoint
path = build_checkpoint("blip", tmp_dir)      # -> a folder im2text.load(path) loads
"""

from __future__ import annotations

from im2text.testing.checkpoints import TINY_FAMILIES, TINY_KINDS, build_checkpoint
from im2text.testing.data import (
    CORPUS,
    easy_vqa_jsonl,
    shape_corpus,
    shape_dataset,
    shape_folder,
    shape_image,
)

__all__ = [
    "CORPUS",
    "TINY_FAMILIES",
    "TINY_KINDS",
    "build_checkpoint",
    "easy_vqa_jsonl",
    "shape_corpus",
    "shape_dataset",
    "shape_folder",
    "shape_image",
]
