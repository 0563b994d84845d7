"""The task table: one row per task, and everything that serves tasks is generated from it.

A row says what the task needs from a family (a capability protocol), what it returns (result
type and record fields, JSONL/CSV), how it runs (its stream function), its progress label and
its parameters. `Model` (the Python API), the CLI's bulk commands and the server's `/v1/{task}`
endpoints all read this table, so a new task is one row here and one stream function.
(transformers' `SUPPORTED_TASKS` is the model.)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from im2text.families.base import Classifier, Detector, Embedder, Generator, Matcher, Reader
from im2text.results import (
    Answer,
    Caption,
    Classification,
    Detection,
    Embedding,
    Match,
    Reading,
)
from im2text.tasks.ask import ask_stream, check_ask
from im2text.tasks.caption import caption_stream, check_caption
from im2text.tasks.detect import detect_stream
from im2text.tasks.match import check_classify, classify_stream, embed_stream, match_stream
from im2text.tasks.read import read_stream

CAPTION_STYLES = ("short", "detailed", "tags")  # the named caption styles families map
_READ_OPTIONS = (  # ReadOptions' techniques, each on by default (benchmarks/scene_text.py)
    ("pad_small", "border around small images / tight crops before detection (default on)"),
    ("whole_image", "nothing detected: recognise the whole image as one line (default on)"),
    ("split_words", "split glued words, NOPARKING -> NO PARKING; raw text kept (default on)"),
    ("fold_accents", "drop accents when the plain word is a known one (default on)"),
)


@dataclass(frozen=True)
class Param:
    """One parameter of a task: a keyword of `Model.<task>()`, a JSON field of `/v1/<task>`
    and (with `flags`) a CLI option."""

    name: str  # the keyword / JSON field
    annotation: Any  # its type (the server's schema is built from it)
    default: Any = None
    help: str = ""
    # How the server and the CLI check it: "text" (one string: whitespace-normalised, length
    # limit), "texts" (a list of them), "value" (checked by the task itself).
    kind: str = "value"
    required: bool = False  # must be given (a CLI option and a JSON field that must be set)
    flags: tuple[str, ...] = ()  # CLI option strings; () = no CLI option of this name
    cli: dict[str, Any] = field(default_factory=dict)  # argparse keywords (action, type, nargs)
    bounds: dict[str, Any] = field(default_factory=dict)  # the server schema's constraints
    server: bool = True  # a field of the server's request (False: Python and CLI only)


@dataclass(frozen=True)
class TaskSpec:
    """One task: what it needs, returns and takes."""

    name: str  # "caption": Model.caption(), `im2text caption`, POST /v1/caption
    capability: type  # the protocol a family must implement to run it
    result: Any  # the result dataclass (with `to_record` and `failed`)
    stream: Callable[..., Iterator[Any]]  # (family, inputs, *, load, [generation], **params)
    fields: tuple[str, ...]  # record fields, in CSV column order
    progress: str  # progress-bar label
    help: str  # one line for the CLI and the API docs
    default_model: str  # the CLI's default --model
    params: tuple[Param, ...] = ()
    generates: bool = False  # takes `GenerationSettings` keywords (num_beams=3, ...)
    pairs: bool = False  # inputs are (image, question) pairs rather than images
    key_fields: tuple[str, ...] = ("path",)  # what identifies an input in a record file
    # Checks the parameters against the family before any input runs (ValueError if invalid),
    # so the server answers 422 instead of failing a queued batch.
    check: Callable[[Any, dict[str, Any]], None] | None = None

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    def validate(self, family: Any, params: dict[str, Any]) -> None:
        if self.check is not None:
            self.check(family, params)


TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec(
            name="caption",
            capability=Generator,
            result=Caption,
            stream=caption_stream,
            fields=("path", "caption", "mean_logprob", "captions", "model", "error"),
            progress="captioning",
            help="caption images",
            default_model="blip-base",
            generates=True,
            check=check_caption,
            params=(
                Param(
                    "prompt",
                    str | None,
                    None,
                    "text the caption continues (e.g. "
                    '"a photograph of"); for instruction models, the instruction',
                    kind="text",
                    flags=("--prompt",),
                ),
                Param(
                    "style",
                    str | None,
                    None,
                    'a named style: "short", "detailed" or "tags", asked in the '
                    "model's own words (a --prompt wins)",
                    flags=("--style",),
                    cli={"choices": CAPTION_STYLES},
                ),
                Param(
                    "rerank",
                    str | None,
                    None,
                    'order candidate captions by "itm", "clip" or a matching model',
                    flags=("--rerank",),
                    server=False,
                ),
            ),
        ),
        TaskSpec(
            name="ask",
            capability=Generator,
            result=Answer,
            stream=ask_stream,
            fields=("path", "question", "answer", "confidence", "ranking", "model", "error"),
            progress="answering",
            help="answer questions about images (VQA)",
            default_model="blip-vqa-base",
            generates=True,
            pairs=True,
            key_fields=("path", "question"),
            check=check_ask,
            params=(
                Param(
                    "candidates",
                    list[str] | None,
                    None,
                    "rank this closed list of answers instead of generating",
                    kind="texts",
                    flags=("--candidates",),
                    cli={"nargs": "+"},
                ),
            ),
        ),
        TaskSpec(
            name="read",
            capability=Reader,
            result=Reading,
            stream=read_stream,
            fields=("path", "text", "lines", "model", "error"),
            progress="reading",
            help="read the text in images (OCR)",
            default_model="rapidocr",
            generates=True,
            params=(
                Param(
                    "page",
                    bool | None,
                    None,
                    "line recognisers (TrOCR): find the lines "
                    "first (true) or read the image as one line (false)",
                ),
                *(
                    Param(
                        name,
                        bool | None,
                        None,
                        help,
                        flags=(f"--{name.replace('_', '-')}",),
                        cli={"action": argparse.BooleanOptionalAction},
                    )
                    for name, help in _READ_OPTIONS
                ),
            ),
        ),
        TaskSpec(
            name="detect",
            capability=Detector,
            result=Detection,
            stream=detect_stream,
            fields=("path", "labels", "regions", "model", "error"),
            progress="detecting",
            help="find labelled regions (boxes with scores)",
            default_model="florence-2-base",
            generates=True,
            params=(
                Param(
                    "min_score",
                    float,
                    0.0,
                    "drop regions scoring below this (0-1)",
                    flags=("--min-score",),
                    cli={"type": float},
                    bounds={"ge": 0.0, "le": 1.0},
                ),
            ),
        ),
        TaskSpec(
            name="match",
            capability=Matcher,
            result=Match,
            stream=match_stream,
            fields=("path", "texts", "similarity", "probability", "itm", "model", "error"),
            progress="matching",
            help="score texts against images (ITM / CLIP)",
            default_model="clip-vit-base-patch32",
            params=(
                Param(
                    "texts",
                    list[str],
                    None,
                    "texts scored against each image",
                    kind="texts",
                    flags=("--text", "-t"),
                    required=True,
                    cli={"action": "append"},
                ),
            ),
        ),
        TaskSpec(
            name="classify",
            capability=Classifier,
            result=Classification,
            stream=classify_stream,
            fields=("path", "label", "probability", "labels", "model", "error"),
            progress="classifying",
            help="top-k labels: zero-shot (CLIP) or supervised (ViT)",
            default_model="clip-vit-base-patch32",
            check=check_classify,
            params=(
                Param(
                    "labels",
                    list[str] | None,
                    None,
                    "zero-shot labels (supervised "
                    "classifiers: optional, a subset of their classes)",
                    kind="texts",
                    flags=("--labels",),
                ),
                Param(
                    "templates",
                    list[str] | str | None,
                    None,
                    'prompt templates with "{}" '
                    'for the label, or "ensemble" (default "a photo of a {}.")',
                    flags=("--templates",),
                ),
                Param(
                    "top_k",
                    int,
                    5,
                    "labels per image",
                    flags=("--top-k",),
                    cli={"type": int},
                    bounds={"ge": 1, "le": 1000},
                ),
            ),
        ),
        TaskSpec(
            name="embed",
            capability=Embedder,
            result=Embedding,
            stream=embed_stream,
            fields=("path", "embedding", "dim", "model", "error"),
            progress="embedding",
            help="L2-normalised image embeddings",
            default_model="clip-vit-base-patch32",
        ),
    ]
}


def get_task(name: str) -> TaskSpec:
    """The row of task `name`; ValueError naming the known tasks otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}") from None


__all__ = ["TASKS", "Param", "TaskSpec", "get_task"]
