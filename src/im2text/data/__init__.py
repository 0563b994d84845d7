"""Dataset readers: image folders, CSV/JSONL metadata, COCO, Karpathy splits, VQA v2, HF datasets.

Every reader validates as it reads and raises `DatasetError` naming the file and line (or JSON
element) of the first problem — a missing image, an empty caption, a bad row, a duplicate id — and
never returns an empty dataset.

    from im2text.data import load_dataset, split
    examples = load_dataset("data/pets")          # metadata.jsonl, metadata.csv or .txt captions
    train, val = split(examples, val_fraction=0.1, seed=0)
"""

from __future__ import annotations

from im2text.data.coco import read_coco_captions, read_karpathy, read_vqa
from im2text.data.folder import read_csv, read_image_folder, read_jsonl, read_sidecar_captions
from im2text.data.hf import read_hf_dataset
from im2text.data.loading import FORMATS, load_dataset, split
from im2text.data.records import CaptionExample, DatasetError, VqaExample

__all__ = [
    "FORMATS",
    "CaptionExample",
    "DatasetError",
    "VqaExample",
    "load_dataset",
    "read_coco_captions",
    "read_csv",
    "read_hf_dataset",
    "read_image_folder",
    "read_jsonl",
    "read_karpathy",
    "read_sidecar_captions",
    "read_vqa",
    "split",
]
