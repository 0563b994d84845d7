"""Evaluation: the standard caption, VQA and retrieval metrics, and reports.

Caption metrics match coco-caption (pycocoevalcap) exactly without Java: its PTB tokenizer is
reproduced in pure Python (`ptb`). VQA accuracy is the official VQA v2 formula and normalization;
OCR is scored by word recall and precision (`word_scores`).
"""

from __future__ import annotations

from im2text.evaluate.captions import (
    DEFAULT_METRICS,
    CaptionEvaluation,
    caption_metrics,
    evaluate_captions,
)
from im2text.evaluate.ocr import WordScores, word_scores
from im2text.evaluate.ptb import TokenizerUnavailableError, tokenize
from im2text.evaluate.report import ModelResult, ReportItem, write_report
from im2text.evaluate.retrieval import retrieval_recall
from im2text.evaluate.vqa import normalize_answer, vqa_accuracy

__all__ = [
    "DEFAULT_METRICS",
    "CaptionEvaluation",
    "ModelResult",
    "ReportItem",
    "TokenizerUnavailableError",
    "WordScores",
    "caption_metrics",
    "evaluate_captions",
    "normalize_answer",
    "retrieval_recall",
    "tokenize",
    "vqa_accuracy",
    "word_scores",
    "write_report",
]
